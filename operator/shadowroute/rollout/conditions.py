"""Status conditions from the stage, after Kubernetes API conventions: a condition's
lastTransitionTime changes only when its status does."""

from __future__ import annotations

from datetime import datetime

from ..api.models import Condition, ConditionStatus, ShadowRouteStatus, format_timestamp
from ..names import CANARY, PAUSED, ConditionType, Stage
from ..reasons import Reason
from ..stages import serving_role
from .observe import Observation

READY = ConditionType.READY
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


def update(s: ShadowRouteStatus, obs: Observation, now: datetime, paused: bool) -> None:
    _ready(s, obs, now)
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


def _ready(s: ShadowRouteStatus, obs: Observation, now: datetime) -> None:
    """Ready: the version that takes the live traffic is available."""
    name = serving_role(s)
    serving = obs.canary if name == CANARY else obs.primary
    if serving is not None and serving.ready and serving.replicas > 0:
        set_condition(
            s, READY, "True", AVAILABLE_REASON,
            f"{name} Deployment is available with revision {serving.revision}", now,
        )  # fmt: skip
    elif s.stage in ("", Stage.INITIALIZING, Stage.FAILED):
        why = s.message or "waiting for primary"
        set_condition(s, READY, "False", Reason.INITIALIZING, why, now)
    else:
        why = f"{name} Deployment is not available"
        set_condition(s, READY, "False", Reason.UNAVAILABLE, why, now)


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
    """Ready turned False after it was True: the version taking the live traffic is not
    available any more. Worth a Warning Event, once per loss."""
    before, after = old.condition(READY), new.condition(READY)
    if before is None or after is None or before.status != "True" or after.status != "False":
        return None
    return after
