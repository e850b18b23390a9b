"""No change, no write (render/diff.py), and the live children read back into the
plain values the state machine takes (rollout/from_live.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shadowroute.api import ShadowRouteSpec, ShadowRouteStatus
from shadowroute.names import BASELINE, CANARY, COMPARATOR, PRIMARY, REVISION_LABEL, SHADOW, Owner
from shadowroute.render.diff import (
    APPLIED_HASH,
    content_hash,
    index_by_name,
    needs_write,
    with_applied_hash,
)
from shadowroute.render.workloads import deployment, deployments, services
from shadowroute.revision import template_revision
from shadowroute.rollout import from_live
from shadowroute.rollout.machine import desired_revision, template_dict
from shadowroute.rollout.observe import Gates, Workload

from .sim import image_template, spec_dict

OWNER = Owner("shadowroute.io/v1alpha1", "ShadowRoute", "web", "shop", "uid-1")
TEMPLATE = image_template("web:1")


def rendered() -> list[dict[str, Any]]:
    spec = ShadowRouteSpec.model_validate(spec_dict())
    desired = desired_revision(spec)
    status = ShadowRouteStatus(stage="Stable", stable_revision=desired, primary_revision=desired)
    deps, _ = deployments(OWNER, spec, status, desired, {desired: template_dict(spec)})
    return [*services(OWNER, spec, status), *deps]


def as_live(obj: dict[str, Any]) -> dict[str, Any]:
    """What the API server hands back after an apply: ours plus its own fields."""
    live = with_applied_hash(obj)
    live["metadata"].update(uid="x", resourceVersion="7", generation=2)
    if obj["kind"] == "Service":
        live["spec"]["clusterIP"] = "10.0.0.7"
    else:
        live["status"] = {"observedGeneration": 2, "replicas": obj["spec"]["replicas"]}
    return live


# --------------------------------------------------------------------------- diff


def test_a_missing_object_needs_a_write() -> None:
    for obj in rendered():
        assert needs_write(obj, None)


def test_what_was_applied_needs_no_second_write() -> None:
    for obj in rendered():
        assert not needs_write(obj, with_applied_hash(obj))
        assert not needs_write(obj, as_live(obj))  # server-side fields do not count


def test_a_content_change_needs_a_write() -> None:
    for obj in rendered():
        live = as_live(obj)
        changed = copy.deepcopy(obj)
        changed["metadata"]["labels"]["extra"] = "1"
        assert needs_write(changed, live)


def test_replicas_changed_by_hand_are_put_back() -> None:
    dep = next(o for o in rendered() if o["kind"] == "Deployment")
    live = as_live(dep)
    live["spec"]["replicas"] = dep["spec"]["replicas"] + 5  # kubectl scale
    assert needs_write(dep, live)


def test_an_object_applied_by_someone_else_is_taken_over() -> None:
    dep = next(o for o in rendered() if o["kind"] == "Deployment")
    live = copy.deepcopy(dep)  # same content, but no hash of ours
    assert needs_write(dep, live)
    live["metadata"]["annotations"] = {APPLIED_HASH: "0000000000000000"}
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "web:other"
    assert needs_write(dep, live)


def test_a_kept_revision_read_back_from_the_live_deployment_is_not_written_again() -> None:
    """A rollout's start: the primary keeps its revision, whose template now comes from
    the live Deployment (server defaults in it), so its hash differs from the one
    applied from the spec. Writing only the annotation would bump the Deployment's
    generation and read as unavailable until the controller caught up."""
    dep = next(o for o in rendered() if o["kind"] == "Deployment")
    live = as_live(dep)
    container = live["spec"]["template"]["spec"]["containers"][0]
    container.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
    revision, template = from_live.user_template(live)
    kept = deployment(OWNER, PRIMARY, revision, template, dep["spec"]["replicas"])
    assert content_hash(kept) != content_hash(dep)
    assert not needs_write(kept, live)
    more = copy.deepcopy(kept)
    more["spec"]["replicas"] += 1
    assert needs_write(more, live), "what it does not hold is still written"
    other = deployment(OWNER, PRIMARY, "other", template, dep["spec"]["replicas"])
    assert needs_write(other, live), "another revision is written"


def test_with_applied_hash_copies_and_is_idempotent() -> None:
    obj = rendered()[0]
    before = copy.deepcopy(obj)
    once = with_applied_hash(obj)
    assert obj == before  # the input is left alone
    assert once["metadata"]["annotations"] == {APPLIED_HASH: content_hash(obj)}
    assert with_applied_hash(once) == once
    assert content_hash(once) == content_hash(obj)  # the annotation is not content


def test_with_applied_hash_keeps_other_annotations() -> None:
    obj = rendered()[0]
    obj["metadata"]["annotations"] = {"team": "a"}
    out = with_applied_hash(obj)
    assert out["metadata"]["annotations"]["team"] == "a"
    assert APPLIED_HASH in out["metadata"]["annotations"]


def test_content_hash_ignores_key_order_but_not_values() -> None:
    obj = rendered()[-1]
    reordered = {k: obj[k] for k in reversed(list(obj))}
    assert content_hash(reordered) == content_hash(obj)
    other = copy.deepcopy(obj)
    other["spec"]["replicas"] += 1
    assert content_hash(other) != content_hash(obj)
    assert len(content_hash(obj)) == 16


def test_index_by_name() -> None:
    deps = [o for o in rendered() if o["kind"] == "Deployment"]
    index = index_by_name(deps)
    assert list(index) == ["web-primary", "web-canary"]  # no shadow stage: no -shadow
    assert all(index[d["metadata"]["name"]] is d for d in deps)
    assert index_by_name([]) == {}


labels = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True),
    st.from_regex(r"[a-z0-9]{0,8}", fullmatch=True),
    max_size=4,
)


@given(replicas=st.integers(0, 50), user_labels=labels, image=st.text(min_size=1, max_size=20))
def test_no_write_after_apply_for_any_deployment(
    replicas: int, user_labels: dict[str, str], image: str
) -> None:
    template = image_template(image)
    template["metadata"]["labels"] = user_labels
    dep = deployment(OWNER, CANARY, "r", template, replicas)
    assert not needs_write(dep, as_live(dep))
    assert needs_write(dep, None)


# --------------------------------------------------------------------------- from_live


def live_deployment(
    replicas: int | None = 3,
    revision: str = "rev1",
    generation: int = 2,
    observed: int = 2,
    updated: int = 3,
    available: int = 3,
    total: int = 3,
    name: str = "web-primary",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {
            "metadata": {"labels": {REVISION_LABEL: revision}},
            "spec": TEMPLATE["spec"],
        }
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "metadata": {"name": name, "generation": generation},
        "spec": spec,
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "replicas": total,
        },
    }


def test_workload_of_a_rolled_out_deployment() -> None:
    assert from_live.workload(live_deployment()) == Workload("rev1", 3, True)


def test_no_deployment_no_workload() -> None:
    assert from_live.workload(None) is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"observed": 1}, "the controller has not seen the latest spec"),
        ({"updated": 2}, "an old replica still runs"),
        ({"available": 2}, "a replica is not available"),
        ({"total": 4}, "an extra (old) replica is left"),
    ],
)
def test_workload_not_ready(change: dict[str, int], why: str) -> None:
    w = from_live.workload(live_deployment(**change))
    assert w is not None and not w.ready, why
    assert (w.revision, w.replicas) == ("rev1", 3)


def test_workload_with_more_available_than_asked_is_ready() -> None:
    assert from_live.workload(live_deployment(available=4)) == Workload("rev1", 3, True)


def test_workload_defaults() -> None:
    dep = live_deployment(replicas=None, updated=1, available=1, total=1)
    assert from_live.workload(dep) == Workload("rev1", 1, True)  # replicas default to 1
    dep = live_deployment()
    del dep["status"]
    assert from_live.workload(dep) == Workload("rev1", 3, False)
    dep = live_deployment()
    dep["spec"]["template"]["metadata"] = {}
    assert from_live.workload(dep) == Workload("", 3, True)


def test_a_deployment_scaled_to_zero_is_ready_once_seen() -> None:
    dep = live_deployment(replicas=0, updated=0, available=0, total=0)
    assert from_live.workload(dep) == Workload("rev1", 0, True)
    dep["status"] = {}  # not observed yet
    assert from_live.workload(dep) == Workload("rev1", 0, False)


def test_workloads_by_role() -> None:
    found = from_live.workloads(
        "web",
        [
            live_deployment(name="web-primary", revision="a"),
            live_deployment(name="web-canary", revision="b", replicas=1, updated=1),
            live_deployment(name="other-primary", revision="z"),
        ],
    )
    assert found == {
        PRIMARY: Workload("a", 3, True),
        CANARY: Workload("b", 1, False),
        SHADOW: None,
        BASELINE: None,
        COMPARATOR: None,
    }


def test_a_rendered_deployment_reads_back_as_what_was_rendered() -> None:
    dep = deployment(OWNER, PRIMARY, "rev9", TEMPLATE, 4)
    live = as_live(dep)
    live["status"].update(updatedReplicas=4, availableReplicas=4, replicas=4)
    assert from_live.workload(live) == Workload("rev9", 4, True)


@pytest.mark.parametrize("role", [PRIMARY, CANARY, SHADOW])
def test_user_template_round_trips_through_a_child(role: str) -> None:
    revision = template_revision(TEMPLATE)
    dep = as_live(deployment(OWNER, role, revision, TEMPLATE, 2))
    assert from_live.user_template(dep) == (revision, TEMPLATE)


def test_user_template_of_a_template_without_labels() -> None:
    template = {"metadata": {}, "spec": TEMPLATE["spec"]}
    dep = deployment(OWNER, CANARY, "r", template, 1)
    assert from_live.user_template(dep) == ("r", template)


def test_user_template_needs_a_revision_label() -> None:
    assert from_live.user_template({"spec": {"template": TEMPLATE}}) is None
    assert from_live.user_template({}) is None


@given(user_labels=labels, image=st.text(min_size=1, max_size=20))
def test_user_template_round_trip_keeps_the_revision(
    user_labels: dict[str, str], image: str
) -> None:
    """A template read back from a child renders the same child again, and is the
    user's template (same revision) unless it only differs by an empty label map."""
    spec_raw = spec_dict(image=image)
    spec_raw["template"]["metadata"]["labels"] = user_labels
    spec = ShadowRouteSpec.model_validate(spec_raw)
    revision, template = desired_revision(spec), template_dict(spec)
    for role in (PRIMARY, CANARY, SHADOW):
        dep = deployment(OWNER, role, revision, template, 1)
        found = from_live.user_template(as_live(dep))
        assert found is not None and found[0] == revision
        # Rendered again from what was read back, the child is the same object...
        assert deployment(OWNER, role, revision, found[1], 1) == dep
        if user_labels:
            # ...and the template is the user's, to the hash.
            assert found[1] == template
            assert template_revision(found[1]) == revision


def test_gates_from_annotations() -> None:
    assert from_live.gates(None) == Gates()
    assert from_live.gates({"other": "x"}) == Gates()
    annotations = {
        "shadowroute.io/promote": "t1",
        "shadowroute.io/abort": "t2",
        "shadowroute.io/pause": "t3",
        "shadowroute.io/resume": "t4",
        "shadowroute.io/retry": "t5",
        "shadowroute.io/applied-hash": "ignored",
    }
    assert from_live.gates(annotations) == Gates("t1", "t2", "t3", "t4", "t5")


# ------------------------------------------------------------- drift by hand


def routes_at_step_1(traffic: str) -> list[dict[str, Any]]:
    from shadowroute import traffic as providers

    from .traffic_cases import OWNER as SHOP
    from .traffic_cases import stage_statuses

    spec, status = stage_statuses(traffic)["step-1-weight-10"]
    return [r for r in providers.render_routes(SHOP, spec, status) if providers.is_route(r)]


@pytest.mark.parametrize("traffic", ["gatewayapi", "nginx", "istio"])
def test_routes_as_listed_need_no_write(traffic: str) -> None:
    """A list answer drops apiVersion and kind and the server adds defaults: no write."""
    for route in routes_at_step_1(traffic):
        live = with_applied_hash(route)
        del live["apiVersion"], live["kind"]
        live["metadata"].update(uid="x", resourceVersion="9", creationTimestamp="2026-01-01")
        live["status"] = {"anything": True}
        assert not needs_write(route, live)


def test_a_weight_edited_by_hand_is_put_back() -> None:
    (route,) = routes_at_step_1("gatewayapi")
    live = with_applied_hash(route)
    for rule in live["spec"]["rules"]:
        for ref in rule.get("backendRefs", []):
            ref.setdefault("group", "")  # server defaults do not count...
            ref.setdefault("kind", "Service")
    assert not needs_write(route, live)
    weighted = next(r for r in live["spec"]["rules"] if len(r.get("backendRefs", [])) == 2)
    weighted["backendRefs"][1]["weight"] = 100  # ...a hand edit does
    assert needs_write(route, live)


def test_an_nginx_annotation_edited_by_hand_is_put_back() -> None:
    canary = next(r for r in routes_at_step_1("nginx") if r["metadata"]["name"].endswith("canary"))
    live = with_applied_hash(canary)
    live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
    assert not needs_write(canary, live)
    live["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] = "100"
    assert needs_write(canary, live)


def test_a_service_selector_must_match_exactly() -> None:
    svc = next(o for o in rendered() if o["kind"] == "Service")
    live = as_live(svc)
    for port in live["spec"]["ports"]:
        port.setdefault("protocol", "TCP")
    assert not needs_write(svc, live)
    live["spec"]["selector"]["track"] = "debug"  # one more key selects other pods
    assert needs_write(svc, live)
    del live["spec"]["selector"]["track"]
    live["spec"]["ports"].append({"port": 9999})  # a port added by hand
    assert needs_write(svc, live)


@given(st.sampled_from(["gatewayapi", "nginx", "istio"]), st.data())
def test_any_value_changed_in_a_route_is_noticed(traffic: str, data: st.DataObject) -> None:
    """Whatever leaf of a route we set is changed, the route is written again."""
    route = data.draw(st.sampled_from(routes_at_step_1(traffic)))
    leaves = list(_leaf_paths(route["spec"]))
    path = data.draw(st.sampled_from(leaves))
    live = with_applied_hash(route)
    parent = live["spec"]
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = "changed" if parent[path[-1]] != "changed" else "other"
    assert needs_write(route, live)


def _leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> Any:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaf_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaf_paths(v, (*path, i))
    else:
        yield path


def test_planned_write_is_what_the_reconciler_applies() -> None:
    """plan dry-runs exactly this body and force: a create without force, an update
    with it, nothing when the live object is current."""
    from shadowroute.render import diff as d

    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"a": 1}}
    body, force = d.planned_write(obj, None)
    assert force is False and body["metadata"]["annotations"][d.APPLIED_HASH]
    live = d.with_applied_hash(obj)
    assert d.planned_write(obj, live) is None
    changed = {**obj, "spec": {"a": 2}}
    assert d.planned_write(changed, live)[1] is True
