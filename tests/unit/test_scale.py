"""The scale subresource: what `kubectl scale` and an HorizontalPodAutoscaler read and
write (spec.replicas, status.replicas, status.selector), and how a count set there is
split between primary, canary and shadow (docs/migration.md, "Autoscaling")."""

from __future__ import annotations

import math

import pytest
from shadowroute.api.crd import SCALE, build_crd
from shadowroute.names import NAME_LABEL, ROLE_LABEL
from shadowroute.reconciler import status_dict
from shadowroute.render.workloads import scale_status

from .sim import CANARY, PRIMARY, SHADOW, Sim, spec_dict


def _path(schema: dict, dotted: str) -> dict:
    node = schema
    for part in dotted.strip(".").split("."):
        node = node["properties"][part]
    return node


def test_the_crd_serves_a_scale_subresource_whose_paths_are_in_the_schema() -> None:
    version = build_crd()["spec"]["versions"][0]
    assert version["subresources"]["scale"] == SCALE
    schema = version["schema"]["openAPIV3Schema"]
    assert _path(schema, SCALE["specReplicasPath"])["type"] == "integer"
    assert _path(schema, SCALE["statusReplicasPath"])["type"] == "integer"
    assert _path(schema, SCALE["labelSelectorPath"])["type"] == "string"


def _dep(name: str, replicas: int | None) -> dict:
    dep: dict = {"metadata": {"name": name}, "spec": {"replicas": 9}}
    if replicas is not None:
        dep["status"] = {"replicas": replicas}
    return dep


def test_scale_status_counts_the_primary_pods_only() -> None:
    live = [_dep("web-primary", 3), _dep("web-canary", 2), _dep("web-shadow", 1)]
    assert scale_status("web", live) == (
        3,
        f"{NAME_LABEL}=web,{ROLE_LABEL}=primary",
    )


@pytest.mark.parametrize("live", [[], [_dep("web-primary", None)], [_dep("other-primary", 4)]])
def test_scale_status_without_a_counted_primary_is_zero(live: list[dict]) -> None:
    assert scale_status("web", live)[0] == 0


def test_the_status_reports_the_primary_pods_and_stays_still_at_rest() -> None:
    sim = Sim(spec_dict(replicas=3)).stable()
    sim.settle()
    assert sim.status.replicas == 3
    assert sim.status.selector == f"{NAME_LABEL}=web,{ROLE_LABEL}=primary"
    before = status_dict(sim.status)
    for _ in range(3):
        sim.tick()
    assert status_dict(sim.status) == before  # no status write at rest


def test_a_scaled_spec_scales_the_primary_and_the_status_follows() -> None:
    sim = Sim(spec_dict(replicas=2)).stable()
    sim.set_spec(replicas=5)  # what the scale subresource writes
    sim.reconcile()
    assert sim.deps[PRIMARY].replicas == 5
    sim.settle()
    assert sim.status.replicas == 5


@pytest.mark.parametrize("replicas", [1, 4, 7, 10])
def test_a_canary_gets_the_ceiling_share_of_the_scaled_count(replicas: int) -> None:
    sim = Sim(spec_dict(replicas=2, steps=[{"weight": 30, "pause": {"duration": "1h"}}])).stable()
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.canary_weight == 30)
    sim.set_spec(replicas=replicas)
    sim.reconcile()
    assert sim.deps[PRIMARY].replicas == replicas
    assert sim.deps[CANARY].replicas == max(1, math.ceil(replicas * 30 / 100))
    assert sim.status.stage == "Progressing"  # a scale is no new revision


def test_a_blue_green_preview_gets_the_whole_scaled_count() -> None:
    sim = Sim(spec_dict(replicas=2, blue_green={"previewDuration": "1h"})).stable()
    sim.set_image("app:v2")
    sim.run_until(lambda s: CANARY in s.deps and s.deps[CANARY].replicas > 0)
    sim.set_spec(replicas=6)
    sim.reconcile()
    assert (sim.deps[PRIMARY].replicas, sim.deps[CANARY].replicas) == (6, 6)


def test_a_shadow_gets_the_mirrored_share_of_the_scaled_count() -> None:
    shadow = {"duration": "1h", "mirrorPercent": 50}
    sim = Sim(spec_dict(replicas=2, shadow=shadow)).stable()
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.stage == "Shadowing")
    sim.set_spec(replicas=5)
    sim.reconcile()
    assert (sim.deps[PRIMARY].replicas, sim.deps[SHADOW].replicas) == (5, 3)
