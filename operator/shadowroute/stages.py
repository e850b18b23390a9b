"""What a stage means, asked by everyone: pure queries on a spec and a decided status.

The state machine (rollout/) decides which stage a revision is in; this module says
what that stage implies — the canary step in effect (its index clamped here, once),
how many pods each role runs, who takes the live traffic, and what the analysis looks
at. render/, traffic/, analysis/, rollout/ and cli/ ask here instead of working it out
again. It sits below rollout and render: it imports only names and the API models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .names import BASELINE, CANARY, COMPARATOR, PRIMARY, ROLLOUT_STAGES, SHADOW, Stage

if TYPE_CHECKING:  # the plugin's read commands import this module without pydantic
    from .api.models import CanaryStep, ShadowRouteSpec, ShadowRouteStatus

# --------------------------------------------------------------------------- steps


def step_index(current: int, count: int) -> int:
    """The step a stored index means when the spec has `count` steps: an index past
    the last (the steps were shortened mid-rollout) means the last one."""
    return max(0, min(current, count - 1))


def current_step(spec: ShadowRouteSpec, status: ShadowRouteStatus) -> int:
    """The index of the canary step in effect (0 without canary steps)."""
    canary = spec.strategy.canary
    if canary is None or not canary.steps:
        return 0
    return step_index(status.current_step, len(canary.steps))


def canary_step(spec: ShadowRouteSpec, status: ShadowRouteStatus) -> CanaryStep | None:
    """The canary step in effect; None for blue/green."""
    canary = spec.strategy.canary
    if canary is None or not canary.steps:
        return None
    return canary.steps[current_step(spec, status)]


# --------------------------------------------------------------------------- stage kinds


def in_rollout(stage: str | None) -> bool:
    """A new revision is on trial: a hold, promote or abort acts on it."""
    return stage in ROLLOUT_STAGES


def keeps_previous_warm(
    stage: str | None, primary_revision: str | None, previous_revision: str | None
) -> bool:
    """Succeeded with the previous revision still running in primary: an abort (or a
    failed check) can still put the traffic back on it."""
    return (
        stage == Stage.SUCCEEDED
        and bool(previous_revision)
        and primary_revision == previous_revision
    )


# --------------------------------------------------------------------------- replicas


def canary_replicas(replicas: int, weight: int) -> int:
    """Canary pods for a weight: the weight's share of the replicas, at least one
    (none when the service is scaled to zero)."""
    if weight <= 0 or replicas <= 0:
        return 0
    return max(1, math.ceil(replicas * weight / 100))


def shadow_replicas(replicas: int, mirror_percent: int) -> int:
    return canary_replicas(replicas, mirror_percent)


def replicas_for(role: str, spec: ShadowRouteSpec, status: ShadowRouteStatus) -> int:
    """How many pods each role runs in the current stage. Primary always runs the full
    count, so putting all traffic back on it never waits for pods."""
    stage = status.stage
    if role == PRIMARY:
        return spec.replicas
    if role == SHADOW:
        shadow = spec.strategy.shadow
        if stage == Stage.SHADOWING and shadow is not None:
            return shadow_replicas(spec.replicas, shadow.mirror_percent)
        return 0
    if role in (BASELINE, COMPARATOR):
        shadow = spec.strategy.shadow
        compare = shadow.compare if shadow is not None else None
        if stage != Stage.SHADOWING or compare is None or not status.canary_revision:
            return 0
        if role == COMPARATOR:
            return 1
        from .api.models import CompareAgainst  # loaded already: spec is one of its models

        return compare.baseline_replicas if compare.against == CompareAgainst.BASELINE else 0
    # canary
    if stage in (Stage.PROMOTING, Stage.SUCCEEDED) and status.canary_revision:
        return spec.replicas
    if stage == Stage.PROGRESSING and status.canary_revision:
        step = canary_step(spec, status)
        if step is None:  # blue/green: the preview runs at full scale
            return spec.replicas
        return canary_replicas(spec.replicas, step.weight)
    return 0


# --------------------------------------------------------------------------- traffic


def serving(status: ShadowRouteStatus) -> tuple[str, ...]:
    """The roles that take live traffic: primary, or canary once it takes all of it,
    or both in between."""
    if status.canary_weight >= 100:
        return (CANARY,)
    if status.canary_weight > 0:
        return (PRIMARY, CANARY)
    return (PRIMARY,)


def serving_role(status: ShadowRouteStatus) -> str:
    """The role whose availability makes the ShadowRoute Ready: the one that takes the
    live traffic once a rollback or a promotion settles it (canary at 100 %, else
    primary)."""
    return serving(status)[0]


def canary_on_trial(status: ShadowRouteStatus) -> bool:
    """The canary Deployment runs the new revision for live traffic (a canary step,
    the blue/green preview, or the promotion)."""
    return status.stage in (Stage.PROGRESSING, Stage.PROMOTING) and bool(status.canary_revision)


def canary_serves(status: ShadowRouteStatus) -> bool:
    """The canary answers requests: its first stage was ready (or a weight reached
    it); a preview before that would only answer 503."""
    return canary_on_trial(status) and (
        status.canary_weight > 0
        or status.stage_ready_at is not None
        or status.stage == Stage.PROMOTING
    )


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class AnalysisTarget:
    """The revision under analysis, the role whose traffic it gets, and the revision
    it is compared with."""

    revision: str
    role: str
    baseline: str
    receiving_traffic: bool


def analysis_target(status: ShadowRouteStatus) -> AnalysisTarget | None:
    """What the analysis looks at in this status; None when no new revision is on
    trial. In a rollout stage, the new revision (on the shadow while shadowing, else on
    the canary) once it receives traffic; in Succeeded while the previous revision is
    warm, the promoted one on the canary."""
    stage = status.stage
    if in_rollout(stage) and status.canary_revision:
        live = bool(status.stage_ready_at) or status.canary_weight > 0
        live = live or status.mirror_percent > 0
        return AnalysisTarget(
            status.canary_revision,
            SHADOW if stage == Stage.SHADOWING else CANARY,
            status.primary_revision or status.stable_revision,
            live,
        )
    if keeps_previous_warm(stage, status.primary_revision, status.previous_revision):
        return AnalysisTarget(status.stable_revision, CANARY, status.previous_revision, True)
    return None
