"""The stage vocabulary and the per-stage queries every layer asks."""

from __future__ import annotations

from shadowroute.api import ShadowRouteSpec, ShadowRouteStatus
from shadowroute.names import CANARY, PAUSED, PRIMARY, SHADOW, Phase, Stage, stage_of
from shadowroute.stages import (
    analysis_target,
    canary_step,
    current_step,
    keeps_previous_warm,
    replicas_for,
    serving,
    serving_role,
    step_index,
)

from .sim import spec_dict


def test_phase_is_the_stages_and_the_paused_hold_in_the_wire_order() -> None:
    assert [p.value for p in Phase] == [
        "Initializing", "Stable", "Shadowing", "Progressing", "Paused",
        "Promoting", "Succeeded", "RolledBack", "Failed",
    ]  # fmt: skip
    assert {p.value for p in Phase} - {s.value for s in Stage} == {PAUSED}
    assert stage_of("Progressing") is Stage.PROGRESSING
    assert stage_of(PAUSED) is None


def test_the_step_index_is_clamped_to_the_steps_there_are() -> None:
    assert [step_index(i, 3) for i in (-1, 0, 2, 3, 9)] == [0, 0, 2, 2, 2]
    spec = ShadowRouteSpec.model_validate(spec_dict())
    steps = spec.strategy.canary.steps  # type: ignore[union-attr]
    status = ShadowRouteStatus(stage=Stage.PROGRESSING, current_step=len(steps) + 4)
    assert current_step(spec, status) == len(steps) - 1
    assert canary_step(spec, status) == steps[-1]


def test_who_serves_follows_the_canary_weight() -> None:
    assert serving(ShadowRouteStatus(canary_weight=0)) == (PRIMARY,)
    assert serving(ShadowRouteStatus(canary_weight=30)) == (PRIMARY, CANARY)
    assert serving(ShadowRouteStatus(canary_weight=100)) == (CANARY,)
    assert serving_role(ShadowRouteStatus(canary_weight=30)) == PRIMARY


def test_primary_always_runs_the_full_count_and_shadow_only_while_shadowing() -> None:
    spec = ShadowRouteSpec.model_validate(spec_dict())
    for stage in Stage:
        status = ShadowRouteStatus(stage=stage, canary_revision="abc")
        assert replicas_for(PRIMARY, spec, status) == spec.replicas
        if stage != Stage.SHADOWING:
            assert replicas_for(SHADOW, spec, status) == 0


def test_the_analysis_targets_the_shadow_then_the_canary_then_the_warm_promotion() -> None:
    shadowing = ShadowRouteStatus(stage=Stage.SHADOWING, canary_revision="new", mirror_percent=5)
    target = analysis_target(shadowing)
    assert target is not None and target.role == SHADOW and target.receiving_traffic
    progressing = ShadowRouteStatus(stage=Stage.PROGRESSING, canary_revision="new")
    target = analysis_target(progressing)
    assert target is not None and target.role == CANARY and not target.receiving_traffic
    warm = ShadowRouteStatus(
        stage=Stage.SUCCEEDED, stable_revision="new", primary_revision="old",
        previous_revision="old",
    )  # fmt: skip
    assert keeps_previous_warm(warm.stage, warm.primary_revision, warm.previous_revision)
    target = analysis_target(warm)
    assert target is not None and (target.revision, target.baseline) == ("new", "old")
    assert analysis_target(ShadowRouteStatus(stage=Stage.STABLE)) is None
