"""The conditions GitOps tools and `kubectl wait` read (kstatus conventions), and the
chart's Argo CD health check (Lua, run with lupa's Lua 5.1 as Argo CD's gopher-lua is)
on status objects the real state machine produces, stage by stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from shadowroute.reconciler import status_dict

from .sim import CANARY, PRIMARY, Sim, spec_dict

lua51 = pytest.importorskip("lupa.lua51")

ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = ROOT / "charts" / "shadowroute" / "files" / "argocd-health.lua"
STEPS = [{"weight": 10, "pause": {"duration": "2m"}}, {"weight": 50, "pause": {}}]


def conds(sim: Sim) -> dict[str, tuple[str, str]]:
    return {c.type: (str(c.status), c.reason) for c in sim.status.conditions}


def kstatus(sim: Sim) -> tuple[str, str, str]:
    """(Ready, Reconciling, Stalled) statuses."""
    c = conds(sim)
    return c["Ready"][0], c["Reconciling"][0], c["Stalled"][0]


def argocd_health(obj: dict[str, Any]) -> dict[str, str]:
    """Run the chart's health script the way Argo CD does: `obj` is the live object."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)

    def table(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: table(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([table(v) for v in value])
        return value

    lua.globals().obj = table(obj)
    result = lua.execute(HEALTH_LUA.read_text())
    return {"status": result["status"], "message": result["message"]}


def live(sim: Sim) -> dict[str, Any]:
    """The ShadowRoute as the API server would return it, with the sim's status."""
    return {
        "apiVersion": "shadowroute.io/v1alpha1",
        "kind": "ShadowRoute",
        "metadata": {"name": "web", "namespace": "default", "generation": sim.generation},
        "spec": sim.raw,
        "status": status_dict(sim.status),
    }


def health(sim: Sim) -> str:
    return argocd_health(live(sim))["status"]


def test_ready_is_false_for_the_whole_rollout_and_true_once_the_new_revision_serves_all() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    assert kstatus(sim) == ("True", "False", "False") and health(sim) == "Healthy"
    sim.set_image("web:2")
    seen: list[tuple[Any, ...]] = []
    while not seen or sim.status.stage != "Stable":
        sim.tick(30)
        if sim.status.waiting_for_promotion:
            sim.gate("resume")
        seen.append((sim.status.phase, sim.status.canary_weight, *kstatus(sim), health(sim)))
        assert len(seen) < 100, seen
    for phase, weight, ready, reconciling, stalled, argo in seen:
        assert stalled == "False"
        if phase in ("Progressing", "Promoting", "Paused"):
            assert (ready, reconciling) == ("False", "True"), (phase, weight)
            assert argo == ("Suspended" if phase == "Paused" else "Progressing")
        elif phase == "Succeeded":  # the new revision takes 100 % while the old stays warm
            assert (weight, ready, reconciling, argo) == (100, "True", "True", "Progressing")
        else:
            assert (phase, ready, reconciling, argo) == ("Stable", "True", "False", "Healthy")
    phases = {p for p, *_ in seen}
    assert {"Progressing", "Paused", "Succeeded", "Stable"} <= phases, phases
    assert conds(sim)["Ready"][1] == "Available"


def test_ready_reasons_name_the_stage_or_the_hold() -> None:
    sim = Sim(spec_dict(steps=STEPS, shadow={"duration": "1m"})).stable()
    sim.set_image("web:2")
    sim.tick()
    assert sim.status.stage == "Shadowing"
    assert conds(sim)["Ready"] == ("False", "Shadowing")
    assert conds(sim)["Reconciling"] == ("True", "Shadowing")
    assert health(sim) == "Progressing"
    sim.run_until(lambda s: s.status.stage == "Progressing")
    assert conds(sim)["Ready"] == ("False", "CanaryProgressing")
    sim.gate("pause")
    sim.tick()
    assert conds(sim)["Ready"] == ("False", "Paused")
    assert conds(sim)["Reconciling"] == ("True", "Paused")
    assert argocd_health(live(sim)) == {"status": "Suspended", "message": "Paused: " + (
        sim.status.message)}  # fmt: skip
    # Every condition carries the generation it was computed for.
    assert {c.observed_generation for c in sim.status.conditions} == {sim.generation}


@pytest.mark.parametrize("how", ["abort", "deadline"])
def test_after_a_rollback_ready_is_false_and_stalled_true(how: str) -> None:
    sim = Sim(spec_dict(steps=STEPS, progressDeadline="1m")).stable()
    sim.set_image("web:2")
    if how == "abort":
        sim.tick()
        sim.gate("abort")
        sim.tick()
    else:
        sim.broken.add(sim.desired)
        sim.run_until(lambda s: s.status.stage == "RolledBack", seconds=10)
    reason = {"abort": "Aborted", "deadline": "ProgressDeadlineExceeded"}[how]
    c = conds(sim)
    assert sim.status.stage == "RolledBack" and sim.status.canary_weight == 0
    assert c["Available"] == ("True", "Available")  # the previous revision serves
    assert c["Ready"] == ("False", reason)  # ...but not the one the spec asks for
    assert c["Stalled"] == ("True", reason) and c["Reconciling"] == ("False", reason)
    got = argocd_health(live(sim))
    assert got["status"] == "Degraded" and got["message"].startswith(reason)
    # The retry gate goes on: Stalled clears at once.
    sim.broken.clear()
    sim.gate("retry")
    sim.tick()
    assert kstatus(sim) == ("False", "True", "False")


def test_first_version_never_available_is_stalled() -> None:
    sim = Sim(spec_dict(progressDeadline="1m"))
    sim.broken.add(sim.desired)
    sim.reconcile()
    assert kstatus(sim) == ("False", "True", "False") and health(sim) == "Progressing"
    sim.tick(60)
    assert sim.status.stage == "Failed"
    assert conds(sim)["Stalled"] == ("True", "ProgressDeadlineExceeded")
    assert conds(sim)["Ready"][0] == "False" and health(sim) == "Degraded"


def test_a_rollout_starting_is_no_readiness_loss_but_the_serving_version_going_is() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    since = len(sim.events)
    sim.set_image("web:2")
    sim.tick()
    assert conds(sim)["Ready"][0] == "False"
    assert [e for e in sim.events[since:] if e.type == "Warning"] == []
    sim.flapping.add(PRIMARY)  # the version that serves (90 %) stops being available
    d = sim.tick()
    assert [(e.type, e.reason) for e in d.events if e.type == "Warning"] == [
        ("Warning", "Unavailable")
    ]
    assert conds(sim)["Available"] == ("False", "Unavailable")
    assert conds(sim)["Ready"] == ("False", "Unavailable")
    assert health(sim) == "Degraded"
    assert [e for e in sim.tick().events if e.type == "Warning"] == []  # once per loss


def test_at_rest_an_unavailable_primary_is_degraded_for_argo() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    sim.flapping.add(PRIMARY)
    sim.tick()
    assert conds(sim)["Ready"] == ("False", "Unavailable")
    assert kstatus(sim) == ("False", "False", "False")
    assert health(sim) == "Degraded"
    sim.flapping.clear()
    sim.tick()
    assert health(sim) == "Healthy"


def test_blue_green_preview_is_not_ready_until_the_switch() -> None:
    sim = Sim(spec_dict(blue_green={"previewDuration": "1m"})).stable()
    sim.set_image("web:2")
    sim.tick()
    assert sim.status.stage == "Progressing" and sim.status.canary_weight == 0
    assert kstatus(sim)[0] == "False" and health(sim) == "Progressing"
    sim.run_until(lambda s: s.status.stage == "Succeeded", seconds=10)
    assert sim.status.canary_weight == 100 and kstatus(sim)[0] == "True"
    assert sim.deps[CANARY].replicas == 3


def test_health_waits_for_the_operator_to_see_the_generation() -> None:
    sim = Sim(spec_dict(steps=STEPS)).stable()
    obj = live(sim)
    obj["metadata"]["generation"] = sim.generation + 1  # applied, not reconciled yet
    assert argocd_health(obj)["status"] == "Progressing"
    assert argocd_health({"metadata": {"generation": 1}})["status"] == "Progressing"
