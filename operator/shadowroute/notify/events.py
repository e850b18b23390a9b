"""What happened between two statuses that a person should hear about (pure).

Every event is read off the status the operator read and the one it decided, never
off the state machine's insides: what status says happened, happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api.models import (
    CheckState,
    ComparisonVerdict,
    NotificationEvent,
    ShadowRouteStatus,
    parse_timestamp,
)
from ..names import PAUSED, ROLLOUT_STAGES, Stage
from ..reasons import Reason

HOLD_STAGES = (*ROLLOUT_STAGES, Stage.SUCCEEDED)
E = NotificationEvent


@dataclass(frozen=True)
class Notice:
    """One thing to tell, with what status said when it was decided."""

    kind: NotificationEvent
    namespace: str
    name: str
    revision: str
    reason: str = ""
    message: str = ""
    at: str = ""
    stage: str = ""
    weight: int = 0
    step: int = 0
    check: str = ""
    images: tuple[str, ...] = ()
    stable_revision: str = ""
    status: ShadowRouteStatus | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, ...]:
        """What the cooldown counts as "the same notification"."""
        if self.kind is E.HELD:  # a new revision held for the same reason is news
            which: tuple[str, ...] = (self.revision, self.reason)
        elif self.kind is E.CHECK_FAILED:
            which = (self.revision, self.check, str(self.step))
        elif self.kind in (E.STEP_ADVANCED, E.PAUSED, E.RESUMED):
            which = (self.revision, str(self.step))
        else:
            which = (self.revision,)
        return (self.namespace, self.name, self.kind.value, *which)


def transitions(
    old: ShadowRouteStatus,
    new: ShadowRouteStatus,
    namespace: str,
    name: str,
    hold_after: float = 0.0,
) -> list[Notice]:
    """Every event between two statuses, in the order they happened.

    A hold is told once it has lasted `hold_after` seconds, as seen by an analysis
    run: the first runs of every step have no data yet, and that is no news.
    """

    def notice(kind: NotificationEvent, revision: str, **kw: Any) -> Notice:
        kw.setdefault("stage", str(new.stage or ""))
        kw.setdefault("weight", new.canary_weight)
        kw.setdefault("step", new.current_step)
        return Notice(
            kind, namespace, name, revision, stable_revision=new.stable_revision, status=new, **kw
        )

    out: list[Notice] = []
    rollout = new.stage in ROLLOUT_STAGES
    revision = new.canary_revision
    same_rollout = rollout and revision == old.canary_revision and old.stage in ROLLOUT_STAGES

    if rollout and revision and revision != old.canary_revision:
        out.append(notice(E.ROLLOUT_STARTED, revision, at=new.rollout_started_at or ""))
    progressing = new.condition("Progressing")
    when = progressing.last_transition_time if progressing else ""
    if new.phase == PAUSED and old.phase != PAUSED and revision:
        why = progressing.reason if progressing else Reason.PAUSED
        out.append(notice(E.PAUSED, revision, reason=why, message=new.message, at=when))
    ended = new.history[0] if new.history and new.history[:1] != old.history[:1] else None
    if (
        old.phase == PAUSED
        and new.phase != PAUSED
        and (same_rollout or (ended is not None and str(ended.outcome) == "Promoted"))
    ):
        out.append(notice(E.RESUMED, old.canary_revision, message=new.message, at=when))

    if (
        new.stage == Stage.PROGRESSING
        and revision
        and (same_rollout or revision != old.canary_revision)
        and new.canary_weight != (old.canary_weight if same_rollout else 0)
    ):
        out.append(notice(E.STEP_ADVANCED, revision, at=new.stage_started_at or ""))

    def failed(s: ShadowRouteStatus) -> dict[tuple[Any, ...], Any]:
        return {
            (c.name, c.hook, c.revision, c.step): c
            for c in s.checks
            if c.state is CheckState.FAILED
        }

    before = failed(old)
    for k, c in failed(new).items():
        if k not in before:
            out.append(
                notice(
                    E.CHECK_FAILED, c.revision, reason=Reason.CHECK_FAILED, message=c.message,
                    at=c.finished_at or "", check=c.name, step=c.step or 0,
                )
            )  # fmt: skip

    cmp_new, cmp_old = new.comparison, old.comparison
    if (
        cmp_new is not None
        and cmp_new.verdict == ComparisonVerdict.FAIL
        and not (
            cmp_old is not None
            and cmp_old.verdict == ComparisonVerdict.FAIL
            and cmp_old.revision == cmp_new.revision
        )
    ):
        out.append(
            notice(
                E.SHADOW_MISMATCH, cmp_new.revision or revision,
                reason=cmp_new.reason or Reason.SHADOW_MISMATCH, message=cmp_new.message,
            )
        )  # fmt: skip

    if new.stage == Stage.FAILED and old.stage != Stage.FAILED:
        degraded = new.condition("Degraded")
        out.append(
            notice(
                E.PROGRESS_DEADLINE_EXCEEDED, new.primary_revision,
                reason=Reason.PROGRESS_DEADLINE_EXCEEDED, message=new.message,
                at=degraded.last_transition_time if degraded else "",
            )
        )  # fmt: skip

    if ended is not None:
        kind = {"Promoted": E.PROMOTED, "RolledBack": E.ROLLED_BACK}.get(str(ended.outcome))
        if kind is E.ROLLED_BACK and ended.reason == Reason.PROGRESS_DEADLINE_EXCEEDED:
            out.append(
                notice(
                    E.PROGRESS_DEADLINE_EXCEEDED, ended.revision, reason=ended.reason,
                    message=ended.message, at=ended.at or "",
                )
            )  # fmt: skip
        if kind is not None:
            out.append(
                notice(
                    kind, ended.revision, reason=ended.reason, message=ended.message,
                    at=ended.at or "",
                )
            )  # fmt: skip
    if not any(n.kind is E.ROLLED_BACK for n in out) and str(new.stage) in HOLD_STAGES:
        held = _hold(old, new, hold_after)
        if held is not None:
            reason, message, at = held
            out.append(
                notice(
                    E.HELD, new.analysis.revision or revision, reason=reason, message=message,
                    at=at,
                )
            )  # fmt: skip
    return out


def _hold(
    old: ShadowRouteStatus, new: ShadowRouteStatus, hold_after: float
) -> tuple[str, str, str] | None:
    """(reason, message, since) when the analysis has held the rollout for hold_after
    seconds by the latest run, and had not at the run before (or held for another
    reason)."""
    after = new.condition("AnalysisHealthy")
    if after is None or not after.last_transition_time:
        return None
    if after.status != "False" and after.reason != Reason.NO_DATA:  # NoData is Unknown
        return None
    # From when the condition last changed status, or the stage began if later: NoData
    # shares Unknown with AnalysisPending, whose transition is the rollout's start (or
    # the route's creation), so the hold of a step counts from that step.
    began = [after.last_transition_time, new.stage_ready_at or new.stage_started_at]
    since_text = max((b for b in began if b), key=parse_timestamp)
    since = parse_timestamp(since_text)

    def long_enough(s: ShadowRouteStatus) -> bool:
        run = s.analysis.last_run_at
        return bool(run) and (parse_timestamp(run) - since).total_seconds() >= hold_after

    if not long_enough(new):
        return None
    before = old.condition("AnalysisHealthy")
    same = before is not None and (before.status, before.reason) == (after.status, after.reason)
    if same and long_enough(old):
        return None  # told already
    return after.reason, after.message, since_text
