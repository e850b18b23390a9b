"""Every reason the operator reports, in one place: condition reasons, Event reasons and
rollback reasons (`status.rollbackReason`, `history[].reason`).

One spelling for each, so a reason the docs explain (docs/troubleshooting.md,
docs/analysis.md) is the one the code writes; `tests/unit/test_reasons.py` checks that
every reason here is documented there. Names are CamelCase, as Kubernetes API
conventions want.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # The life of a revision (Events; Progressing reasons).
    AVAILABLE = "Available"
    INITIALIZING = "Initializing"
    ROLLOUT_STARTED = "RolloutStarted"
    ROLLOUT_CANCELLED = "RolloutCancelled"
    SHADOW_PASSED = "ShadowPassed"
    SHADOW_REMOVED = "ShadowRemoved"
    STEP_READY = "StepReady"
    STEP_ADVANCED = "StepAdvanced"
    PROMOTING = "Promoting"
    PROMOTE_REQUESTED = "PromoteRequested"
    PROMOTED = "Promoted"
    STABLE = "Stable"
    PAUSED = "Paused"
    RESUMED = "Resumed"
    WAITING_FOR_PROMOTION = "WaitingForPromotion"
    COOLING_DOWN = "CoolingDown"
    KEEPING_PREVIOUS_WARM = "KeepingPreviousWarm"
    CANARY_PROGRESSING = "CanaryProgressing"
    SHADOWING = "Shadowing"
    NEW_TEMPLATE = "NewTemplate"  # history: a newer template superseded the rollout
    HANDOVER_SLOW = "HandoverSlow"
    ABORT_IGNORED = "AbortIgnored"
    READINESS_LOST = "ReadinessLost"
    UNAVAILABLE = "Unavailable"
    AS_EXPECTED = "AsExpected"

    # Why a revision was rolled back.
    ABORTED = "Aborted"
    ANALYSIS_FAILED = "AnalysisFailed"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    TEMPLATE_REVERTED = "TemplateReverted"
    ROLLED_BACK = "RolledBack"
    STABLE_TEMPLATE_LOST = "StableTemplateLost"
    SHADOW_MISMATCH = "ShadowMismatch"
    SHADOW_TOO_SLOW = "ShadowTooSlow"
    CHECK_FAILED = "CheckFailed"

    # The acceptance checks (Events while they run).
    CHECK_RUNNING = "CheckRunning"
    CHECK_PASSED = "CheckPassed"
    CHECK_RETRYING = "CheckRetrying"

    # The shadow comparison (status.comparison.reason).
    COMPARISON_PASSED = "ComparisonPassed"
    COMPARISON_PENDING = "ComparisonPending"
    COMPARISON_UNAVAILABLE = "ComparisonUnavailable"

    # The analysis (AnalysisHealthy).
    ANALYSIS_PENDING = "AnalysisPending"
    ANALYSIS_IDLE = "AnalysisIdle"
    ANALYSIS_PASSED = "AnalysisPassed"
    ANALYSIS_ERROR = "AnalysisError"
    PARTIAL_WINDOW = "PartialWindow"
    NO_DATA = "NoData"
    INVALID_QUERY = "InvalidQuery"
    PROMETHEUS_UNAVAILABLE = "PrometheusUnavailable"
    CREDENTIALS_INVALID = "CredentialsInvalid"

    # Writing the children (Degraded, Ready).
    INVALID_SPEC = "InvalidSpec"
    APPLY_FAILED = "ApplyFailed"
    NAME_CONFLICT = "NameConflict"
    ROUTE_CONFLICT = "RouteConflict"
    ROUTE_KIND_MISSING = "RouteKindMissing"
    ROUTE_INVALID = "RouteInvalid"
    ROUTE_FORBIDDEN = "RouteForbidden"
    ROUTE_NOT_FOUND = "RouteNotFound"
    ROUTE_APPLY_FAILED = "RouteApplyFailed"


WRITE_FAILURES = frozenset(
    {
        Reason.APPLY_FAILED,
        Reason.NAME_CONFLICT,
        Reason.ROUTE_CONFLICT,
        Reason.ROUTE_KIND_MISSING,
        Reason.ROUTE_INVALID,
        Reason.ROUTE_FORBIDDEN,
        Reason.ROUTE_NOT_FOUND,
        Reason.ROUTE_APPLY_FAILED,
    }
)
"""Degraded reasons that the shell reports (writing a child failed), not the state
machine: they stay until a write succeeds."""
