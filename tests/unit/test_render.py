"""The desired children: Deployments and Services from spec and status, pure."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shadowroute.api import ShadowRouteSpec, ShadowRouteStatus
from shadowroute.names import (
    CANARY,
    LIVE_LABEL,
    MANAGED_BY,
    NAME_LABEL,
    PRIMARY,
    REVISION_LABEL,
    ROLE_LABEL,
    SHADOW,
    Owner,
    child_labels,
    child_name,
    selector,
)
from shadowroute.render.workloads import (
    deployment,
    deployments,
    entry_selector,
    revision_for,
    service,
    services,
    stale_shadow_children,
)
from shadowroute.stages import canary_replicas, replicas_for, shadow_replicas

from .sim import MIRRORING_TRAFFIC as MIRRORING
from .sim import image_template, spec_dict

OWNER = Owner("shadowroute.io/v1alpha1", "ShadowRoute", "web", "shop", "uid-123")
TEMPLATE = image_template("web:1")


def spec(**kwargs: Any) -> ShadowRouteSpec:
    return ShadowRouteSpec.model_validate(spec_dict(**kwargs))


def status(**kwargs: Any) -> ShadowRouteStatus:
    return ShadowRouteStatus(**kwargs)


# --------------------------------------------------------------------------- names, labels


def test_child_names() -> None:
    assert child_name("web", None) == "web"
    assert [child_name("web", r) for r in (PRIMARY, CANARY, SHADOW)] == [
        "web-primary",
        "web-canary",
        "web-shadow",
    ]


def test_child_labels() -> None:
    assert child_labels("web", None) == {MANAGED_BY: "shadowroute", NAME_LABEL: "web"}
    assert child_labels("web", CANARY, "abc") == {
        "app.kubernetes.io/managed-by": "shadowroute",
        "shadowroute.io/name": "web",
        "shadowroute.io/role": "canary",
        "shadowroute.io/revision": "abc",
    }


@pytest.mark.parametrize("role", [PRIMARY, CANARY, SHADOW])
def test_deployment_labels_and_selector(role: str) -> None:
    dep = deployment(OWNER, role, "rev1", TEMPLATE, 3)
    assert dep["apiVersion"] == "apps/v1" and dep["kind"] == "Deployment"
    meta = dep["metadata"]
    assert meta["name"] == f"web-{role}" and meta["namespace"] == "shop"
    assert meta["labels"] == child_labels("web", role, "rev1")
    # The selector names the role only: it never changes (selectors are immutable).
    assert dep["spec"]["selector"] == {"matchLabels": {NAME_LABEL: "web", ROLE_LABEL: role}}
    assert dep["spec"]["selector"]["matchLabels"] == selector("web", role)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app"] == "web"  # the user's own labels stay
    assert pod_labels[REVISION_LABEL] == "rev1"
    assert pod_labels[ROLE_LABEL] == role and pod_labels[NAME_LABEL] == "web"
    assert pod_labels[MANAGED_BY] == "shadowroute"
    assert set(dep["spec"]["selector"]["matchLabels"].items()) <= set(pod_labels.items())
    if role == SHADOW:
        assert LIVE_LABEL not in pod_labels  # never behind the entry Service
    else:
        assert pod_labels[LIVE_LABEL] == "true"
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["template"]["spec"] == TEMPLATE["spec"]


def test_deployment_does_not_touch_the_template_it_is_given() -> None:
    template = copy.deepcopy(TEMPLATE)
    dep = deployment(OWNER, CANARY, "rev1", template, 1)
    assert template == TEMPLATE
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "changed"
    assert template == TEMPLATE


def test_deployment_of_a_template_without_metadata() -> None:
    dep = deployment(OWNER, PRIMARY, "rev1", {"spec": TEMPLATE["spec"]}, 1)
    assert dep["spec"]["template"]["metadata"]["labels"] == {
        **child_labels("web", PRIMARY, "rev1"),
        LIVE_LABEL: "true",
    }


def test_our_labels_win_over_the_users() -> None:
    template = image_template("web:1")
    template["metadata"]["labels"] = {ROLE_LABEL: "mine", NAME_LABEL: "other", "team": "a"}
    pod = deployment(OWNER, CANARY, "r", template, 1)["spec"]["template"]["metadata"]["labels"]
    assert (pod[ROLE_LABEL], pod[NAME_LABEL], pod["team"]) == (CANARY, "web", "a")


def test_owner_references() -> None:
    expected = [
        {
            "apiVersion": "shadowroute.io/v1alpha1",
            "kind": "ShadowRoute",
            "name": "web",
            "uid": "uid-123",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    s = spec()
    deps, _ = deployments(OWNER, s, status(), "r", {"r": TEMPLATE})
    for obj in [*deps, *services(OWNER, s, status())]:
        assert obj["metadata"]["ownerReferences"] == expected
        assert obj["metadata"]["namespace"] == "shop"


# --------------------------------------------------------------------------- services


def test_services_one_entry_and_one_per_role() -> None:
    svcs = services(OWNER, spec(shadow={"duration": "1m"}), status())
    assert [s["metadata"]["name"] for s in svcs] == [
        "web",
        "web-primary",
        "web-canary",
        "web-shadow",
    ]
    for svc, role in zip(svcs, [None, PRIMARY, CANARY, SHADOW], strict=True):
        assert svc["apiVersion"] == "v1" and svc["kind"] == "Service"
        assert svc["spec"]["type"] == "ClusterIP"
        assert svc["metadata"]["labels"] == child_labels("web", role)
        if role is not None:
            assert svc["spec"]["selector"] == selector("web", role)


@pytest.mark.parametrize(
    ("weight", "expected"),
    [
        (0, {NAME_LABEL: "web", ROLE_LABEL: PRIMARY}),
        (1, {NAME_LABEL: "web", LIVE_LABEL: "true"}),
        (50, {NAME_LABEL: "web", LIVE_LABEL: "true"}),
        (99, {NAME_LABEL: "web", LIVE_LABEL: "true"}),
        (100, {NAME_LABEL: "web", ROLE_LABEL: CANARY}),
    ],
)
def test_entry_service_follows_the_weight(weight: int, expected: dict[str, str]) -> None:
    st_ = status(canary_weight=weight)
    assert entry_selector("web", st_) == expected
    assert services(OWNER, spec(), st_)[0]["spec"]["selector"] == expected


def test_the_live_selector_never_picks_shadow_pods() -> None:
    live = entry_selector("web", status(canary_weight=30))
    for role in (PRIMARY, CANARY, SHADOW):
        pod = deployment(OWNER, role, "r", TEMPLATE, 1)["spec"]["template"]["metadata"]["labels"]
        picked = set(live.items()) <= set(pod.items())
        assert picked == (role != SHADOW)


def test_target_port_defaults_to_port_and_protocol_to_tcp() -> None:
    raw = spec_dict()
    raw["service"] = {"ports": [{"port": 80}]}
    svc = service(OWNER, ShadowRouteSpec.model_validate(raw), None, {})
    assert svc["spec"]["ports"] == [{"port": 80, "targetPort": 80, "protocol": "TCP"}]


def test_ports_as_written() -> None:
    raw = spec_dict()
    raw["service"] = {
        "ports": [
            {"name": "http", "port": 80, "targetPort": "web", "appProtocol": "http"},
            {"name": "metrics", "port": 9090, "targetPort": 9091, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ]
    }
    svc = service(OWNER, ShadowRouteSpec.model_validate(raw), PRIMARY, selector("web", PRIMARY))
    assert svc["spec"]["ports"] == [
        {"port": 80, "targetPort": "web", "protocol": "TCP", "name": "http", "appProtocol": "http"},
        {"port": 9090, "targetPort": 9091, "protocol": "TCP", "name": "metrics"},
        {"port": 53, "targetPort": 53, "protocol": "UDP", "name": "dns"},
    ]


def test_spec_dict_target_port() -> None:
    svc = services(OWNER, spec(), status())[0]
    assert svc["spec"]["ports"] == [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]


# --------------------------------------------------------------------------- replicas


@pytest.mark.parametrize(
    ("replicas", "weight", "expected"),
    [
        (3, 10, 1),
        (3, 33, 1),
        (3, 34, 2),
        (3, 50, 2),
        (3, 100, 3),
        (10, 1, 1),
        (10, 15, 2),
        (10, 90, 9),
        (1, 1, 1),
        (0, 50, 0),  # a service scaled to zero stays at zero
        (5, 0, 0),
    ],
)
def test_canary_replicas(replicas: int, weight: int, expected: int) -> None:
    assert canary_replicas(replicas, weight) == expected
    assert shadow_replicas(replicas, weight) == expected


@given(replicas=st.integers(0, 1000), weight=st.integers(1, 100))
def test_canary_replicas_is_the_ceiling_share_at_least_one(replicas: int, weight: int) -> None:
    n = canary_replicas(replicas, weight)
    if replicas == 0:
        assert n == 0 and canary_replicas(replicas, 100) == 0
        return
    assert n == max(1, math.ceil(replicas * weight / 100))
    assert 1 <= n <= replicas
    assert canary_replicas(replicas, 100) == replicas
    if weight < 100:
        assert n <= canary_replicas(replicas, weight + 1)


STEPPED = {"steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}]}


@pytest.mark.parametrize(
    ("stage", "extra", "expected"),
    [
        ("Initializing", {}, (5, 0, 0)),
        ("Stable", {}, (5, 0, 0)),
        ("Shadowing", {"canary_revision": "n"}, (5, 0, 3)),
        ("Progressing", {"canary_revision": "n", "current_step": 0}, (5, 1, 0)),
        ("Progressing", {"canary_revision": "n", "current_step": 1}, (5, 3, 0)),
        ("Progressing", {"canary_revision": "n", "current_step": 2}, (5, 5, 0)),
        ("Progressing", {"canary_revision": "n", "current_step": 9}, (5, 5, 0)),  # clamped
        ("Progressing", {}, (5, 0, 0)),  # no canary revision: nothing to run
        ("Promoting", {"canary_revision": "n"}, (5, 5, 0)),
        ("Succeeded", {"canary_revision": "n"}, (5, 5, 0)),
        ("RolledBack", {}, (5, 0, 0)),
        ("Failed", {}, (5, 0, 0)),
    ],
)
def test_replicas_per_stage(stage: str, extra: dict[str, Any], expected: tuple[int, ...]) -> None:
    s = spec(replicas=5, steps=STEPPED["steps"], shadow={"duration": "1m", "mirrorPercent": 50})
    st_ = status(stage=stage, **extra)
    assert tuple(replicas_for(role, s, st_) for role in (PRIMARY, CANARY, SHADOW)) == expected


def test_blue_green_preview_runs_at_full_scale() -> None:
    s = spec(replicas=4, blue_green={})
    st_ = status(stage="Progressing", canary_revision="n")
    assert replicas_for(CANARY, s, st_) == 4


def test_shadowing_without_a_shadow_stage_runs_no_shadow() -> None:
    assert replicas_for(SHADOW, spec(), status(stage="Shadowing", canary_revision="n")) == 0


def test_revision_for_each_role() -> None:
    st_ = status(primary_revision="p", canary_revision="c")
    assert [revision_for(r, st_, "d") for r in (PRIMARY, CANARY, SHADOW)] == ["p", "c", "d"]
    empty = status()
    assert [revision_for(r, empty, "d") for r in (PRIMARY, CANARY, SHADOW)] == ["d", "d", "d"]


# --------------------------------------------------------------------------- deployments()


def test_deployments_render_each_role_from_its_revisions_template() -> None:
    old, new = image_template("web:1"), image_template("web:2")
    s = spec(replicas=4, steps=STEPPED["steps"], shadow={"duration": "1m"})
    st_ = status(stage="Progressing", primary_revision="old", canary_revision="new", current_step=1)
    deps, missing = deployments(OWNER, s, st_, "new", {"old": old, "new": new})
    assert missing == []
    by_role = {d["metadata"]["labels"][ROLE_LABEL]: d for d in deps}
    assert list(by_role) == [PRIMARY, CANARY, SHADOW]
    image = {r: d["spec"]["template"]["spec"]["containers"][0]["image"] for r, d in by_role.items()}
    assert image == {PRIMARY: "web:1", CANARY: "web:2", SHADOW: "web:2"}
    assert {r: d["spec"]["replicas"] for r, d in by_role.items()} == {
        PRIMARY: 4,
        CANARY: 2,
        SHADOW: 0,
    }
    assert by_role[PRIMARY]["metadata"]["labels"][REVISION_LABEL] == "old"


def test_deployments_leave_out_roles_whose_template_is_unknown() -> None:
    st_ = status(stage="Succeeded", primary_revision="gone", canary_revision="new")
    deps, missing = deployments(OWNER, spec(), st_, "new", {"new": TEMPLATE})
    assert missing == [PRIMARY]
    assert [d["metadata"]["name"] for d in deps] == ["web-canary"]


@pytest.mark.parametrize(
    "strategy",
    [
        {"steps": STEPPED["steps"]},  # provider none: it can never shadow
        {"steps": STEPPED["steps"], "traffic": MIRRORING},  # could mirror, no shadow stage
        {"blue_green": {}},
    ],
)
def test_no_shadow_children_where_no_shadow_can_be(strategy: dict[str, Any]) -> None:
    """Without a shadow stage no `-shadow` Deployment or Service (issue 14, item 9)."""
    s = spec(**strategy)
    for st_ in (status(), status(stage="Progressing", canary_revision="b", canary_weight=10)):
        deps, _ = deployments(OWNER, s, st_, "b", {"b": TEMPLATE})
        names = [o["metadata"]["name"] for o in [*deps, *services(OWNER, s, st_)]]
        assert names == ["web-primary", "web-canary", "web", "web-primary", "web-canary"]


def test_shadow_children_stay_while_the_status_still_shadows() -> None:
    """A shadow stage removed mid-shadow: the mirror target exists until the decided
    status has left the stage."""
    st_ = status(stage="Shadowing", canary_revision="b", mirror_percent=50)
    names = [o["metadata"]["name"] for o in services(OWNER, spec(), st_)]
    assert "web-shadow" in names


def test_stale_shadow_children_go_only_when_ours_and_unwanted() -> None:
    live_dep = {"metadata": {"name": "web-shadow"}, "spec": {}}
    live = {
        "Deployment": {
            "web-shadow": live_dep,
            "web-primary": {"metadata": {"name": "web-primary"}},
        },
        "Service": {"web-shadow": {"metadata": {"name": "web-shadow"}}},
    }
    plain = spec()
    desired = services(OWNER, plain, status())
    stale = stale_shadow_children(OWNER, plain, desired, live)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in stale) == [
        ("Deployment", "web-shadow"),
        ("Service", "web-shadow"),
    ]
    assert stale[0]["apiVersion"] == "apps/v1"
    shadowed = spec(shadow={"duration": "1m"})
    assert stale_shadow_children(OWNER, shadowed, desired, live) == []
    assert stale_shadow_children(OWNER, plain, desired, {}) == []  # nothing ours: nothing goes


def test_rendering_is_deterministic_and_pure() -> None:
    s = spec(steps=STEPPED["steps"], shadow={"duration": "1m"})
    st_ = status(stage="Shadowing", primary_revision="a", canary_revision="b", mirror_percent=100)
    templates = {"a": image_template("web:1"), "b": image_template("web:2")}
    frozen = copy.deepcopy(templates)
    first = deployments(OWNER, s, st_, "b", templates), services(OWNER, s, st_)
    second = deployments(OWNER, s, st_, "b", templates), services(OWNER, s, st_)
    assert first == second and templates == frozen
