"""The life of a revision: (spec, status, observation, now) -> decision.

Pure and synchronous: no I/O, no clock, no globals. Everything it needs to resume is
in `status`, so the operator can be killed at any instant. The shell renders the
children from the new status (render/) and applies what changed.

Stages (status.stage; status.phase shows `Paused` over it while held):
Initializing -> Stable -> [Shadowing] -> Progressing (canary steps, or the blue/green
preview) -> Promoting -> Succeeded (new version serves from the canary Deployment
while the old one stays warm in primary) -> Stable (primary runs the new version).
A failed check, an abort or a progress deadline goes to RolledBack in the same call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from ..acceptance import ledger
from ..acceptance.spec import Check, Hook, checks_for, from_models
from ..api.duration import parse_duration
from ..api.models import (
    CheckState,
    CheckStatus,
    HistoryEntry,
    Outcome,
    ShadowRouteSpec,
    ShadowRouteStatus,
    format_timestamp,
    parse_timestamp,
)
from ..names import (
    BASELINE,
    CANARY,
    COMPARATOR,
    GATE_NAMES,
    PAUSED,
    RESUME_NOTED,
    SHADOW,
    Phase,
    Stage,
)
from ..reasons import Reason
from ..revision import template_changes, template_images, template_revision
from ..stages import canary_step, current_step, in_rollout, replicas_for
from . import conditions
from .observe import AnalysisSignal, Health, Observation, Workload


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: ShadowRouteStatus
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    """Seconds until a timer (a pause, a deadline, the warm period) may change the
    decision even if nothing else happens; None when only an event can."""


def timestamp(now: datetime) -> str:
    return format_timestamp(now)


def parse_time(value: str | None) -> datetime | None:
    return parse_timestamp(value) if value else None


def desired_revision(spec: ShadowRouteSpec) -> str:
    return template_revision(template_dict(spec))


def template_dict(spec: ShadowRouteSpec) -> dict[str, Any]:
    return spec.template.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass
class _Run:
    """The working state of one decide() call."""

    spec: ShadowRouteSpec
    obs: Observation
    now: datetime
    s: ShadowRouteStatus
    desired: str
    events: list[Event] = field(default_factory=list)
    timers: list[datetime] = field(default_factory=list)
    fired: set[str] = field(default_factory=set)
    acked_before: dict[str, str] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()

    @property
    def ts(self) -> str:
        return timestamp(self.now)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(Event("Warning" if warning else "Normal", reason, message))

    def wake_at(self, when: datetime) -> None:
        if when > self.now:
            self.timers.append(when)

    @property
    def paused(self) -> bool:
        return bool(self.spec.paused or self.s.user_paused)


def decide(
    spec: ShadowRouteSpec, status: ShadowRouteStatus, obs: Observation, now: datetime
) -> Decision:
    """The next status of a ShadowRoute, the events to emit and when to look again."""
    run = _Run(spec, obs, now, status.model_copy(deep=True), desired_revision(spec))
    run.checks = from_models(spec.checks)
    s = run.s
    s.observed_generation = obs.generation
    _acknowledge_gates(run)
    _record_check_results(run)

    # Each handler may move to another stage; let the next stage act in the same call
    # (a rollback must not wait for the next tick). Bounded: no cycle is longer.
    for _ in range(8):
        before = (s.stage, s.current_step, s.canary_revision)
        _HANDLERS[s.stage or Stage.INITIALIZING](run)
        if (s.stage, s.current_step, s.canary_revision) == before:
            break

    _name_images(run, status)
    s.phase = Phase(PAUSED if _shows_paused(run) else (s.stage or Stage.INITIALIZING))
    conditions.update(s, obs, run.now, run.paused, run.desired)
    lost = conditions.readiness_lost(status, s)
    if lost is not None:
        run.event(lost.reason, lost.message, warning=True)
    requeue = min(run.timers) - now if run.timers else None
    return Decision(
        status=s,
        events=tuple(run.events),
        requeue_after=requeue.total_seconds() if requeue is not None else None,
    )


# --------------------------------------------------------------------------- gates


def _acknowledge_gates(run: _Run) -> None:
    s, g = run.s, run.obs.gates
    acked = s.gates
    acked.resume_noted = ""  # said again below while a hold still keeps the step
    run.acked_before = {name: getattr(acked, name) for name in GATE_NAMES}
    for name in GATE_NAMES:
        token = getattr(g, name)
        if token and token != getattr(acked, name):
            run.fired.add(name)
            setattr(acked, name, token)
    if "pause" in run.fired and "resume" in run.fired:
        # Both changed since we last looked: the later token wins.
        run.fired.discard("resume" if g.pause > g.resume else "pause")
    if "pause" in run.fired and not s.user_paused:
        s.user_paused = True
        run.event(Reason.PAUSED, "paused by the pause gate")
    if "resume" in run.fired and s.user_paused:
        s.user_paused = False
        run.event(Reason.RESUMED, "resumed by the resume gate")
    held_before = s.phase == PAUSED and not s.waiting_for_promotion
    if held_before and not run.paused and not s.stage_ready_at:
        # Released (by the gate or by spec.paused): the progress deadline does not
        # count the time spent paused.
        s.stage_started_at = run.ts


def _shows_paused(run: _Run) -> bool:
    s = run.s
    if not in_rollout(s.stage):
        return False
    return run.paused or s.waiting_for_promotion


# --------------------------------------------------------------------------- transitions


def _enter(run: _Run, stage: str, step: int = 0) -> None:
    """Move to a stage; its timers restart unless it is the stage we are in."""
    s = run.s
    if s.stage != stage or s.current_step != step:
        s.stage_started_at = run.ts
        s.stage_ready_at = None
    s.stage = stage
    s.current_step = step
    s.waiting_for_promotion = False


def _history(run: _Run, revision: str, outcome: str, reason: str, message: str) -> None:
    s = run.s
    # A promotion replaced the previous revision; anything else was tried against the
    # stable one.
    base = s.previous_revision if outcome == Outcome.PROMOTED else s.stable_revision
    s.record(
        HistoryEntry(
            revision=revision,
            outcome=outcome,
            reason=reason,
            message=message,
            at=run.ts,
            images=template_images(_template(run, revision)),
            changes=template_changes(_template(run, base), _template(run, revision)),
        )
    )


def _template(run: _Run, revision: str) -> dict[str, Any] | None:
    if not revision:
        return None
    if revision == run.desired:
        return template_dict(run.spec)
    return run.obs.templates.get(revision)


def _name_images(run: _Run, before: ShadowRouteStatus) -> None:
    """status.stableImage, canaryImage and canaryChanges from the templates known; a
    revision whose template is not known keeps what was said of it (or nothing)."""
    s = run.s

    def said(revision: str, value: str, was_revision: str, was: str) -> str:
        return value or (was if revision and revision == was_revision else "")

    stable = template_images(_template(run, s.stable_revision))
    s.stable_image = said(s.stable_revision, stable, before.stable_revision, before.stable_image)
    canary = template_images(_template(run, s.canary_revision))
    s.canary_image = said(s.canary_revision, canary, before.canary_revision, before.canary_image)
    changes = template_changes(_template(run, s.stable_revision), _template(run, s.canary_revision))
    same = s.stable_revision == before.stable_revision
    s.canary_changes = said(
        s.canary_revision if same else "", changes, before.canary_revision, before.canary_changes
    )


def _start_rollout(run: _Run, why: str) -> None:
    s, strategy = run.s, run.spec.strategy
    run.fired.discard("retry")  # acted on: a rollback in this same call must not retry again
    s.canary_revision = run.desired
    # A rollout checks afresh (a retry reruns the checks that failed, and all others);
    # only the stable revision's records and none older are kept: status stays bounded.
    _store_records(
        run,
        [
            r
            for r in _check_records(run)
            if r.revision == s.stable_revision != run.desired and r.state in ledger.FINAL
        ],
    )
    s.rollout_started_at = run.ts
    s.canary_weight = 0
    s.mirror_percent = 0
    s.analysis.consecutive_failures = 0
    # Afresh even when the stage is the one the superseded revision was in: the pods
    # that were ready (and the pause that was running) belong to that revision.
    s.stage_started_at = run.ts
    s.stage_ready_at = None
    if strategy.shadow is not None:
        _enter(run, Stage.SHADOWING)
    else:
        _enter(run, Stage.PROGRESSING, 0)
    run.event(Reason.ROLLOUT_STARTED, f"revision {run.desired} ({why}): {_stage_text(run)}")


def _rollback(run: _Run, reason: str, message: str) -> None:
    s = run.s
    _drop_unfinished(run)
    revision = s.canary_revision or run.desired
    s.canary_weight = 0
    s.mirror_percent = 0
    s.rolled_back_revision = revision
    s.rolled_back_at = run.ts
    s.rollback_reason = reason
    s.canary_revision = ""
    _enter(run, Stage.ROLLED_BACK)
    s.message = f"revision {revision} rolled back: {message}"
    _history(run, revision, Outcome.ROLLED_BACK, reason, message)
    run.event(
        reason,
        f"rolled back revision {revision}: {message}; all traffic on {s.stable_revision}",
        warning=True,
    )


def _to_stable(run: _Run, message: str) -> None:
    s = run.s
    _drop_unfinished(run)
    s.canary_revision = ""
    s.canary_weight = 0
    s.mirror_percent = 0
    s.previous_revision = ""
    s.promoted_at = None
    _enter(run, Stage.STABLE)
    s.message = message


def _deadline_passed(run: _Run) -> bool:
    """True when the current stage's workload has not become ready in time."""
    s = run.s
    if run.paused or s.stage_ready_at:
        return False
    started = parse_time(s.stage_started_at) or run.now
    deadline = started + timedelta(seconds=parse_duration(run.spec.progress_deadline))
    if run.now >= deadline:
        return True
    run.wake_at(deadline)
    return False


def _ready(w: Workload | None, revision: str, replicas: int) -> bool:
    return w is not None and w.revision == revision and w.replicas == replicas and w.ready


def _analysis(run: _Run) -> AnalysisSignal | None:
    return run.obs.analysis


def _analysis_failed(run: _Run) -> bool:
    a = _analysis(run)
    if a is not None and a.health is Health.FAILED:
        _rollback(run, a.reason or Reason.ANALYSIS_FAILED, a.message or "analysis failed")
        return True
    return False


def _analysis_allows_advance(run: _Run) -> bool:
    """Healthy, by a run made after this stage's traffic was set: a pass measured
    before the weight moved says nothing about the new weight. stage_ready_at is stored
    to the second, so the run must come after the end of that second."""
    a = _analysis(run)
    if a is None:
        return True
    if a.health is not Health.HEALTHY:
        return False
    ready = parse_time(run.s.stage_ready_at)
    return a.evidence_at is None or ready is None or a.evidence_at >= ready + timedelta(seconds=1)


# --------------------------------------------------------------------------- checks

CHECK_RETRY_DELAY_SECONDS = 5.0
"""How long after a failed attempt the next one begins (at most the check's timeout)."""


class _Gate(Enum):
    PASSED = "passed"
    HOLD = "hold"
    FAILED = "failed"


def _check_records(run: _Run) -> tuple[ledger.CheckRecord, ...]:
    return tuple(ledger.from_status(c.to_k8s()) for c in run.s.checks)


def _store_records(run: _Run, records: Any) -> None:
    run.s.checks = [CheckStatus.model_validate(ledger.to_status(r)) for r in records]


def _check_where(check: Check, step: int | None) -> str:
    return f"check {check.name} ({check.hook}" + (
        f", step {step + 1})" if step is not None else ")"
    )


def _record_check_results(run: _Run) -> None:
    """The attempts the shell saw end go into status.checks; a result for an attempt
    that is not the current one (stale, or its check left the spec) changes nothing."""
    if not run.obs.check_results:
        return
    by_key = {(c.name, c.hook): c for c in run.checks}
    records = _check_records(run)
    for r in run.obs.check_results:
        check = by_key.get((r.name, Hook(r.hook)))
        if check is None or (check.hook is Hook.EACH_STEP) != (r.step is not None):
            continue
        before = records
        records = ledger.record_result(
            records, check, r.revision, r.attempt, r.passed, r.message, run.now, r.step
        )
        if records == before:
            continue
        where = _check_where(check, r.step)
        if r.passed:
            run.event(Reason.CHECK_PASSED, f"{where} passed for revision {r.revision}: {r.message}")
        elif r.attempt < check.max_attempts:
            run.event(
                Reason.CHECK_RETRYING,
                f"{where} attempt {r.attempt} of {check.max_attempts} failed for revision "
                f"{r.revision}: {r.message}",
                warning=True,
            )
    _store_records(run, records)


def _checks_gate(
    run: _Run, hook: Hook, revision: str, step: int | None = None
) -> tuple[_Gate, str]:
    """Whether the checks of `hook` passed for `revision` (and canary step); if not,
    what they are doing. Begins the next attempt in status (the record is written
    before the shell acts on it), and makes a timed-out last attempt's failure final."""
    checks = checks_for(run.checks, hook)
    if not checks:
        return _Gate.PASSED, ""
    step = step if hook is Hook.EACH_STEP else None
    records = _check_records(run)
    next_ = ledger.next_step(checks, revision, records, run.now, step)
    if isinstance(next_, ledger.AllPassed):
        return _Gate.PASSED, ""
    where = _check_where(next_.check, step)
    current = ledger.find(records, next_.check, revision, step)
    if isinstance(next_, ledger.Failed):
        if current is not None and current.state not in ledger.FINAL:  # timed out, or
            # the budget was lowered: the failure is final in status as it is here
            _store_records(
                run,
                ledger.record_result(
                    records, next_.check, revision, current.attempts, False, next_.message,
                    run.now, step,
                ),
            )  # fmt: skip
        return _Gate.FAILED, f"{where} failed: {next_.message}"
    attempts = next_.check.max_attempts
    if isinstance(next_, ledger.Wait):
        run.wake_at(next_.until)
        return _Gate.HOLD, f"{where} running: attempt {current.attempts} of {attempts}"
    if current is not None and current.state is CheckState.PENDING and current.finished_at:
        delay = min(CHECK_RETRY_DELAY_SECONDS, next_.check.timeout_seconds)
        retry_at = current.finished_at + timedelta(seconds=delay)
        if run.now < retry_at:
            run.wake_at(retry_at)
            return _Gate.HOLD, (
                f"{where}: attempt {current.attempts} of {attempts} failed "
                f"({current.message}); retrying"
            )
    _store_records(
        run, ledger.record_start(records, next_.check, revision, next_.attempt, run.now, step)
    )
    run.wake_at(run.now + timedelta(seconds=next_.check.timeout_seconds))
    if next_.attempt == 1:
        run.event(Reason.CHECK_RUNNING, f"{where} of revision {revision} started")
    elif current is not None and current.state is CheckState.RUNNING:  # it timed out
        run.event(
            Reason.CHECK_RETRYING,
            f"{where} attempt {current.attempts} of {attempts} for revision {revision}: "
            f"{ledger.timed_out_message(next_.check, current.attempts)}",
            warning=True,
        )
    if hook is Hook.BEFORE_TRAFFIC and not run.s.stage_ready_at:
        # The progress deadline is for the pods, not the checks: it counts afresh from
        # each attempt, so a long check and a readiness blip after it do not add up.
        run.s.stage_started_at = run.ts
    return _Gate.HOLD, f"{where} running: attempt {next_.attempt} of {attempts}"


def _failed_check(run: _Run) -> str:
    """Why a check of the revision being rolled out has failed for good ("" if none):
    a Failed record, or a last attempt past its deadline (made final here)."""
    by_key = {(c.name, c.hook): c for c in run.checks if c.hook is not Hook.AFTER_PROMOTION}
    records = _check_records(run)
    for r in records:
        check = by_key.get((r.name, r.hook))
        if check is None or r.revision != run.desired:
            continue
        if r.state is CheckState.FAILED:
            return f"{_check_where(check, r.step)} failed: {r.message}"
        past = r.state is CheckState.RUNNING and run.now >= ledger.deadline(check, r)
        if past and r.attempts >= check.max_attempts:
            why = ledger.timed_out_message(check, r.attempts)
            _store_records(
                run,
                ledger.record_result(records, check, r.revision, r.attempts, False, why, run.now,
                                     r.step),
            )  # fmt: skip
            return f"{_check_where(check, r.step)} failed: {why}"
    return ""


def _drop_unfinished(run: _Run) -> None:
    """A rollout ended or starts anew: attempts still running or due are of no use
    any more (the shell stops waiting for them); passed and failed ones are kept."""
    records = _check_records(run)
    kept = [r for r in records if r.state in ledger.FINAL]
    if len(kept) != len(records):
        _store_records(run, kept)


def _checks_hold(run: _Run, hook: Hook, what: str, step: int | None = None) -> bool:
    """True when the checks of `hook` keep the stage where it is: still running (the
    message says which), or failed (rolled back, reason CheckFailed)."""
    gate, why = _checks_gate(run, hook, run.desired, step)
    if gate is _Gate.FAILED:
        _rollback(run, Reason.CHECK_FAILED, why)
    elif gate is _Gate.HOLD:
        run.s.message = f"{what}: {why}"
    return gate is not _Gate.PASSED


# --------------------------------------------------------------------------- stages


def _initializing(run: _Run) -> None:
    s = run.s
    s.primary_revision = run.desired
    if not s.stage:
        _enter(run, Stage.INITIALIZING)
    if _ready(run.obs.primary, run.desired, run.spec.replicas):
        s.stable_revision = run.desired
        s.stage_ready_at = run.ts
        _to_stable(run, f"revision {run.desired} is available")
        run.event(
            Reason.AVAILABLE, f"revision {run.desired} is available on {run.spec.replicas} replicas"
        )
        return
    s.message = f"waiting for revision {run.desired} to become available"
    if s.stage == Stage.INITIALIZING and _deadline_passed(run):
        _enter(run, Stage.FAILED)
        s.message = f"revision {run.desired} not available within {run.spec.progress_deadline}"
        run.event(Reason.PROGRESS_DEADLINE_EXCEEDED, s.message, warning=True)


def _failed(run: _Run) -> None:
    """Never became available the first time: keep trying the newest template."""
    s = run.s
    if s.primary_revision != run.desired:
        s.primary_revision = run.desired
        _enter(run, Stage.INITIALIZING)
        run.event(Reason.INITIALIZING, f"a new template: trying revision {run.desired}")
        return
    if _ready(run.obs.primary, run.desired, run.spec.replicas):
        s.stable_revision = run.desired
        _to_stable(run, f"revision {run.desired} is available")
        run.event(Reason.AVAILABLE, f"revision {run.desired} is available")


def _stable(run: _Run) -> None:
    s = run.s
    s.primary_revision = s.stable_revision
    if run.desired == s.stable_revision:
        s.message = f"revision {s.stable_revision} is serving"
        return
    if "retry" in run.fired and run.desired == s.rolled_back_revision:
        _retry_lifts_pause(run)
        _start_rollout(run, "retry gate")
        return
    if _cooling_down(run):
        return
    _start_rollout(run, "new template")


def _cooling_down(run: _Run) -> bool:
    s = run.s
    if run.desired != s.rolled_back_revision:
        return False
    since = parse_time(s.rolled_back_at)
    if since is None:
        return False
    until = since + timedelta(seconds=parse_duration(run.spec.rollback.cooldown))
    if run.now >= until:
        return False
    s.message = (
        f"revision {run.desired} was rolled back at {s.rolled_back_at}; "
        f"not retried before {timestamp(until)} (cooldown) unless the retry gate is used"
    )
    run.wake_at(until)
    return True


def _rolled_back(run: _Run) -> None:
    s = run.s
    s.primary_revision = s.stable_revision
    if run.desired == s.stable_revision:
        _to_stable(run, f"template reverted; revision {s.stable_revision} is serving")
        run.event(Reason.STABLE, s.message)
        return
    if "retry" in run.fired:
        _retry_lifts_pause(run)
        _start_rollout(run, "retry gate")
        return
    if run.desired != s.rolled_back_revision:
        _start_rollout(run, "new template after a rollback")
        return
    s.message = (
        f"revision {s.rolled_back_revision} rolled back ({s.rollback_reason}); "
        f"revision {s.stable_revision} serves; use the retry gate or change the template"
    )


def _retry_lifts_pause(run: _Run) -> None:
    """A retry is an explicit go: it lifts the pause gate (spec.paused, which is yours,
    still holds the rollout it starts; the CLI says so)."""
    s = run.s
    if s.user_paused:
        s.user_paused = False
        run.event(Reason.RESUMED, "the retry gate lifts the pause gate")


def _rollout_prelude(run: _Run) -> bool:
    """What every rollout stage checks first. True when it moved to another stage."""
    s = run.s
    s.primary_revision = s.stable_revision
    if run.desired != s.canary_revision:
        old = s.canary_revision
        if run.desired == s.stable_revision:
            _history(
                run,
                old,
                Outcome.CANCELLED,
                Reason.TEMPLATE_REVERTED,
                "the template is back at the stable revision",
            )
            _to_stable(run, f"rollout of {old} cancelled; revision {s.stable_revision} is serving")
            run.event(Reason.ROLLOUT_CANCELLED, s.message)
        else:
            _history(
                run,
                old,
                Outcome.SUPERSEDED,
                Reason.NEW_TEMPLATE,
                f"superseded by revision {run.desired}",
            )
            _start_rollout(run, f"supersedes {old}")
        return True
    if "abort" in run.fired:
        _rollback(run, Reason.ABORTED, "the abort gate was used")
        return True
    if _analysis_failed(run):
        return True
    failed = _failed_check(run)
    if failed:  # even while paused or held by the analysis: a failure is final
        _rollback(run, Reason.CHECK_FAILED, failed)
        return True
    if "promote" in run.fired and s.stage != Stage.PROMOTING:
        s.mirror_percent = 0
        _enter(run, Stage.PROMOTING)
        run.event(Reason.PROMOTE_REQUESTED, "the promote gate skips the remaining stages")
        return True
    return False


def _hold_or_timeout(run: _Run, what: str) -> None:
    """The stage's workload is not ready: wait, or roll back past the deadline. A stage
    that was ready and lost it (pods crashing at a step) gets a fresh deadline from
    that moment, and its pause starts over once it is ready again."""
    s = run.s
    if s.stage_ready_at:
        s.stage_ready_at = None
        s.stage_started_at = run.ts
        run.event(
            Reason.READINESS_LOST,
            f"{what} is no longer ready; rolled back unless ready again within "
            f"{run.spec.progress_deadline}",
            warning=True,
        )
    if _deadline_passed(run):
        _rollback(
            run,
            Reason.PROGRESS_DEADLINE_EXCEEDED,
            f"{what} not ready within {run.spec.progress_deadline}",
        )
    else:
        run.s.message = f"waiting for {what} to become ready"


def _shadowing(run: _Run) -> None:
    if _rollout_prelude(run):
        return
    s, shadow = run.s, run.spec.strategy.shadow
    if shadow is None:  # the stage was removed from the spec mid-rollout
        _enter(run, Stage.PROGRESSING, 0)
        run.event(Reason.SHADOW_REMOVED, f"the shadow stage left the spec; {_stage_text(run)}")
        return
    not_ready = _shadow_not_ready(run)
    if not_ready:
        _hold_or_timeout(run, not_ready)
        return
    comparison = run.obs.comparison
    if comparison is not None and comparison.health is Health.FAILED:
        _rollback(run, comparison.reason or Reason.SHADOW_MISMATCH, comparison.message)
        return
    if run.paused:  # held: the mirror stays as it is, the stage's timer does not start
        s.message = "paused while shadowing"
        return
    if _checks_hold(run, Hook.BEFORE_TRAFFIC, "before the mirror"):
        return
    s.stage_ready_at = s.stage_ready_at or run.ts
    s.mirror_percent = shadow.mirror_percent
    done_at = parse_time(s.stage_ready_at) + timedelta(seconds=parse_duration(shadow.duration))
    if run.now < done_at:
        run.wake_at(done_at)
        s.message = f"shadowing {shadow.mirror_percent}% of requests until {timestamp(done_at)}"
        return
    if not _analysis_allows_advance(run):
        s.message = "shadow duration passed; waiting for the analysis to pass"
        return
    if shadow.compare is not None and not _comparison_allows_advance(run):
        why = comparison.message if comparison is not None else "not read yet"
        hold = "shadow duration passed; waiting for the comparison to pass"
        if not s.message.startswith(hold):  # once per hold: say it in an Event too
            run.event(
                (comparison.reason if comparison else "") or Reason.COMPARISON_PENDING,
                f"the comparison holds revision {run.desired} past the shadow's duration: {why}",
                warning=True,
            )
        s.message = f"{hold}: {why}"
        return
    s.mirror_percent = 0
    _enter(run, Stage.PROGRESSING, 0)
    run.event(Reason.SHADOW_PASSED, f"shadow of revision {run.desired} passed; {_stage_text(run)}")


def _comparison_allows_advance(run: _Run) -> bool:
    """Passed, by a look at the counts after this stage's copies began (stage_ready_at,
    to the second): a pass read before a comparator restart says nothing of the new one."""
    c = run.obs.comparison
    if c is None or c.health is not Health.HEALTHY:
        return False
    ready = parse_time(run.s.stage_ready_at)
    return c.evidence_at is None or ready is None or c.evidence_at >= ready + timedelta(seconds=1)


def _shadow_not_ready(run: _Run) -> str:
    """What of the shadow stage is not ready yet ("" when all is): the shadow, and with a
    comparison its comparator and baseline too — copies reach the comparator only once
    it answers, and it compares only once both sides do."""
    s, spec = run.s, run.spec
    if not _ready(run.obs.shadow, run.desired, replicas_for(SHADOW, spec, s)):
        return f"shadow of revision {run.desired}"
    shadow = spec.strategy.shadow
    if shadow is None or shadow.compare is None:
        return ""
    if not _ready(run.obs.comparator, run.desired, replicas_for(COMPARATOR, spec, s)):
        return f"comparator of revision {run.desired}"
    baseline = replicas_for(BASELINE, spec, s)
    if baseline and not _ready(run.obs.baseline, s.stable_revision, baseline):
        return f"baseline (revision {s.stable_revision})"
    return ""


def _progressing(run: _Run) -> None:
    if _rollout_prelude(run):
        return
    s, strategy = run.s, run.spec.strategy
    s.mirror_percent = 0
    if strategy.canary is not None:
        steps = strategy.canary.steps
        i = s.current_step = current_step(run.spec, s)
        step = steps[i]
        what = f"canary step {i + 1}/{len(steps)} ({step.weight}%)"
        weight = step.weight
        pause = step.pause
        duration = pause.duration if pause is not None else None
        waits_for_person = pause is not None and not pause.duration
    else:
        bg = strategy.blue_green
        what = "blue/green preview"
        weight = 0
        duration = bg.preview_duration if bg is not None else None
        waits_for_person = duration is None

    want = replicas_for(CANARY, run.spec, s)
    if not _ready(run.obs.canary, run.desired, want):
        _hold_or_timeout(run, f"{what} of revision {run.desired}")
        return
    if run.paused:  # held: traffic stays as it is, the step's pause does not start
        s.message = f"paused at {what}"
        return
    if _checks_hold(run, Hook.BEFORE_TRAFFIC, f"{what} before any traffic"):
        return
    if not s.stage_ready_at:
        s.stage_ready_at = run.ts
        run.event(Reason.STEP_READY, f"{what}: revision {run.desired} ready, weight {weight}%")
    s.canary_weight = weight
    if duration:
        done_at = parse_time(s.stage_ready_at) + timedelta(seconds=parse_duration(duration))
        if run.now < done_at:
            run.wake_at(done_at)
            s.message = f"{what} until {timestamp(done_at)}"
            return
    elif waits_for_person and "resume" not in run.fired:
        s.waiting_for_promotion = True
        s.message = f"{what}: waiting for the resume gate (next stage) or promote gate (all)"
        return
    held = not _analysis_allows_advance(run)
    if held:
        s.message = f"{what}: waiting for the analysis to pass"
    elif _checks_hold(run, Hook.EACH_STEP, what, s.current_step):
        if s.stage == Stage.ROLLED_BACK:
            return
        held = True
    if held:
        if waits_for_person and "resume" in run.fired:
            # Keep the resume for when the checks pass: leave its token unacknowledged.
            s.gates.resume = run.acked_before["resume"]
            s.gates.resume_noted = run.obs.gates.resume
            s.message += RESUME_NOTED
        return
    run.fired.discard("resume")  # spent: it releases one step, not the next one too
    if strategy.canary is not None and s.current_step + 1 < len(strategy.canary.steps):
        _enter(run, Stage.PROGRESSING, s.current_step + 1)
        run.event(Reason.STEP_ADVANCED, _stage_text(run))
    else:
        _enter(run, Stage.PROMOTING)
        run.event(Reason.PROMOTING, f"revision {run.desired} passed every stage; promoting")


def _promoting(run: _Run) -> None:
    if _rollout_prelude(run):
        return
    s = run.s
    s.mirror_percent = 0
    if not _ready(run.obs.canary, run.desired, run.spec.replicas):
        _hold_or_timeout(run, f"revision {run.desired} at full scale")
        return
    s.stage_ready_at = s.stage_ready_at or run.ts
    if run.paused:
        s.message = "paused before the switch to the new revision"
        return
    if _checks_hold(run, Hook.BEFORE_PROMOTION, "before the switch"):
        return
    previous = s.stable_revision
    s.canary_weight = 100
    s.previous_revision = previous
    s.stable_revision = run.desired
    s.promoted_at = run.ts
    _enter(run, Stage.SUCCEEDED)
    s.message = f"revision {run.desired} promoted; revision {previous} kept warm"
    _history(run, run.desired, Outcome.PROMOTED, Reason.PROMOTED, f"replaced revision {previous}")
    run.event(
        Reason.PROMOTED,
        f"revision {run.desired} serves all traffic; {previous} kept warm for {run.spec.keep_warm}",
    )


def _succeeded(run: _Run) -> None:
    """The new revision serves from the canary Deployment; the previous one stays warm
    in primary until the warm period ends, then primary takes the new template."""
    s = run.s
    warm = s.primary_revision == s.previous_revision and bool(s.previous_revision)
    failed = _analysis(run) is not None and _analysis(run).health is Health.FAILED
    newer_waits = run.desired != s.stable_revision
    checks, checks_why = _Gate.PASSED, ""
    if warm and not newer_waits and "abort" not in run.fired and not failed:
        # The old version is the way back while they run (a revert, an abort or a
        # failed analysis goes back without them: no new attempt starts then).
        checks, checks_why = _checks_gate(run, Hook.AFTER_PROMOTION, s.stable_revision)
    checks_failed = checks is _Gate.FAILED
    if warm and (
        run.desired == s.previous_revision or "abort" in run.fired or failed or checks_failed
    ):
        if run.desired == s.previous_revision:
            reason, message = (
                Reason.TEMPLATE_REVERTED,
                "the template is back at the previous revision",
            )
        elif "abort" in run.fired:
            reason, message = Reason.ABORTED, "the abort gate was used in the warm period"
        elif checks_failed:
            reason, message = Reason.CHECK_FAILED, f"after promotion, {checks_why}"
        else:
            reason = _analysis(run).reason or Reason.ANALYSIS_FAILED
            message = _analysis(run).message or "analysis failed in the warm period"
        new = s.stable_revision
        s.stable_revision = s.previous_revision
        s.canary_revision = new
        if run.desired == s.stable_revision:
            _history(run, new, Outcome.ROLLED_BACK, reason, message)
            _to_stable(run, f"revision {new} rolled back ({message}); {s.stable_revision} serves")
            run.event(reason, s.message, warning=True)
        else:
            _rollback(run, reason, message)
        return
    if "abort" in run.fired:
        run.event(
            Reason.ABORT_IGNORED,
            f"revision {s.previous_revision or 'before'} is no longer running; "
            "revert the template to roll back",
            warning=True,
        )
    warm_until = (parse_time(s.promoted_at) or run.now) + timedelta(
        seconds=parse_duration(run.spec.keep_warm)
    )
    if warm and run.now < warm_until and not newer_waits:
        run.wake_at(warm_until)
        s.message = (
            f"revision {s.stable_revision} serves; "
            f"{s.previous_revision} warm until {timestamp(warm_until)}"
        )
        return
    if checks is _Gate.HOLD:
        s.message = (
            f"revision {s.stable_revision} serves; {s.previous_revision} kept warm until "
            f"the checks pass: {checks_why}"
        )
        return
    a = _analysis(run)
    if warm and not newer_waits and a is not None and a.health is not Health.HEALTHY:
        # The previous revision is the way back: it stays until the checks pass.
        s.message = (
            f"revision {s.stable_revision} serves; {s.previous_revision} kept warm until "
            "the analysis passes"
        )
        return
    # Hand over: primary takes the new template; traffic stays on the canary until then.
    if s.primary_revision != s.stable_revision:
        s.primary_revision = s.stable_revision
        s.stage_started_at = run.ts
        s.stage_ready_at = None
    if not _ready(run.obs.primary, s.stable_revision, run.spec.replicas):
        # One wording before and after the warning: an unchanged world rewrites nothing.
        s.message = f"primary rolling to revision {s.stable_revision}; traffic stays on the canary"
        if _deadline_passed(run):
            run.event(
                Reason.HANDOVER_SLOW,
                f"primary not ready with revision {s.stable_revision} within "
                f"{run.spec.progress_deadline}; traffic stays on the canary",
                warning=True,
            )
            s.stage_started_at = run.ts  # warn again after another deadline
            run.wake_at(run.now + timedelta(seconds=parse_duration(run.spec.progress_deadline)))
        return
    _to_stable(run, f"revision {s.stable_revision} is serving from primary")
    run.event(Reason.STABLE, s.message)


def _stage_text(run: _Run) -> str:
    s, strategy = run.s, run.spec.strategy
    if s.stage == Stage.SHADOWING and strategy.shadow is not None:
        return f"shadowing {strategy.shadow.mirror_percent}% for {strategy.shadow.duration}"
    step = canary_step(run.spec, s)
    if s.stage == Stage.PROGRESSING and strategy.canary is not None and step is not None:
        i, count = current_step(run.spec, s), len(strategy.canary.steps)
        return f"canary step {i + 1}/{count} at {step.weight}%"
    if s.stage == Stage.PROGRESSING:
        return "blue/green preview"
    return s.stage or ""


_HANDLERS = {
    Stage.INITIALIZING: _initializing,
    Stage.FAILED: _failed,
    Stage.STABLE: _stable,
    Stage.SHADOWING: _shadowing,
    Stage.PROGRESSING: _progressing,
    Stage.PROMOTING: _promoting,
    Stage.SUCCEEDED: _succeeded,
    Stage.ROLLED_BACK: _rolled_back,
}
