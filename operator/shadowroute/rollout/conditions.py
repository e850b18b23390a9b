"""Status conditions from the stage, after Kubernetes API conventions: a condition's
lastTransitionTime changes only when its status does."""

from __future__ import annotations

from datetime import datetime

from ..api.models import Condition, ConditionStatus, ShadowRouteStatus, format_timestamp
from ..names import CANARY, PAUSED, ROLLOUT_STAGES, ConditionType, Stage
from ..reasons import Reason
from ..stages import serving_role
from .observe import Observation

READY = ConditionType.READY
AVAILABLE = ConditionType.AVAILABLE
RECONCILING = ConditionType.RECONCILING
STALLED = ConditionType.STALLED
PROGRESSING = ConditionType.PROGRESSING
DEGRADED = ConditionType.DEGRADED
ANALYSIS_HEALTHY = ConditionType.ANALYSIS_HEALTHY
ANALYSIS_PENDING = Reason.ANALYSIS_PENDING
ANALYSIS_PARTIAL = Reason.PARTIAL_WINDOW
AVAILABLE_REASON = Reason.AVAILABLE


def set_condition(
    s: ShadowRouteStatus, type_: str, status: str, reason: str, message: str, now: datetime
) -> None:
    s.set_condition(
        type_, ConditionStatus(status), reason, message, format_timestamp(now),
        observed_generation=s.observed_generation,
    )  # fmt: skip


def update(
    s: ShadowRouteStatus, obs: Observation, now: datetime, paused: bool, desired: str = ""
) -> None:
    """Every condition from the decided status; `desired` is the revision the spec asks
    for (Stable with another one is a rolled-back template held by the cooldown)."""
    available = _available(s, obs, now)
    cooling = s.stage == Stage.STABLE and bool(desired) and desired != s.stable_revision
    _ready(s, available, now, paused, cooling)
    _reconciling_and_stalled(s, now, paused, cooling)
    _progressing(s, now, paused)
    _degraded(s, obs, now)
    _analysis_healthy(s, obs, now)


def _analysis_healthy(s: ShadowRouteStatus, obs: Observation, now: datetime) -> None:
    """AnalysisHealthy: the verdict of the last analysis run, as stored in
    status.analysis (so a restart or an idle stage keeps showing it). Absent when the
    spec has no analysis."""
    if obs.analysis is None:
        s.conditions = [c for c in s.conditions if c.type != ANALYSIS_HEALTHY]
        return
    a = s.analysis
    if a.verdict is None:
        status, reason = "Unknown", a.reason or ANALYSIS_PENDING
        message = a.message or "no analysis run yet"
    elif a.reason in (ANALYSIS_PARTIAL, Reason.NO_DATA):
        # Within bounds on a window that cannot back a pass yet, or no data yet (a new
        # canary before its first requests): no evidence either way, nothing is wrong.
        status, reason, message = "Unknown", a.reason, a.message
    elif a.verdict == "Pass":
        status, reason, message = "True", a.reason or Reason.ANALYSIS_PASSED, a.message
    else:
        status, reason, message = "False", a.reason or Reason.ANALYSIS_FAILED, a.message
    set_condition(s, ANALYSIS_HEALTHY, status, reason, message, now)


def _available(s: ShadowRouteStatus, obs: Observation, now: datetime) -> bool:
    """Available: the version that takes the live traffic is available, whatever it is
    (the stable one during a canary step or after a rollback). Its loss is the
    `Unavailable` Warning Event."""
    name = serving_role(s)
    serving = obs.canary if name == CANARY else obs.primary
    if serving is not None and serving.ready and serving.replicas > 0:
        set_condition(
            s, AVAILABLE, "True", AVAILABLE_REASON,
            f"{name} Deployment is available with revision {serving.revision}", now,
        )  # fmt: skip
        return True
    if s.stage in ("", Stage.INITIALIZING, Stage.FAILED):
        why = s.message or "waiting for primary"
        set_condition(s, AVAILABLE, "False", Reason.INITIALIZING, why, now)
    else:
        why = f"{name} Deployment is not available"
        set_condition(s, AVAILABLE, "False", Reason.UNAVAILABLE, why, now)
    return False


def _rollout_reason(s: ShadowRouteStatus, paused: bool) -> str:
    """Why a revision is still on its way: the stage's reason, or the hold's."""
    if s.phase == PAUSED:
        waiting = s.waiting_for_promotion and not paused
        return Reason.WAITING_FOR_PROMOTION if waiting else Reason.PAUSED
    return _PROGRESS_REASONS.get(s.stage or Stage.INITIALIZING, ("Unknown", Reason.INITIALIZING))[1]


def _ready(
    s: ShadowRouteStatus, available: bool, now: datetime, paused: bool, cooling: bool
) -> None:
    """Ready (what `kubectl wait --for=condition=Ready`, Flux and Argo CD wait on): the
    desired template serves all live traffic and is available. So it is False for the
    whole of a rollout (shadow, canary steps, preview, promotion, held), True from the
    promotion on (Succeeded: the new revision serves 100 % from the canary Deployment)
    and at rest (Stable), and False after a rollback: the primary serves the previous
    revision, not the one the spec asks for (Stalled says a person must act)."""
    stage = s.stage or Stage.INITIALIZING
    if stage in (Stage.INITIALIZING, Stage.FAILED) or not available:
        available_now = s.condition(AVAILABLE)
        assert available_now is not None
        set_condition(s, READY, "False", available_now.reason, available_now.message, now)
    elif stage in ROLLOUT_STAGES:
        serving = s.primary_revision or s.stable_revision
        doing = s.message or stage
        why = f"revision {s.canary_revision} is rolling out ({doing}); {serving} serves"
        set_condition(s, READY, "False", _rollout_reason(s, paused), why, now)
    elif stage == Stage.ROLLED_BACK:
        why = (
            f"revision {s.rolled_back_revision or s.canary_revision} was rolled back; "
            f"{s.stable_revision} serves all traffic, not the template the spec asks for "
            "(the retry gate or a new template goes on)"
        )
        set_condition(s, READY, "False", s.rollback_reason or Reason.ROLLED_BACK, why, now)
    elif cooling:  # the spec's template is not served yet: it starts after the cooldown
        set_condition(s, READY, "False", Reason.COOLING_DOWN, s.message, now)
    else:  # Stable, or Succeeded: the desired revision takes all the traffic
        serving = s.condition(AVAILABLE)
        assert serving is not None
        set_condition(s, READY, "True", AVAILABLE_REASON, serving.message, now)


def _reconciling_and_stalled(
    s: ShadowRouteStatus, now: datetime, paused: bool, cooling: bool
) -> None:
    """The kstatus pair. Reconciling: the operator is still working toward the spec,
    from the first apply (Initializing) through every rollout stage, a hold included,
    to the end of the warm period (Succeeded: a post-promotion check may still undo
    it). Stalled: it cannot go on without a person: rolled back (the retry gate or a
    new template), or the first version never became available (Failed). Never both
    True. The shell sets Stalled for a child it cannot write (`stall`)."""
    stage = s.stage or Stage.INITIALIZING
    if stage == Stage.ROLLED_BACK:
        reason = s.rollback_reason or Reason.ROLLED_BACK
        set_condition(s, RECONCILING, "False", reason, "", now)
        set_condition(s, STALLED, "True", reason, s.message or "", now)
    elif stage == Stage.FAILED:
        reason = Reason.PROGRESS_DEADLINE_EXCEEDED
        set_condition(s, RECONCILING, "False", reason, "", now)
        set_condition(s, STALLED, "True", reason, s.message or "", now)
    elif stage == Stage.STABLE and cooling:  # it goes on by itself when the cooldown ends
        set_condition(s, RECONCILING, "True", Reason.COOLING_DOWN, s.message or "", now)
        set_condition(s, STALLED, "False", Reason.AS_EXPECTED, "", now)
    elif stage == Stage.STABLE:
        set_condition(s, RECONCILING, "False", Reason.STABLE, "", now)
        set_condition(s, STALLED, "False", Reason.AS_EXPECTED, "", now)
    else:
        set_condition(s, RECONCILING, "True", _rollout_reason(s, paused), s.message or "", now)
        set_condition(s, STALLED, "False", Reason.AS_EXPECTED, "", now)


STALL_REPORTED = (DEGRADED, STALLED, RECONCILING, READY)
"""The conditions a failure the shell reports sets (Degraded, then `stall`)."""


def stall(s: ShadowRouteStatus, reason: str, message: str, now: datetime) -> None:
    """Stalled=True (and Reconciling=False) for what the shell found: a child it cannot
    write, a spec the models refuse. Ready is False: the spec is not served."""
    set_condition(s, STALLED, "True", reason, message, now)
    set_condition(s, RECONCILING, "False", reason, "", now)
    set_condition(s, READY, "False", reason, message, now)


def retrying(s: ShadowRouteStatus, reason: str, message: str, now: datetime) -> None:
    """A write the API server failed or was too busy for (5xx, 429, no answer): retried
    with backoff, so Reconciling=True and Stalled=False (kstatus: no person needed);
    Ready is False until the write goes through."""
    set_condition(s, STALLED, "False", Reason.AS_EXPECTED, "", now)
    set_condition(s, RECONCILING, "True", reason, message, now)
    set_condition(s, READY, "False", reason, message, now)


_PROGRESS_REASONS = {
    Stage.INITIALIZING: ("True", Reason.INITIALIZING),
    Stage.SHADOWING: ("True", Reason.SHADOWING),
    Stage.PROGRESSING: ("True", Reason.CANARY_PROGRESSING),
    Stage.PROMOTING: ("True", Reason.PROMOTING),
    Stage.SUCCEEDED: ("True", Reason.KEEPING_PREVIOUS_WARM),
    Stage.STABLE: ("False", Reason.STABLE),
    Stage.FAILED: ("False", Reason.PROGRESS_DEADLINE_EXCEEDED),
}


def _progressing(s: ShadowRouteStatus, now: datetime, paused: bool) -> None:
    if s.stage == Stage.ROLLED_BACK:
        status, reason = "False", s.rollback_reason or Reason.ROLLED_BACK
    elif s.phase == PAUSED:
        status = "Unknown"
        waiting = s.waiting_for_promotion and not paused
        reason = Reason.WAITING_FOR_PROMOTION if waiting else Reason.PAUSED
    else:
        status, reason = _PROGRESS_REASONS.get(
            s.stage or Stage.INITIALIZING, ("Unknown", "Unknown")
        )
    set_condition(s, PROGRESSING, status, reason, s.message or "", now)


def _degraded(s: ShadowRouteStatus, obs: Observation, now: datetime) -> None:
    if not obs.primary_template_known:
        set_condition(
            s, DEGRADED, "True", Reason.STABLE_TEMPLATE_LOST,
            "the primary Deployment that held the stable template is gone; "
            "it is recreated from the current template", now,
        )  # fmt: skip
    elif s.stage == Stage.ROLLED_BACK:
        set_condition(
            s, DEGRADED, "True", s.rollback_reason or Reason.ROLLED_BACK, s.message or "", now
        )
    elif s.stage == Stage.FAILED:
        set_condition(s, DEGRADED, "True", Reason.PROGRESS_DEADLINE_EXCEEDED, s.message or "", now)
    else:
        set_condition(s, DEGRADED, "False", Reason.AS_EXPECTED, "", now)


def readiness_lost(old: ShadowRouteStatus, new: ShadowRouteStatus) -> Condition | None:
    """Available turned False after it was True: the version taking the live traffic is
    not available any more. Worth a Warning Event, once per loss. (Ready turning False
    as a rollout starts is no loss: the same version still serves.) A status written
    before the Available condition existed has its Ready say what Available says now."""
    before = old.condition(AVAILABLE) or old.condition(READY)
    after = new.condition(AVAILABLE)
    if before is None or after is None or before.status != "True" or after.status != "False":
        return None
    return after
