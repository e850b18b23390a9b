"""The state machine, one story at a time: a fake cluster (tests/unit/sim.py) runs the
Deployments the renderer asks for, the clock moves in ticks, and gates and analysis
signals are injected where a person or Prometheus would act."""

from __future__ import annotations

from datetime import timedelta

import pytest
from shadowroute.api import ShadowRouteSpec, ShadowRouteStatus
from shadowroute.api.models import format_timestamp
from shadowroute.render.workloads import entry_selector
from shadowroute.rollout.machine import decide, desired_revision
from shadowroute.rollout.observe import AnalysisSignal, Gates, Health, Observation, Workload

from .sim import CANARY, PRIMARY, SHADOW, T0, Sim, spec_dict

STEPS = [
    {"weight": 10, "pause": {"duration": "2m"}},
    {"weight": 50, "pause": {}},
    {"weight": 100},
]


def cond(sim: Sim, type_: str) -> tuple[str, str]:
    c = sim.status.condition(type_)
    assert c is not None, f"no {type_} condition"
    return str(c.status), c.reason


def rolling(sim: Sim, image: str = "web:2") -> Sim:
    """Start a rollout of `image` and tick until its first stage is ready."""
    sim.set_image(image)
    sim.tick()
    sim.run_until(lambda s: s.status.stage_ready_at is not None)
    return sim


def promoted(sim: Sim) -> Sim:
    """Roll web:2 all the way to Succeeded (warm window open)."""
    sim.set_image("web:2")
    sim.tick()
    sim.gate("promote")
    sim.run_until(lambda s: s.status.stage == "Succeeded")
    return sim


# --------------------------------------------------------------------------- first apply


def test_first_apply_initializes_until_primary_ready_then_stable() -> None:
    sim = Sim(spec_dict(steps=STEPS), ready_after={PRIMARY: 3, CANARY: 0, SHADOW: 0})
    d = sim.reconcile()
    s = d.status
    assert (s.phase, s.stage) == ("Initializing", "Initializing")
    assert s.primary_revision == sim.desired and s.stable_revision == ""
    assert s.canary_weight == 0 and s.mirror_percent == 0
    assert cond(sim, "Ready") == ("False", "Initializing")
    assert cond(sim, "Progressing") == ("True", "Initializing")
    assert d.requeue_after == 600  # the progress deadline
    assert s.observed_generation == 1

    for _ in range(2):
        assert sim.tick().status.phase == "Initializing"
    d = sim.tick()
    assert (d.status.phase, d.status.stage) == ("Stable", "Stable")
    assert d.status.stable_revision == d.status.primary_revision == sim.desired
    assert d.status.canary_revision == ""
    assert cond(sim, "Ready") == ("True", "Available")
    assert cond(sim, "Progressing") == ("False", "Stable")
    assert cond(sim, "Degraded") == ("False", "AsExpected")
    assert [e.reason for e in d.events] == ["Available"]
    assert d.requeue_after is None
    assert sim.deps[CANARY].replicas == 0 and SHADOW not in sim.deps  # no shadow stage


def test_first_apply_never_available_fails_then_recovers() -> None:
    sim = Sim(spec_dict(progressDeadline="1m"))
    sim.broken.add(sim.desired)
    sim.reconcile()
    d = sim.tick(59)
    assert d.status.stage == "Initializing" and d.requeue_after == 1
    d = sim.tick(1)
    assert d.status.phase == "Failed"
    assert cond(sim, "Degraded") == ("True", "ProgressDeadlineExceeded")
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "ProgressDeadlineExceeded")]
    sim.broken.clear()
    d = sim.tick()
    assert d.status.phase == "Stable" and d.status.stable_revision == sim.desired


def test_failed_first_version_takes_the_newest_template() -> None:
    sim = Sim(spec_dict(progressDeadline="1m"))
    sim.broken.add(sim.desired)
    sim.reconcile()
    sim.tick(60)
    assert sim.status.stage == "Failed"
    sim.set_image("web:2")
    d = sim.tick()
    assert d.status.stage == "Initializing" and d.status.primary_revision == sim.desired
    assert [e.reason for e in d.events] == ["Initializing"]
    sim.run_until(lambda s: s.status.stage == "Stable")
    assert sim.status.stable_revision == sim.revision_of("web:2")


def test_a_shadow_stage_removed_mid_shadow_goes_on_to_the_canary_and_says_so() -> None:
    sim = Sim(spec_dict(steps=STEPS, shadow={"duration": "5m", "mirrorPercent": 50})).stable()
    rolling(sim)
    assert sim.status.stage == "Shadowing"
    strategy = {"canary": {"steps": STEPS}}
    sim.set_spec(strategy=strategy)
    d = sim.tick()
    assert d.status.stage == "Progressing" and d.status.mirror_percent == 0
    assert "ShadowRemoved" in [e.reason for e in d.events]


# --------------------------------------------------------------------------- canary steps


def test_template_change_starts_step_zero_at_weight_zero_until_the_canary_is_ready() -> None:
    sim = Sim(spec_dict(steps=STEPS), ready_after={PRIMARY: 0, CANARY: 2, SHADOW: 0}).stable()
    old = sim.desired
    sim.set_image("web:2")
    new = sim.desired
    d = sim.tick()
    s = d.status
    assert (s.phase, s.stage, s.current_step) == ("Progressing", "Progressing", 0)
    assert s.canary_revision == new and s.stable_revision == old and s.primary_revision == old
    assert s.canary_weight == 0 and s.stage_ready_at is None
    assert [e.reason for e in d.events] == ["RolloutStarted"]
    assert sim.deps[CANARY].revision == new and sim.deps[CANARY].replicas == 1  # ceil(3*10%)
    assert d.requeue_after == 600

    assert sim.tick().status.canary_weight == 0  # one tick: still rolling out
    d = sim.tick()
    assert d.status.canary_weight == 10
    assert d.status.stage_ready_at == format_timestamp(sim.now)
    assert [e.reason for e in d.events] == ["StepReady"]
    assert cond(sim, "Progressing") == ("True", "CanaryProgressing")
    assert entry_selector("web", d.status) == {
        "shadowroute.io/name": "web",
        "shadowroute.io/live": "true",
    }


def test_timed_pause_counts_from_stage_ready_at() -> None:
    sim = Sim(spec_dict(steps=STEPS), ready_after={PRIMARY: 0, CANARY: 3, SHADOW: 0}).stable()
    sim.set_image("web:2")
    sim.tick(10)
    for _ in range(3):
        sim.tick(10)  # 30 s of rollout before the canary is ready
    ready_at = sim.now
    assert sim.status.stage_ready_at == format_timestamp(ready_at)
    assert sim.decisions[-1].requeue_after == 120

    d = sim.tick(119)
    assert d.status.current_step == 0 and d.requeue_after == 1
    d = sim.tick(1)
    assert d.status.current_step == 1
    assert [e.reason for e in d.events] == ["StepAdvanced"]
    assert d.status.stage_ready_at is None
    assert d.status.canary_weight == 10  # the next weight waits for the bigger canary
    assert sim.deps[CANARY].replicas == 2


def test_pause_without_duration_waits_for_the_resume_gate() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    rolling(sim)
    sim.tick(120)
    d = sim.run_until(lambda s: s.status.stage_ready_at is not None)
    s = d.status
    assert (s.phase, s.stage, s.current_step) == ("Paused", "Progressing", 1)
    assert s.waiting_for_promotion and s.canary_weight == 50
    assert cond(sim, "Progressing") == ("Unknown", "WaitingForPromotion")
    assert d.requeue_after is None  # only a person can move it on

    for _ in range(3):
        d = sim.tick(3600)
        assert d.status.current_step == 1 and d.status.phase == "Paused"

    sim.gate("resume")
    d = sim.tick()
    assert d.status.current_step == 2  # one step, not the rest
    assert not d.status.waiting_for_promotion
    assert d.status.phase == "Progressing"
    assert "StepAdvanced" in [e.reason for e in d.events]


def test_promote_gate_skips_to_promoting() -> None:
    sim = Sim(spec_dict(steps=[{"weight": 10, "pause": {}}, {"weight": 50}, {"weight": 90}]))
    sim.stable()
    rolling(sim)
    assert sim.status.waiting_for_promotion and sim.status.current_step == 0
    sim.gate("promote")
    d = sim.tick()
    assert d.status.stage == "Promoting"
    assert "PromoteRequested" in [e.reason for e in d.events]
    assert not d.status.waiting_for_promotion
    assert d.status.canary_weight == 10  # traffic moves when the full canary is ready
    assert sim.deps[CANARY].replicas == 3
    d = sim.tick()
    assert d.status.stage == "Succeeded" and d.status.canary_weight == 100


def test_last_step_promotes_keeps_previous_warm_then_hands_over() -> None:
    sim = Sim(spec_dict(steps=STEPS), ready_after={PRIMARY: 2, CANARY: 0, SHADOW: 0})
    sim.stable()
    old = sim.desired
    rolling(sim)
    new = sim.desired
    sim.tick(120)
    sim.run_until(lambda s: s.status.waiting_for_promotion)
    sim.gate("resume")
    sim.tick()
    d = sim.run_until(lambda s: s.status.stage == "Succeeded")
    reasons = [e.reason for e in d.events]
    assert "Promoting" in sim.reasons() and reasons[-1] == "Promoted"

    s = d.status
    assert s.phase == "Succeeded" and s.canary_weight == 100
    assert s.stable_revision == new and s.previous_revision == old
    assert s.primary_revision == old  # kept warm
    assert s.canary_revision == new
    assert s.promoted_at == format_timestamp(sim.now)
    assert s.history[0].outcome == "Promoted" and s.history[0].revision == new
    assert d.requeue_after == 300  # keepWarm
    assert entry_selector("web", s) == {"shadowroute.io/name": "web", "shadowroute.io/role": CANARY}
    assert sim.deps[PRIMARY].revision == old and sim.deps[CANARY].replicas == 3
    assert cond(sim, "Ready") == ("True", "Available")  # the new revision serves 100 %
    assert cond(sim, "Progressing") == ("True", "KeepingPreviousWarm")
    assert cond(sim, "Reconciling") == ("True", "KeepingPreviousWarm")

    d = sim.tick(299)
    assert d.status.primary_revision == old and d.requeue_after == 1
    d = sim.tick(1)
    assert d.status.stage == "Succeeded" and d.status.primary_revision == new
    assert d.status.canary_weight == 100  # traffic stays on the canary until primary is ready
    assert sim.deps[PRIMARY].revision == new
    d = sim.tick()
    assert d.status.stage == "Succeeded"
    d = sim.tick()
    s = d.status
    assert (s.phase, s.stage) == ("Stable", "Stable")
    assert s.canary_weight == 0 and s.canary_revision == "" and s.previous_revision == ""
    assert s.stable_revision == s.primary_revision == new
    assert [e.reason for e in d.events] == ["Stable"]
    assert sim.deps[CANARY].replicas == 0
    assert entry_selector("web", s) == {
        "shadowroute.io/name": "web",
        "shadowroute.io/role": PRIMARY,
    }


def test_slow_handover_warns_and_keeps_traffic_on_the_canary() -> None:
    sim = Sim(spec_dict(steps=[{"weight": 100}], keepWarm="1m", progressDeadline="2m")).stable()
    promoted(sim)
    new = sim.desired
    sim.broken.add(new)  # the primary will not come up with it (the canary runs already)
    d = sim.tick(60)
    assert d.status.primary_revision == new and d.requeue_after == 120
    d = sim.tick(119)
    assert not d.events and d.requeue_after == 1
    d = sim.tick(1)
    assert d.status.stage == "Succeeded" and d.status.canary_weight == 100
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "HandoverSlow")]
    assert d.requeue_after == 120  # and again after another deadline
    again = decide(sim.spec, d.status, sim.observation(), sim.now)
    assert again.status == d.status and not again.events  # no write on a second look
    sim.broken.clear()
    assert sim.tick().status.stage == "Stable"


# --------------------------------------------------------------------------- shadow, blue/green


def test_shadow_stage_mirrors_only_while_the_shadow_is_ready() -> None:
    sim = Sim(
        spec_dict(steps=[{"weight": 50}], shadow={"duration": "1m", "mirrorPercent": 50}),
        ready_after={PRIMARY: 0, CANARY: 0, SHADOW: 2},
    ).stable()
    sim.set_image("web:2")
    d = sim.tick()
    assert (d.status.stage, d.status.mirror_percent, d.status.canary_weight) == ("Shadowing", 0, 0)
    assert sim.deps[SHADOW].replicas == 2 and sim.deps[SHADOW].revision == sim.desired
    assert sim.deps[CANARY].replicas == 0
    assert cond(sim, "Progressing") == ("True", "Shadowing")
    assert sim.tick().status.mirror_percent == 0
    d = sim.tick()
    assert d.status.mirror_percent == 50 and d.requeue_after == 60
    assert d.status.canary_weight == 0
    d = sim.tick(59)
    assert d.status.stage == "Shadowing" and d.status.mirror_percent == 50
    d = sim.tick(1)
    assert (d.status.stage, d.status.current_step) == ("Progressing", 0)
    assert d.status.mirror_percent == 0
    assert "ShadowPassed" in [e.reason for e in d.events]
    assert sim.deps[SHADOW].replicas == 0


def test_shadow_never_ready_rolls_back_at_the_deadline() -> None:
    sim = Sim(spec_dict(shadow={"duration": "1m"}, progressDeadline="3m")).stable()
    sim.set_image("web:2")
    sim.broken.add(sim.desired)
    d = sim.tick()
    assert d.status.stage == "Shadowing" and d.requeue_after == 180
    d = sim.tick(180)
    assert d.status.stage == "RolledBack" and d.status.rollback_reason == "ProgressDeadlineExceeded"
    assert d.status.mirror_percent == 0


def test_blue_green_keeps_weight_zero_during_the_preview_then_switches() -> None:
    sim = Sim(spec_dict(blue_green={"previewDuration": "5m"})).stable()
    sim.set_image("web:2")
    d = sim.tick()
    assert d.status.stage == "Progressing" and d.status.canary_weight == 0
    assert sim.deps[CANARY].replicas == 3  # the preview runs at full scale
    d = sim.tick()
    assert d.status.stage_ready_at is not None and d.requeue_after == 300
    for _ in range(4):
        d = sim.tick(60)
        assert d.status.canary_weight == 0 and d.status.stage == "Progressing"
    d = sim.tick(59)
    assert d.status.canary_weight == 0
    d = sim.tick(1)
    assert [e.reason for e in d.events] == ["Promoting", "Promoted"]
    assert d.status.stage == "Succeeded" and d.status.canary_weight == 100


def test_blue_green_without_a_duration_waits_for_a_person() -> None:
    sim = Sim(spec_dict(blue_green={})).stable()
    rolling(sim)
    d = sim.tick(3600)
    assert d.status.phase == "Paused" and d.status.waiting_for_promotion
    assert d.status.canary_weight == 0
    sim.gate("resume")
    d = sim.tick()
    assert d.status.stage == "Succeeded"


# --------------------------------------------------------------------------- abort, rollback


def test_abort_mid_rollout_rolls_back_in_one_write() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    old = sim.desired
    rolling(sim)
    new = sim.desired
    assert sim.status.canary_weight == 10
    sim.gate("abort")
    d = sim.tick()
    s = d.status
    assert (s.phase, s.stage) == ("RolledBack", "RolledBack")
    assert s.canary_weight == 0 and s.mirror_percent == 0
    assert s.stable_revision == s.primary_revision == old
    assert s.canary_revision == "" and s.rolled_back_revision == new
    assert s.rollback_reason == "Aborted"
    assert s.rolled_back_at == format_timestamp(sim.now)
    assert (s.history[0].revision, s.history[0].outcome, s.history[0].reason) == (
        new,
        "RolledBack",
        "Aborted",
    )
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "Aborted")]
    assert cond(sim, "Degraded") == ("True", "Aborted")
    assert cond(sim, "Progressing") == ("False", "Aborted")
    # The previous revision serves and is available, but not the one the spec asks for.
    assert cond(sim, "Available") == ("True", "Available")
    assert cond(sim, "Ready") == ("False", "Aborted")
    assert cond(sim, "Stalled") == ("True", "Aborted")
    assert cond(sim, "Reconciling") == ("False", "Aborted")
    assert sim.deps[CANARY].replicas == 0
    assert entry_selector("web", s)["shadowroute.io/role"] == PRIMARY
    # It stays rolled back: the template still names the aborted revision.
    d = sim.tick(3600)
    assert d.status.stage == "RolledBack" and not d.events


def test_abort_while_shadowing_stops_the_mirror() -> None:
    sim = Sim(spec_dict(shadow={"duration": "10m"})).stable()
    rolling(sim)
    assert sim.status.mirror_percent == 100
    sim.gate("abort")
    d = sim.tick()
    assert d.status.stage == "RolledBack"
    assert d.status.mirror_percent == 0 and d.status.canary_weight == 0
    assert sim.deps[SHADOW].replicas == 0


def test_abort_in_the_warm_window_puts_traffic_back_on_the_previous_revision() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    old = sim.desired
    promoted(sim)
    new = sim.desired
    assert sim.status.canary_weight == 100 and sim.status.primary_revision == old
    sim.gate("abort")
    d = sim.tick()
    s = d.status
    assert s.stage == "RolledBack" and s.canary_weight == 0
    assert s.stable_revision == s.primary_revision == old
    assert s.rolled_back_revision == new and s.rollback_reason == "Aborted"
    assert s.history[0].outcome == "RolledBack" and s.history[1].outcome == "Promoted"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "Aborted")]
    # Primary was still warm on the old revision: no pod had to start.
    assert sim.deps[PRIMARY].revision == old
    assert cond(sim, "Available") == ("True", "Available")
    assert cond(sim, "Ready") == ("False", "Aborted")


def test_analysis_failure_in_the_warm_window_rolls_back() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    old = sim.desired
    promoted(sim)
    sim.analysis = AnalysisSignal(Health.FAILED, "ErrorRate", "error rate 9% > 5%")
    d = sim.tick()
    assert d.status.stage == "RolledBack" and d.status.stable_revision == old
    assert d.status.rollback_reason == "ErrorRate"
    assert d.status.canary_weight == 0


def test_template_reverted_in_the_warm_window_goes_straight_back() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    old = sim.desired
    promoted(sim)
    sim.set_image("web:1")
    d = sim.tick()
    s = d.status
    assert s.stage == "Stable" and s.stable_revision == s.primary_revision == old
    assert s.canary_weight == 0 and s.canary_revision == ""
    assert (s.history[0].outcome, s.history[0].reason) == ("RolledBack", "TemplateReverted")
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "TemplateReverted")]


def test_abort_after_the_handover_is_ignored() -> None:
    sim = Sim(spec_dict(steps=STEPS), ready_after={PRIMARY: 3, CANARY: 0, SHADOW: 0}).stable()
    promoted(sim)
    new = sim.desired
    sim.tick(300)
    assert sim.status.primary_revision == new and sim.status.stage == "Succeeded"
    sim.gate("abort")
    d = sim.tick()
    assert d.status.stage == "Succeeded" and d.status.canary_weight == 100
    assert d.status.stable_revision == new
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "AbortIgnored")]
    d = sim.run_until(lambda s: s.status.stage == "Stable")
    assert d.status.stable_revision == new and not d.events[:-1]


def test_template_change_in_the_warm_window_hands_over_then_rolls_out() -> None:
    sim = Sim(spec_dict(steps=[{"weight": 50}])).stable()
    promoted(sim)
    second = sim.desired
    sim.set_image("web:3")
    d = sim.tick()
    assert d.status.stage == "Succeeded" and d.status.primary_revision == second
    d = sim.tick()
    assert d.status.stage == "Progressing"
    assert d.status.stable_revision == second and d.status.canary_revision == sim.desired


# --------------------------------------------------------------------------- template changes


def test_template_change_mid_rollout_supersedes_and_restarts_at_step_zero() -> None:
    sim = Sim(spec_dict(steps=STEPS), ready_after={PRIMARY: 0, CANARY: 2, SHADOW: 0}).stable()
    rolling(sim)
    second = sim.desired
    sim.tick(120)
    sim.run_until(lambda s: s.status.waiting_for_promotion)
    assert sim.status.current_step == 1 and sim.status.canary_weight == 50
    sim.set_image("web:3")
    third = sim.desired
    d = sim.tick()
    s = d.status
    assert (s.stage, s.current_step, s.canary_revision) == ("Progressing", 0, third)
    assert s.canary_weight == 0 and s.stage_ready_at is None and not s.waiting_for_promotion
    assert (s.history[0].revision, s.history[0].outcome, s.history[0].reason) == (
        second,
        "Superseded",
        "NewTemplate",
    )
    assert [e.reason for e in d.events] == ["RolloutStarted"]
    sim.tick()
    d = sim.tick()
    assert d.status.canary_weight == 10 and d.requeue_after == 120


@pytest.mark.parametrize("stage", ["Progressing", "Shadowing"])
def test_superseding_in_the_first_stage_starts_that_stage_afresh(stage: str) -> None:
    """The new revision's stage timers start over even though the stage is the same:
    the pods that were ready ran the superseded revision."""
    shadow = {"duration": "2m"} if stage == "Shadowing" else None
    sim = Sim(
        spec_dict(steps=STEPS, shadow=shadow, progressDeadline="5m"),
        ready_after={PRIMARY: 0, CANARY: 0, SHADOW: 0},
    ).stable()
    rolling(sim)
    assert sim.status.stage == stage and sim.status.stage_ready_at is not None
    sim.tick(100)
    sim.set_image("web:3")
    sim.broken.add(sim.desired)  # the new revision never becomes ready
    d = sim.tick()
    s = d.status
    assert (s.stage, s.current_step) == (stage, 0)
    assert s.stage_ready_at is None and s.stage_started_at == format_timestamp(sim.now)
    assert s.canary_weight == 0 and s.mirror_percent == 0
    d = sim.tick()
    assert d.requeue_after == 299  # the new revision's progress deadline
    d = sim.tick(299)
    assert d.status.stage == "RolledBack"
    assert d.status.rollback_reason == "ProgressDeadlineExceeded"


def test_superseding_restarts_the_pause_timer() -> None:
    sim = Sim(spec_dict(steps=STEPS), ready_after={PRIMARY: 0, CANARY: 1, SHADOW: 0}).stable()
    rolling(sim)
    sim.tick(110)  # 10 s of the 2 min pause left
    sim.set_image("web:3")
    sim.tick()
    d = sim.tick()
    assert d.status.canary_weight == 10 and d.status.canary_revision == sim.desired
    assert d.requeue_after == 120
    d = sim.tick(60)
    assert d.status.current_step == 0


def test_template_back_to_stable_mid_rollout_cancels() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    old = sim.desired
    rolling(sim)
    second = sim.desired
    sim.set_image("web:1")
    d = sim.tick()
    s = d.status
    assert (s.phase, s.stage) == ("Stable", "Stable")
    assert s.canary_weight == 0 and s.canary_revision == "" and s.stable_revision == old
    assert (s.history[0].revision, s.history[0].outcome, s.history[0].reason) == (
        second,
        "Cancelled",
        "TemplateReverted",
    )
    assert [e.reason for e in d.events] == ["RolloutCancelled"]
    assert cond(sim, "Degraded") == ("False", "AsExpected")


# --------------------------------------------------------------------------- deadline, pauses


def test_progress_deadline_rolls_back_a_canary_that_never_gets_ready() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    sim.set_image("web:2")
    sim.broken.add(sim.desired)
    d = sim.tick()
    assert d.requeue_after == 600
    d = sim.tick(599)
    assert d.status.stage == "Progressing" and d.status.canary_weight == 0
    assert d.requeue_after == 1
    d = sim.tick(1)
    s = d.status
    assert s.stage == "RolledBack" and s.rollback_reason == "ProgressDeadlineExceeded"
    assert s.canary_weight == 0
    assert s.history[0].reason == "ProgressDeadlineExceeded"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "ProgressDeadlineExceeded")]
    assert cond(sim, "Degraded") == ("True", "ProgressDeadlineExceeded")


def test_a_canary_that_stops_being_ready_is_rolled_back_at_the_deadline() -> None:
    """Ready once is not ready for good: pods that crash at a step get the progress
    deadline again, from the moment readiness was lost, and the pause starts over."""
    sim = rolling(Sim(spec_dict(steps=STEPS, progressDeadline="1m")).stable())
    sim.tick(30)  # 30 s into step 1's 2 min pause
    sim.broken.add(sim.desired)
    d = sim.tick()
    s = d.status
    assert s.stage == "Progressing" and s.current_step == 0 and s.canary_weight == 10
    assert s.stage_ready_at is None
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "ReadinessLost")]
    assert d.requeue_after == 60
    assert sim.tick(59).status.stage == "Progressing"
    d = sim.tick(1)
    assert d.status.stage == "RolledBack" and d.status.canary_weight == 0
    assert d.status.rollback_reason == "ProgressDeadlineExceeded"


def test_a_canary_ready_again_in_time_restarts_its_pause() -> None:
    sim = rolling(Sim(spec_dict(steps=STEPS, progressDeadline="1m")).stable())
    sim.tick(90)
    sim.broken.add(sim.desired)
    sim.tick()
    sim.tick(30)
    sim.broken.clear()
    d = sim.tick()
    assert d.status.stage == "Progressing" and d.status.stage_ready_at is not None
    assert [e.reason for e in d.events] == ["StepReady"]
    assert sim.tick(119).status.current_step == 0, "the 2 min pause counts from ready again"
    assert sim.tick(1).status.current_step == 1


def test_spec_paused_holds_without_deadline_and_without_moving_traffic() -> None:
    sim = Sim(spec_dict(steps=STEPS, progressDeadline="1m")).stable()
    sim.set_spec(paused=True)
    sim.set_image("web:2")
    sim.broken.add(sim.desired)
    d = sim.tick()
    assert d.status.phase == "Paused" and d.status.stage == "Progressing"
    assert cond(sim, "Progressing") == ("Unknown", "Paused")
    d = sim.tick(3600)
    assert d.status.stage == "Progressing" and d.requeue_after is None  # no deadline
    sim.broken.clear()
    for _ in range(3):
        d = sim.tick(600)
        assert d.status.canary_weight == 0  # traffic unchanged while held
        assert d.status.current_step == 0 and d.status.phase == "Paused"
    sim.set_spec(paused=False)
    d = sim.tick()
    assert d.status.canary_weight == 10 and d.status.phase == "Progressing"
    assert d.requeue_after == 120  # the pause starts now, not while held


def test_unpausing_the_spec_gives_the_progress_deadline_a_fresh_start() -> None:
    sim = Sim(spec_dict(steps=STEPS, progressDeadline="2m", paused=True)).stable()
    sim.set_image("web:2")
    sim.broken.add(sim.desired)
    sim.tick()
    sim.tick(3600)
    sim.set_spec(paused=False)
    d = sim.tick()
    assert d.status.stage == "Progressing" and d.requeue_after == 120
    d = sim.tick(120)
    assert d.status.stage == "RolledBack"


def test_spec_paused_holds_a_ready_step_past_its_pause() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    rolling(sim)
    sim.set_spec(paused=True)
    for _ in range(3):
        d = sim.tick(600)
        assert d.status.current_step == 0 and d.status.phase == "Paused"
        assert d.status.canary_weight == 10
    sim.set_spec(paused=False)
    d = sim.tick()
    assert d.status.current_step == 1


def test_pause_and_resume_gates() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    rolling(sim)
    sim.gate("pause", "2026-11-25T05:00:10Z")
    d = sim.tick()
    assert d.status.user_paused and d.status.phase == "Paused"
    assert [e.reason for e in d.events] == ["Paused"]
    d = sim.tick(600)
    assert d.status.current_step == 0 and not d.events
    sim.gate("resume", "2026-11-25T05:10:00Z")
    d = sim.tick()
    assert not d.status.user_paused
    assert [e.reason for e in d.events] == ["Resumed", "StepAdvanced"]
    assert d.status.current_step == 1


def test_pause_gate_before_the_step_is_ready_holds_its_weight() -> None:
    sim = Sim(spec_dict(steps=STEPS), ready_after={PRIMARY: 0, CANARY: 3, SHADOW: 0}).stable()
    sim.set_image("web:2")
    sim.tick()
    sim.gate("pause")
    d = sim.tick()
    assert d.status.user_paused
    for _ in range(5):
        d = sim.tick(60)
        assert d.status.canary_weight == 0 and d.status.stage_ready_at is None
    sim.gate("resume")
    d = sim.tick()
    assert d.status.canary_weight == 10 and d.requeue_after == 120


def test_pause_and_resume_together_the_later_token_wins() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    rolling(sim)
    sim.gate("pause", "2026-11-25T05:00:10Z")
    sim.gate("resume", "2026-11-25T05:00:20Z")
    d = sim.tick()
    assert not d.status.user_paused
    sim.gate("pause", "2026-11-25T05:00:40Z")
    sim.gate("resume", "2026-11-25T05:00:30Z")
    d = sim.tick()
    assert d.status.user_paused


def test_resume_gives_the_progress_deadline_a_fresh_start() -> None:
    sim = Sim(spec_dict(steps=STEPS, progressDeadline="2m")).stable()
    sim.set_image("web:2")
    sim.broken.add(sim.desired)
    sim.gate("pause")
    sim.tick()
    sim.tick(3600)
    sim.gate("resume")
    d = sim.tick()
    assert d.status.stage == "Progressing" and d.requeue_after == 120


# --------------------------------------------------------------------------- retry, cooldown


def test_retry_gate_restarts_a_rolled_back_revision() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    rolling(sim)
    new = sim.desired
    sim.gate("abort")
    sim.tick()
    assert sim.status.stage == "RolledBack"
    sim.gate("retry")
    d = sim.tick()
    s = d.status
    assert (s.stage, s.current_step, s.canary_revision, s.canary_weight) == (
        "Progressing",
        0,
        new,
        0,
    )
    assert "RolloutStarted" in [e.reason for e in d.events]
    assert cond(sim, "Degraded") == ("False", "AsExpected")
    d = sim.tick()
    assert d.status.canary_weight == 10  # the old abort token does not fire again


def test_retry_after_pause_and_abort_lifts_the_pause_gate() -> None:
    """A retry is an explicit go: the retried rollout is not left held by the pause
    gate that was on when it was aborted (issue 14, item 3)."""
    sim = Sim(spec_dict(steps=STEPS)).stable()
    rolling(sim)
    sim.gate("pause")
    sim.tick()
    sim.gate("abort")
    sim.tick()
    assert sim.status.stage == "RolledBack" and sim.status.user_paused
    sim.gate("retry")
    d = sim.tick()
    assert not d.status.user_paused and d.status.phase == "Progressing"
    assert ("Resumed", "the retry gate lifts the pause gate") in [
        (e.reason, e.message) for e in d.events
    ]
    d = sim.run_until(lambda s: s.status.canary_weight == 10)
    assert d.status.phase == "Progressing"


def test_retry_in_the_cooldown_lifts_the_pause_gate_too() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    rolling(sim)
    new = sim.desired
    sim.gate("abort")
    sim.tick()
    sim.set_image("web:1")  # reverted: Stable, then back to the rolled-back template
    sim.run_until(lambda s: s.status.stage == "Stable")
    sim.gate("pause")
    sim.set_image("web:2")
    d = sim.tick()
    assert sim.desired == new and d.status.stage == "Stable" and d.status.user_paused
    sim.gate("retry")
    d = sim.tick()
    assert d.status.stage == "Progressing" and not d.status.user_paused


def test_spec_paused_still_holds_a_retried_rollout() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    rolling(sim)
    sim.gate("abort")
    sim.tick()
    sim.set_spec(paused=True)
    sim.gate("retry")
    d = sim.tick()
    assert d.status.stage == "Progressing" and d.status.phase == "Paused"


def test_a_resume_held_by_the_analysis_is_noted_in_status() -> None:
    """The token of a resume another hold keeps is recorded as noted (not acted on),
    so `resume --wait` can say that hold; it goes once the resume is spent."""
    sim = Sim(spec_dict(steps=[{"weight": 10, "pause": {}}, {"weight": 50}])).stable()
    rolling(sim)
    sim.analysis = AnalysisSignal(Health.PENDING)
    sim.gate("resume", "2026-11-25T05:00:10.000000000Z")
    d = sim.tick()
    assert d.status.gates.resume_noted == "2026-11-25T05:00:10.000000000Z"
    assert d.status.gates.resume != d.status.gates.resume_noted
    assert "waiting for the analysis to pass (resume noted)" in d.status.message
    assert sim.tick(30).status.gates.resume_noted  # still noted: no flapping
    sim.analysis = AnalysisSignal(Health.HEALTHY)
    d = sim.tick()
    assert d.status.current_step == 1 and d.status.gates.resume_noted == ""
    assert d.status.gates.resume == "2026-11-25T05:00:10.000000000Z"


def test_a_newer_template_after_a_rollback_starts_a_rollout() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    rolling(sim)
    sim.gate("abort")
    sim.tick()
    sim.set_image("web:3")
    d = sim.tick()
    assert d.status.stage == "Progressing" and d.status.canary_revision == sim.desired


def test_cooldown_holds_a_rolled_back_revision_reapplied_too_soon() -> None:
    sim = Sim(spec_dict(steps=STEPS, rollback={"cooldown": "10m"})).stable()
    rolling(sim)
    bad = sim.desired
    sim.gate("abort")
    sim.tick()
    rolled_back_at = sim.now
    sim.set_image("web:1")
    assert sim.tick(60).status.stage == "Stable"
    sim.set_image("web:2")
    assert sim.desired == bad
    d = sim.tick(60)
    assert d.status.stage == "Stable" and d.status.canary_revision == ""
    until = rolled_back_at + timedelta(minutes=10)
    assert d.requeue_after == (until - sim.now).total_seconds() == 480
    assert "cooldown" in d.status.message
    # The spec's template is not served: kubectl wait on Ready and Flux must not pass.
    assert (d.status.condition("Ready").status, d.status.condition("Ready").reason) == (
        "False",
        "CoolingDown",
    )
    assert d.status.condition("Reconciling").status == "True"
    assert d.status.condition("Stalled").status == "False"
    d = sim.tick(479)
    assert d.status.stage == "Stable" and d.requeue_after == 1
    d = sim.tick(1)
    assert d.status.stage == "Progressing" and d.status.canary_revision == bad


def test_retry_acts_once_even_when_the_retried_rollout_fails_at_once() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    rolling(sim)
    sim.analysis = AnalysisSignal(Health.FAILED, "AnalysisFailed", "still failing")
    sim.tick()
    assert sim.status.stage == "RolledBack" and len(sim.status.history) == 1
    sim.gate("retry")
    d = sim.tick()
    assert d.status.stage == "RolledBack"
    assert [e.reason for e in d.events] == ["RolloutStarted", "AnalysisFailed"]
    assert [h.outcome for h in d.status.history] == ["RolledBack", "RolledBack"]
    again = decide(sim.spec, d.status, sim.observation(), sim.now)
    assert again.status == d.status and not again.events


def test_retry_gate_skips_the_cooldown() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    rolling(sim)
    sim.gate("abort")
    sim.tick()
    sim.set_image("web:1")
    sim.tick()
    sim.set_image("web:2")
    assert sim.tick().status.stage == "Stable"
    sim.gate("retry")
    assert sim.tick().status.stage == "Progressing"


def test_cooldown_applies_only_to_the_rolled_back_revision() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    rolling(sim)
    sim.gate("abort")
    sim.tick()
    sim.set_image("web:1")
    sim.tick()
    sim.set_image("web:3")
    assert sim.tick().status.stage == "Progressing"


# --------------------------------------------------------------------------- analysis


def test_failed_analysis_rolls_back_in_the_same_decide_call() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    rolling(sim)
    sim.analysis = AnalysisSignal(Health.FAILED, "ErrorRateTooHigh", "error-rate 0.2 > 0.05")
    d = sim.tick()
    s = d.status
    assert s.stage == "RolledBack" and s.canary_weight == 0 and s.mirror_percent == 0
    assert s.rollback_reason == "ErrorRateTooHigh"
    assert (s.history[0].reason, s.history[0].message) == (
        "ErrorRateTooHigh",
        "error-rate 0.2 > 0.05",
    )
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "ErrorRateTooHigh")]
    assert "ErrorRateTooHigh" in s.message
    assert cond(sim, "Degraded") == ("True", "ErrorRateTooHigh")


def test_failed_analysis_without_a_reason_says_analysis_failed() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    rolling(sim)
    sim.analysis = AnalysisSignal(Health.FAILED)
    d = sim.tick()
    assert d.status.rollback_reason == "AnalysisFailed"


def test_failed_analysis_acts_even_while_paused() -> None:
    sim = Sim(spec_dict(steps=STEPS, paused=True)).stable()
    sim.set_image("web:2")
    sim.tick()
    sim.analysis = AnalysisSignal(Health.FAILED, "AnalysisFailed")
    assert sim.tick().status.stage == "RolledBack"


def test_pending_analysis_holds_and_healthy_lets_it_advance() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    sim.analysis = AnalysisSignal(Health.PENDING)
    rolling(sim)
    assert sim.status.canary_weight == 10
    d = sim.tick(600)
    assert d.status.current_step == 0 and d.status.stage == "Progressing"
    assert "analysis" in d.status.message
    sim.analysis = AnalysisSignal(Health.HEALTHY)
    d = sim.tick()
    assert d.status.current_step == 1


def test_a_resume_given_while_checks_are_pending_is_not_lost() -> None:
    sim = Sim(spec_dict(steps=[{"weight": 10, "pause": {}}, {"weight": 50}])).stable()
    rolling(sim)
    assert sim.status.waiting_for_promotion
    sim.analysis = AnalysisSignal(Health.PENDING)
    sim.gate("resume")
    sim.tick()
    sim.analysis = AnalysisSignal(Health.HEALTHY)
    d = sim.tick()
    assert d.status.current_step == 1


def test_pending_analysis_holds_the_shadow_stage() -> None:
    sim = Sim(spec_dict(shadow={"duration": "1m"})).stable()
    sim.analysis = AnalysisSignal(Health.PENDING)
    rolling(sim)
    d = sim.tick(600)
    assert d.status.stage == "Shadowing" and d.status.mirror_percent == 100
    sim.analysis = AnalysisSignal(Health.HEALTHY)
    assert sim.tick().status.stage == "Progressing"


def test_failed_analysis_while_stable_does_nothing() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    sim.analysis = AnalysisSignal(Health.FAILED, "AnalysisFailed")
    d = sim.tick()
    assert d.status.stage == "Stable" and not d.events


# --------------------------------------------------------------------------- gates, timers


def test_the_same_gate_token_acts_once() -> None:
    sim = Sim(spec_dict(steps=[{"weight": 10, "pause": {}}, {"weight": 20, "pause": {}}]))
    sim.stable()
    rolling(sim)
    sim.gate("resume", "r1")
    assert sim.tick().status.current_step == 1
    d = sim.run_until(lambda s: s.status.waiting_for_promotion)
    for _ in range(3):
        d = sim.tick(60)
        assert d.status.current_step == 1 and d.status.waiting_for_promotion
    assert sim.status.gates.resume == "r1"

    sim.gate("abort", "a1")
    assert sim.tick().status.stage == "RolledBack"
    n = len(sim.status.history)
    sim.gate("retry", "t1")
    assert sim.tick().status.stage == "Progressing"
    for _ in range(3):
        d = sim.tick()
        assert d.status.stage == "Progressing"  # a1 and t1 are acknowledged
    assert len(sim.status.history) == n


def test_a_gate_seen_while_stable_is_acknowledged_and_forgotten() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    sim.gate("abort", "early")
    sim.tick()
    assert sim.status.gates.abort == "early"
    rolling(sim)
    assert sim.status.stage == "Progressing"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("initializing", 600.0),
        ("stable", None),
        ("not-ready", 600.0),
        ("pausing", 120.0),
        ("warm", 300.0),
        ("rolled-back", None),
    ],
)
def test_requeue_after_is_the_time_to_the_next_timer(setup: str, expected: float | None) -> None:
    sim = Sim(spec_dict(steps=STEPS), ready_after={PRIMARY: 0, CANARY: 1, SHADOW: 0})
    if setup == "initializing":
        sim.broken.add(sim.desired)
        d = sim.reconcile()
    else:
        sim.stable()
        d = sim.decisions[-1]
    if setup == "not-ready":
        sim.set_image("web:2")
        sim.broken.add(sim.desired)
        d = sim.tick()
    elif setup == "pausing":
        rolling(sim)
        d = sim.decisions[-1]
    elif setup == "warm":
        promoted(sim)
        d = sim.decisions[-1]
    elif setup == "rolled-back":
        rolling(sim)
        sim.gate("abort")
        d = sim.tick()
    assert d.requeue_after == expected
    if expected:
        later = sim.tick(7)
        assert later.requeue_after == expected - 7


# --------------------------------------------------------------------------- purity


def test_decide_does_not_touch_its_input_and_records_the_generation() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    sim.set_image("web:2")
    before = sim.status.model_copy(deep=True)
    obs = sim.observation()
    d = decide(sim.spec, sim.status, obs, sim.now)
    assert sim.status == before
    assert d.status is not sim.status
    assert d.status.observed_generation == obs.generation == 2
    assert all(c.observed_generation == 2 for c in d.status.conditions)


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    ready = sim.status.condition("Ready")
    assert ready is not None
    sim.tick(3600)
    after = sim.status.condition("Ready")
    assert after is not None and after.last_transition_time == ready.last_transition_time


def test_ready_follows_the_version_that_takes_the_traffic() -> None:
    spec = ShadowRouteSpec.model_validate(spec_dict())
    a = desired_revision(spec)
    status = ShadowRouteStatus(stage="Stable", stable_revision=a, primary_revision=a)
    obs = Observation(1, primary=Workload(a, 3, False), canary=Workload("b", 3, True))
    d = decide(spec, status, obs, T0)
    assert d.status.condition("Ready").reason == "Unavailable"  # type: ignore[union-attr]
    obs = Observation(1, primary=Workload(a, 0, True))
    d = decide(spec, status, obs, T0)
    assert d.status.condition("Ready").status == "False"  # type: ignore[union-attr]


def test_observation_defaults() -> None:
    obs = Observation(3)
    assert obs.gates == Gates() and obs.analysis is None and obs.primary_template_known


def test_a_superseding_revision_restarts_the_stage_timers() -> None:
    """Same stage and step, new revision: its readiness, pause and deadline start over."""
    sim = Sim(spec_dict(steps=[{"weight": 10, "pause": {"duration": "1m"}}, {"weight": 50}]))
    sim.stable()
    rolling(sim)
    sim.tick(50)
    first_ready = sim.status.stage_ready_at
    sim.ready_after["canary"] = 3  # the next revision takes a few ticks to be ready
    sim.set_image("web:3")
    d = sim.tick(1)
    assert d.status.stage == "Progressing" and d.status.current_step == 0
    assert d.status.stage_ready_at is None and d.status.canary_weight == 0
    d = sim.run_until(lambda s: s.status.stage_ready_at is not None)
    assert d.status.stage_ready_at != first_ready and d.status.canary_weight == 10
    d = sim.tick(30)  # 30 s into the new revision's 1 min pause: still at step 1
    assert d.status.current_step == 0


def test_a_rolled_back_revision_is_never_retried_by_itself() -> None:
    """Issue 14, item 4, decided: the cooldown holds a template brought back to the
    rolled-back revision; the revision itself waits for retry or a new template,
    however long ago the rollback was (as the reference now says)."""
    sim = Sim(spec_dict(steps=STEPS, rollback={"cooldown": "1m"})).stable()
    rolling(sim)
    sim.gate("abort")
    sim.tick()
    for _ in range(3):
        d = sim.tick(3600)
        assert d.status.stage == "RolledBack" and not d.events and d.requeue_after is None
    assert "use the retry gate or change the template" in d.status.message
    from shadowroute.api.models import RollbackSpec

    said = RollbackSpec.model_fields["cooldown"].description or ""
    assert "never retried by itself" in said and "automatically" not in said


# --------------------------------------------------------------------------- images


def test_status_and_history_name_the_images_and_what_changed() -> None:
    """Not only hashes (issue 14, item 7): status names each revision's images and what
    the canary changes; a history entry keeps both."""
    sim = Sim(spec_dict(steps=[{"weight": 10, "pause": {}}, {"weight": 50}])).stable()
    assert (sim.status.stable_image, sim.status.canary_image) == ("app=web:1", "")
    rolling(sim, "registry.example:5000/acme/web:2")
    s = sim.status
    assert (s.stable_image, s.canary_image) == ("app=web:1", "app=acme/web:2")
    assert s.canary_changes == "image app: web:1 → acme/web:2"
    sim.gate("abort")
    d = sim.tick()
    entry = d.status.history[0]
    assert (entry.outcome, entry.images, entry.changes) == (
        "RolledBack",
        "app=acme/web:2",
        "image app: web:1 → acme/web:2",
    )
    assert d.status.canary_image == d.status.canary_changes == ""
    assert d.status.to_k8s()["stableImage"] == "app=web:1"
    assert not sim.tick().status.to_k8s().get("canaryImage")  # at rest: nothing new


def test_a_promotion_records_the_images_it_replaced() -> None:
    sim = promoted(Sim(spec_dict(steps=STEPS)).stable())
    entry = sim.status.history[0]
    assert (entry.outcome, entry.images, entry.changes) == (
        "Promoted",
        "app=web:2",
        "image app: web:1 → web:2",
    )
    assert sim.status.stable_image == "app=web:2"


def test_template_changes_name_fields_never_values() -> None:
    from shadowroute.revision import IMAGES_LIMIT, template_changes, template_images

    old = {"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [
        {"name": "app", "image": "web@sha256:" + "f" * 64,
         "env": [{"name": "TOKEN", "value": "s1"}]},
        {"name": "log", "image": "fluent:1"},
    ]}}  # fmt: skip
    new = {"metadata": {"labels": {"a": "2"}}, "spec": {"nodeSelector": {"x": "y"}, "containers": [
        {"name": "app", "image": "web:3", "env": [{"name": "TOKEN", "value": "s2"}],
         "resources": {"limits": {"cpu": "1"}}},
        {"name": "proxy", "image": "docker.io/envoy:1"},
    ]}}  # fmt: skip
    said = template_changes(old, new)
    assert said == (
        "labels changed; container log removed; image app: web@sha256:ffffffffffff → web:3; "
        "env TOKEN changed; app: resources changed; container proxy added (envoy:1); "
        "spec.nodeSelector changed"
    )
    assert "s2" not in said and "s1" not in said
    assert template_images(new) == "app=web:3, proxy=envoy:1"
    many = {"spec": {"containers": [{"name": f"c{i}", "image": "x" * 30} for i in range(20)]}}
    assert len(template_images(many)) == IMAGES_LIMIT and template_images(many).endswith("…")
    assert template_changes(None, new) == "" and template_images(None) == ""


def test_template_changes_ignore_what_the_api_server_defaults() -> None:
    """The stable template is read back from its Deployment, defaulted by the API server;
    the new one comes from the spec: a default is no change (the reviewer saw 256
    characters of imagePullPolicy, dnsPolicy, schedulerName … hide the image)."""
    from shadowroute.revision import template_changes

    spec_side = {"spec": {"containers": [
        {"name": "app", "image": "app:2", "ports": [{"containerPort": 8080}],
         "readinessProbe": {"httpGet": {"path": "/", "port": 8080}}},
    ]}}  # fmt: skip
    live_side = {"spec": {
        "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
        "schedulerName": "default-scheduler", "securityContext": {},
        "terminationGracePeriodSeconds": 30,
        "containers": [
            {"name": "app", "image": "app:1", "imagePullPolicy": "IfNotPresent",
             "terminationMessagePath": "/dev/termination-log",
             "terminationMessagePolicy": "File", "resources": {},
             "ports": [{"containerPort": 8080, "protocol": "TCP"}],
             "readinessProbe": {"httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"},
                                "timeoutSeconds": 1, "periodSeconds": 10,
                                "successThreshold": 1, "failureThreshold": 3}},
        ],
    }}  # fmt: skip
    assert template_changes(live_side, spec_side) == "image app: app:1 → app:2"
    live_side["spec"]["terminationGracePeriodSeconds"] = 5  # a value the user set
    assert template_changes(live_side, spec_side) == (
        "image app: app:1 → app:2; spec.terminationGracePeriodSeconds changed"
    )
