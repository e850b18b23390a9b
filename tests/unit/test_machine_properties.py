"""Properties of the state machine and the renderer over random specs and random
histories: a fake cluster (tests/unit/sim.py) is driven by random ticks, readiness
flips, template changes, gates and analysis signals, and every single decision is
checked against the rules of the house."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shadowroute.api import ShadowRouteStatus
from shadowroute.names import ROLLOUT_STAGES, Owner, Stage
from shadowroute.render.diff import needs_write, with_applied_hash
from shadowroute.render.workloads import deployments, services
from shadowroute.rollout.machine import Decision, desired_revision, template_dict
from shadowroute.rollout.observe import AnalysisSignal, Health, Observation, Workload
from shadowroute.stages import canary_replicas, shadow_replicas
from shadowroute.wanted import Seen, wanted

from .sim import CANARY, PRIMARY, SHADOW, Sim, image_template, spec_dict
from .sim import OWNER as SIM_OWNER

SHADOWING, PROGRESSING = Stage.SHADOWING, Stage.PROGRESSING
PROMOTING, SUCCEEDED = Stage.PROMOTING, Stage.SUCCEEDED

IMAGES = ("web:1", "web:2", "web:3")
GATES = ("promote", "abort", "pause", "resume", "retry")
OWNER = Owner("shadowroute.io/v1alpha1", "ShadowRoute", "web", "shop", "uid-1")

PROPS = settings(
    max_examples=int(os.environ.get("SHADOWROUTE_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def seconds(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(lambda n: f"{n}s")


@st.composite
def pauses(draw: st.DrawFn) -> dict[str, Any] | None:
    kind = draw(st.sampled_from(["none", "indefinite", "timed"]))
    if kind == "none":
        return None
    if kind == "indefinite":
        return {}
    return {"duration": draw(seconds(1, 300))}


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    weights = sorted(draw(st.sets(st.integers(1, 100), min_size=1, max_size=5)))
    steps = []
    for w in weights:
        step: dict[str, Any] = {"weight": w}
        pause = draw(pauses())
        if pause is not None:
            step["pause"] = pause
        steps.append(step)
    shadow = None
    if draw(st.booleans()):
        shadow = {"duration": draw(seconds(1, 300)), "mirrorPercent": draw(st.integers(0, 100))}
    blue_green = None
    if draw(st.booleans()):
        blue_green = draw(st.sampled_from([{}, None]))
        if blue_green is None:
            blue_green = {"previewDuration": draw(seconds(1, 300))}
    return spec_dict(
        replicas=draw(st.integers(0, 10)),
        steps=steps,
        shadow=shadow,
        blue_green=blue_green,
        progressDeadline=draw(seconds(30, 900)),
        keepWarm=draw(seconds(1, 600)),
        rollback={"cooldown": draw(seconds(1, 900))},
    )


ROLES = (PRIMARY, CANARY, SHADOW)
SHORT = st.tuples(st.just("tick"), st.integers(1, 5))
LONG = st.tuples(st.just("tick"), st.integers(1, 400))
IMAGE = st.tuples(st.just("image"), st.sampled_from(IMAGES))
GATE = st.tuples(st.just("gate"), st.sampled_from(GATES))
actions = st.one_of(
    SHORT,
    SHORT,
    SHORT,
    LONG,
    LONG,
    LONG,
    IMAGE,
    IMAGE,
    GATE,
    GATE,
    st.tuples(st.just("analysis"), st.sampled_from([None, None, *Health, Health.HEALTHY])),
    st.tuples(st.just("flap"), st.sampled_from(ROLES)),
    st.tuples(st.just("break"), st.sampled_from(IMAGES)),
    st.tuples(st.just("delay"), st.tuples(st.sampled_from(ROLES), st.integers(0, 3))),
    st.tuples(st.just("paused"), st.booleans()),
)
scripts = st.lists(actions, min_size=1, max_size=40).map(lambda s: [("image", "web:2"), *s])


def act(sim: Sim, action: tuple[str, Any]) -> float:
    """Change the world; return how long to let time pass before the next reconcile."""
    kind, arg = action
    if kind == "tick":
        return arg
    if kind == "image":
        sim.set_image(arg)
    elif kind == "gate":
        sim.gate(arg)
    elif kind == "analysis":
        sim.analysis = None if arg is None else AnalysisSignal(Health(arg), "Signal", "injected")
    elif kind == "flap":
        sim.flapping ^= {arg}
    elif kind == "break":
        sim.broken ^= {sim.revision_of(arg)}
    elif kind == "delay":
        role, ticks = arg
        sim.ready_after[role] = ticks
    elif kind == "paused":
        sim.set_spec(paused=arg)
    return 1


def all_templates(sim: Sim) -> dict[str, dict[str, Any]]:
    out = {}
    for image in IMAGES:
        raw = {**sim.raw, "template": image_template(image)}
        spec = type(sim.spec).model_validate(raw)
        out[desired_revision(spec)] = template_dict(spec)
    return out


def fired(prev: ShadowRouteStatus, obs: Observation, gate: str) -> bool:
    token = getattr(obs.gates, gate)
    return bool(token) and token != getattr(prev.gates, gate)


def rank(s: ShadowRouteStatus) -> int:
    """How far along a rollout is: only ever grows while it runs, unless it restarts."""
    return {SHADOWING: 0, PROGRESSING: 1 + s.current_step, PROMOTING: 100, SUCCEEDED: 200}[
        s.stage  # type: ignore[index]
    ]


def ready_at(w: Workload | None, revision: str, replicas: int) -> bool:
    return w is not None and w.ready and w.revision == revision and w.replicas == replicas


def stage_workload_ready(sim: Sim, prev: ShadowRouteStatus, obs: Observation) -> bool:
    spec, desired = sim.spec, sim.desired
    if prev.stage == SHADOWING:
        shadow = spec.strategy.shadow
        assert shadow is not None
        return ready_at(obs.shadow, desired, shadow_replicas(spec.replicas, shadow.mirror_percent))
    if prev.stage == PROGRESSING:
        canary = spec.strategy.canary
        if canary is None:
            return ready_at(obs.canary, desired, spec.replicas)
        step = canary.steps[min(prev.current_step, len(canary.steps) - 1)]
        return ready_at(obs.canary, desired, canary_replicas(spec.replicas, step.weight))
    return ready_at(obs.canary, desired, spec.replicas)  # Promoting


def check_decision(
    sim: Sim, prev: ShadowRouteStatus, obs: Observation, d: Decision, seen: Seen
) -> None:
    s, spec, desired = d.status, sim.spec, sim.desired

    # Weights and the mirror stay within 0..100, and only where they make sense.
    assert 0 <= s.canary_weight <= 100 and 0 <= s.mirror_percent <= 100
    if s.canary_weight > 0:
        assert s.canary_revision and s.stage in (PROGRESSING, PROMOTING, SUCCEEDED)
    if s.mirror_percent > 0:
        assert s.stage == SHADOWING
    if s.stage in (*ROLLOUT_STAGES, "Stable", "RolledBack"):
        assert s.primary_revision == s.stable_revision
    assert d.requeue_after is None or d.requeue_after > 0

    # Traffic only moves to a canary that is ready with the desired revision.
    if s.canary_weight > prev.canary_weight:
        assert obs.canary is not None and obs.canary.ready and obs.canary.revision == desired
        assert not (spec.paused or s.user_paused), "traffic moved while paused"

    # Never forward while paused or while the stage's workload is not ready (a person's
    # promote gate skips ahead on purpose).
    same_rollout = prev.canary_revision and s.canary_revision == prev.canary_revision
    if (
        prev.stage in ROLLOUT_STAGES
        and s.stage in (*ROLLOUT_STAGES, SUCCEEDED)
        and same_rollout
        and not fired(prev, obs, "promote")
        and rank(s) > rank(prev)
    ):
        assert not (spec.paused or s.user_paused), "advanced while paused"
        assert stage_workload_ready(sim, prev, obs), "advanced without a ready workload"
        if obs.analysis is not None and prev.stage != PROMOTING:
            # (Promoting only waits for the full canary: the last stage's checks passed.)
            assert obs.analysis.health is Health.HEALTHY, "advanced without passing checks"

    # The progress deadline does not run while held.
    deadline_hit = (s.stage == "RolledBack" and prev.stage != "RolledBack") and (
        s.rollback_reason == "ProgressDeadlineExceeded"
    )
    if deadline_hit or (s.stage == "Failed" and prev.stage != "Failed"):
        assert not (spec.paused or s.user_paused), "deadline counted while paused"

    # An abort or a failed analysis takes all traffic back in the same call.
    warm = prev.stage == SUCCEEDED and prev.previous_revision == prev.primary_revision != ""
    failed = obs.analysis is not None and obs.analysis.health is Health.FAILED
    if (fired(prev, obs, "abort") or failed) and (prev.stage in ROLLOUT_STAGES or warm):
        assert s.canary_weight == 0 and s.mirror_percent == 0
        assert s.primary_revision == s.stable_revision
        if prev.stage in ROLLOUT_STAGES and desired == prev.canary_revision:
            assert s.stage == "RolledBack" or fired(prev, obs, "retry")
            assert s.history[0].outcome == "RolledBack"
        if warm and desired == prev.stable_revision:
            assert s.stage == "RolledBack" or fired(prev, obs, "retry")
            assert s.stable_revision == prev.previous_revision

    # Pure: the same input gives the same output, and the input is left alone.
    before = prev.model_copy(deep=True)
    again = wanted(spec, prev, seen, SIM_OWNER, sim.now)
    assert again.decision == d and again.observation == obs and prev == before

    # Rendering: never negative, primary at full scale, deterministic, and what was
    # applied needs no second write.
    templates = all_templates(sim)
    deps, missing = deployments(OWNER, spec, s, desired, templates)
    assert not missing
    assert (deps, missing) == deployments(OWNER, spec, s, desired, templates)
    by_role = {dep["metadata"]["labels"]["shadowroute.io/role"]: dep for dep in deps}
    assert by_role[PRIMARY]["spec"]["replicas"] == spec.replicas
    assert all(dep["spec"]["replicas"] >= 0 for dep in deps)
    svcs = services(OWNER, spec, s)
    assert svcs == services(OWNER, spec, s)
    for obj in [*deps, *svcs]:
        assert not needs_write(obj, with_applied_hash(obj))


def settle(sim: Sim, seen: Seen, d: Decision, limit: int) -> list[Decision]:
    """Decide again and again on the same world and time."""
    out = [d]
    for _ in range(limit):
        out.append(wanted(sim.spec, out[-1].status, seen, SIM_OWNER, sim.now).decision)
    return out


@PROPS
@given(raw=specs(), script=scripts, from_stable=st.booleans())
def test_every_decision_keeps_the_rules(
    raw: dict[str, Any], script: list[Any], from_stable: bool
) -> None:
    sim = Sim(raw).stable() if from_stable else Sim(raw)
    sim.reconcile()
    for action in script:
        dt = act(sim, action)
        prev = sim.status
        sim.advance(dt)
        seen, obs = sim.seen(), sim.observation()
        d = sim.reconcile()
        check_decision(sim, prev, obs, d, seen)


@PROPS
@given(raw=specs(), script=scripts, from_stable=st.booleans())
def test_an_unchanged_world_settles_without_writes(
    raw: dict[str, Any], script: list[Any], from_stable: bool
) -> None:
    """Deciding again on the same world and time changes nothing (no status write, no
    event, the same timer), except right after a move within one stage (a step advance,
    a restart of the rollout), which the next reconcile finishes; within a few more
    passes nothing changes and nothing is said."""
    sim = Sim(raw).stable() if from_stable else Sim(raw)
    sim.reconcile()
    for action in script:
        dt = act(sim, action)
        prev = sim.status
        sim.advance(dt)
        seen = sim.seen()
        d = sim.reconcile()
        runs = settle(sim, seen, d, limit=8)
        second = runs[1]
        moved_within_stage = d.status.stage == prev.stage and (
            d.status.current_step != prev.current_step
            or d.status.canary_revision != prev.canary_revision
        )
        if not moved_within_stage:
            assert second.status == d.status
            assert not second.events
            assert second.requeue_after == d.requeue_after
        last = runs[-1]
        assert runs[-2].status == last.status and not last.events
