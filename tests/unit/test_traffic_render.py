"""The providers' rendering, as properties: weights, mirror, preview and stickiness
where the intent says and nowhere else; each provider's own rules; a weight change
and a rollback are each one changed object; your HTTPRoute keeps all but our part."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shadowroute import traffic
from shadowroute.api import ShadowRouteSpec, ShadowRouteStatus
from shadowroute.api.models import CookieStickiness
from shadowroute.api_errors import ApiError
from shadowroute.render.diff import needs_write, with_applied_hash
from shadowroute.traffic.intent import cookie_regex, set_cookie
from shadowroute.traffic.none import NOTE, note_approximation

from .traffic_cases import OWNER, TRAFFIC, YOUR_ROUTE, shadow_then_abort, spec_raw, stage_statuses

ROUTED = [name for name, cfg in TRAFFIC.items() if cfg["provider"] != "none"]
OWNED = [name for name in ROUTED if name != "gatewayapi-own-route"]
STAGES = {name: stage_statuses(name) for name in TRAFFIC}
INGRESS_NGINX_BASIC = re.compile(r"^[/\-._~a-zA-Z0-9/:]*$")
"""ingress-nginx's BasicCharsRegex: canary-by-* values outside it are dropped."""
INGRESS_NGINX_SERVER_NAME = re.compile(r"^[/\-._~a-zA-Z0-9/:^$\[\](){}*+?|&=\\]*$")


def render(name: str, stage: str, **kw: Any) -> list[dict[str, Any]]:
    spec, status = STAGES[name][stage]
    return traffic.render_routes(OWNER, spec, status, **kw)


def by_name(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs}


def changed(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[str]:
    """Names of the objects that would be written going from a to b."""
    live = {n: with_applied_hash(o) for n, o in by_name(a).items()}
    return [n for n, o in by_name(b).items() if needs_write(o, live.get(n))]


# --------------------------------------------------------------------------- writes


@pytest.mark.parametrize("name", OWNED)
def test_each_weight_change_is_one_write(name: str) -> None:
    assert len(changed(render(name, "step-1-weight-10"), render(name, "step-2-weight-50"))) == 1


@pytest.mark.parametrize("name", OWNED)
def test_a_rollback_from_a_step_is_one_write(name: str) -> None:
    assert len(changed(render(name, "step-1-weight-10"), render(name, "rolled-back"))) == 1


@pytest.mark.parametrize("name", OWNED)
def test_a_rollback_while_shadowing_is_one_write(name: str) -> None:
    spec = ShadowRouteSpec.model_validate(spec_raw(name))
    before, after = shadow_then_abort(name)
    a = traffic.render_routes(OWNER, spec, before)
    b = traffic.render_routes(OWNER, spec, after)
    assert len(changed(a, b)) == 1
    assert all("mirror" not in json.dumps(o).lower() for o in b)


@pytest.mark.parametrize("name", OWNED)
@pytest.mark.parametrize("stage", ["stable", "step-1-weight-10", "promoted"])
def test_the_same_status_renders_the_same_objects(name: str, stage: str) -> None:
    assert changed(render(name, stage), render(name, stage)) == []


def test_your_route_rollback_is_one_write_of_your_route() -> None:
    at_step = render("gatewayapi-own-route", "step-1-weight-10")[0].apply_to(YOUR_ROUTE)
    assert at_step is not None
    live = copy.deepcopy(YOUR_ROUTE)
    live["spec"]["rules"] = at_step["spec"]["rules"]
    rolled_back = render("gatewayapi-own-route", "rolled-back")[0].apply_to(live)
    assert rolled_back is not None
    assert rolled_back["spec"]["rules"] == YOUR_ROUTE["spec"]["rules"]


# --------------------------------------------------------------------------- intent


@given(
    weight=st.integers(0, 100),
    mirror=st.integers(0, 100),
    stage=st.sampled_from(
        ["Stable", "Shadowing", "Progressing", "Promoting", "Succeeded", "RolledBack"]
    ),
    ready=st.booleans(),
    name=st.sampled_from(OWNED),
)
def test_weights_mirror_preview_and_stickiness_follow_the_status(
    weight: int, mirror: int, stage: str, ready: bool, name: str
) -> None:
    spec = STAGES[name]["stable"][0]
    status = ShadowRouteStatus(
        stage=stage,
        canary_revision="" if stage in ("Stable", "RolledBack") else "0123456789",
        canary_weight=weight,
        mirror_percent=mirror,
        stage_ready_at="2026-11-25T05:00:00Z" if ready else None,
    )
    it = traffic.intent(OWNER, spec, status)
    assert it.primary_weight + it.canary_weight == 100
    assert it.mirroring == (mirror > 0) and it.mirror_percent == mirror
    rollout = stage in ("Progressing", "Promoting")
    assert (it.preview is not None) == (rollout and (weight > 0 or ready or stage == "Promoting"))
    assert (it.stickiness is not None) == (rollout and 0 < weight < 100)
    text = json.dumps(traffic.render_routes(OWNER, spec, status))
    assert ("shop-shadow" in text) == (mirror > 0)
    assert ("preview" in text) == (it.preview is not None)
    assert (it.token in text and it.token != "") == (it.stickiness is not None)


@pytest.mark.parametrize("name", ROUTED)
def test_the_mirror_target_is_a_parameter(name: str) -> None:
    """The comparator will become the mirror target (DESIGN.md)."""
    objs = render(name, "shadow", mirror_target="shop-compare")
    text = json.dumps([dict(o) for o in objs])
    assert "shop-compare" in text and "shop-shadow" not in text


# --------------------------------------------------------------------------- providers


def every_render(names: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (name, stage, obj)
        for name in names
        for stage in STAGES[name]
        for obj in render(name, stage)
    ]


@pytest.mark.parametrize(
    "name,stage,route",
    [c for c in every_render(OWNED) if c[2]["kind"] == "HTTPRoute"],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_httproutes_keep_gateway_api_rules(name: str, stage: str, route: dict) -> None:
    rules = route["spec"]["rules"]
    names = [r["name"] for r in rules]
    assert len(names) == len(set(names)) and rules[-1]["name"] == "weighted"
    assert sum(len(r["matches"]) for r in rules) < 128
    weighted = rules[-1]["backendRefs"]
    assert sum(ref["weight"] for ref in weighted) == 100
    for rule in rules:
        for ref in rule["backendRefs"]:
            assert ref["port"] == 80, "a Service backendRef needs a port"
            types = [f["type"] for f in ref.get("filters", [])]
            assert len(types) == len(set(types))
        for f in rule.get("filters", []):
            if f["type"] == "RequestMirror":
                assert 0 < f["requestMirror"]["percent"] <= 100


@pytest.mark.parametrize(
    "name,stage,vs",
    [c for c in every_render(OWNED) if c[2]["kind"] == "VirtualService"],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_virtual_services_keep_istios_rules(name: str, stage: str, vs: dict) -> None:
    """What Istio's validating webhook would check (it is not installed in tests)."""
    http = vs["spec"]["http"]
    assert len({r["name"] for r in http}) == len(http)
    for route in http:
        weights = [d.get("weight") for d in route["route"]]
        if len(weights) > 1:
            assert sum(weights) == 100
        for match in route.get("match", []):
            for key in match.get("headers", {}):
                assert key == key.lower(), "Istio matches only lowercase header keys"
        if "mirrorPercentage" in route:
            assert 0 < route["mirrorPercentage"]["value"] <= 100 and "mirror" in route
        assert all(d["destination"]["port"]["number"] == 80 for d in route["route"])


@pytest.mark.parametrize(
    "name,stage,ingress",
    [c for c in every_render(["nginx"]) if c[2]["kind"] == "Ingress"],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_ingress_annotations_pass_ingress_nginx_validation(
    name: str, stage: str, ingress: dict
) -> None:
    annotations = ingress["metadata"].get("annotations", {})
    assert all(isinstance(v, str) for v in annotations.values())
    for key in ("canary-by-header", "canary-by-header-value", "canary-by-cookie"):
        value = annotations.get(f"nginx.ingress.kubernetes.io/{key}")
        assert value is None or INGRESS_NGINX_BASIC.match(value.replace(" ", "")), key
    for key in ("mirror-target", "mirror-host"):
        value = annotations.get(f"nginx.ingress.kubernetes.io/{key}")
        assert value is None or INGRESS_NGINX_SERVER_NAME.match(value), key
    canary = ingress["metadata"]["name"].endswith("-canary")
    assert ("nginx.ingress.kubernetes.io/canary" in annotations) == canary
    if canary:
        assert 0 <= int(annotations["nginx.ingress.kubernetes.io/canary-weight"]) <= 100


def test_the_nginx_affinity_cookie_lapses_with_the_rollout() -> None:
    (_, canary) = render("nginx", "step-1-weight-10")
    revision = STAGES["nginx"]["step-1-weight-10"][1].canary_revision
    cookie = canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/session-cookie-name"]
    assert cookie == f"shop-canary-{revision}"


# --------------------------------------------------------------------------- cookies


@given(
    before=st.lists(st.from_regex(r"[a-z]{1,8}=[a-z0-9]{0,8}", fullmatch=True), max_size=3),
    after=st.lists(st.from_regex(r"[a-z]{1,8}=[a-z0-9]{0,8}", fullmatch=True), max_size=3),
    space=st.booleans(),
)
def test_the_cookie_match_finds_the_cookie_anywhere(
    before: list[str], after: list[str], space: bool
) -> None:
    cookie = CookieStickiness(name="shop.canary")
    pattern = re.compile(cookie_regex(cookie, "0123456789"))
    sep = "; " if space else ";"
    header = sep.join([*before, "shop.canary=0123456789", *after])
    assert pattern.fullmatch(header) and pattern.search(header)
    for wrong in ("shop.canary=01234567890", "shopxcanary=0123456789", "shop.canary=9876543210"):
        other = sep.join([*before, wrong, *after])
        assert not pattern.search(other), other


def test_set_cookie_carries_the_revision_and_max_age() -> None:
    cookie = CookieStickiness(name="c", max_age="1h30m")
    assert set_cookie(cookie, "abc") == "c=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=5400"


# --------------------------------------------------------------------------- your route


def edit(stage: str) -> traffic.RuleEdit:
    (obj,) = render("gatewayapi-own-route", stage)
    assert isinstance(obj, traffic.RuleEdit)
    return obj


def test_your_route_changes_only_weights_and_our_mirror() -> None:
    body = edit("shadow").apply_to(YOUR_ROUTE)
    assert body is not None
    assert set(body) == {"apiVersion", "kind", "metadata", "spec"}
    assert body["metadata"] == {
        "name": "storefront",
        "namespace": "store",
        "resourceVersion": "4711",
    }
    assert set(body["spec"]) == {"rules"}, "parentRefs and hostnames stay yours"
    static, shop = body["spec"]["rules"]
    assert static == YOUR_ROUTE["spec"]["rules"][0]
    assert shop["filters"][0] == YOUR_ROUTE["spec"]["rules"][1]["filters"][0]
    assert shop["filters"][1]["requestMirror"]["backendRef"]["name"] == "shop-shadow"
    body = edit("step-1-weight-10").apply_to(YOUR_ROUTE)
    assert body is not None
    assert [ref["weight"] for ref in body["spec"]["rules"][1]["backendRefs"]] == [90, 10]
    assert [f["type"] for f in body["spec"]["rules"][1]["filters"]] == ["RequestHeaderModifier"]


def test_your_route_already_right_is_not_written() -> None:
    assert edit("stable").apply_to(YOUR_ROUTE) is None


def test_your_route_while_shadowing_is_written_once() -> None:
    """The API server fills in the mirror's backendRef group and kind: the route as
    read back after our apply must not look different, or every reconcile writes."""
    body = edit("shadow").apply_to(YOUR_ROUTE)
    assert body is not None
    live = copy.deepcopy(YOUR_ROUTE)
    live["spec"]["rules"] = copy.deepcopy(body["spec"]["rules"])
    for rule in live["spec"]["rules"]:
        for f in rule.get("filters", []):
            if f["type"] == "RequestMirror":
                f["requestMirror"]["backendRef"].update(group="", kind="Service")
    assert edit("shadow").apply_to(live) is None
    stopped = edit("step-1-weight-10").apply_to(live)
    assert stopped is not None, "the mirror defaulted by the server is still ours to remove"
    assert all(f["type"] != "RequestMirror" for f in stopped["spec"]["rules"][1]["filters"])


def test_a_mirror_of_yours_is_kept() -> None:
    live = copy.deepcopy(YOUR_ROUTE)
    theirs = {
        "type": "RequestMirror",
        "requestMirror": {"backendRef": {"name": "audit", "port": 80}},
    }
    live["spec"]["rules"][1]["filters"].append(theirs)
    ours = {
        "type": "RequestMirror",
        "requestMirror": {"backendRef": {"name": "shop-shadow", "port": 80}},
    }
    live["spec"]["rules"][1]["filters"].append(ours)
    body = edit("stable").apply_to(live)
    assert body is not None
    assert theirs in body["spec"]["rules"][1]["filters"]
    assert ours not in body["spec"]["rules"][1]["filters"]


@pytest.mark.parametrize(
    "mutate,reason,says",
    [
        (lambda r: None, "RouteNotFound", "does not exist in namespace store"),
        (
            lambda r: r["spec"]["rules"][1].update(name="web"),
            "RouteInvalid",
            "has no rule named shop; it has static, web",
        ),
        (
            lambda r: r["spec"]["rules"][1]["backendRefs"].pop(),
            "RouteInvalid",
            "must have exactly the backendRefs shop-primary and shop-canary",
        ),
        (
            lambda r: r["spec"]["rules"][1]["backendRefs"].append({"name": "x", "port": 80}),
            "RouteInvalid",
            "it has shop-primary, shop-canary, x",
        ),
        (
            lambda r: r["spec"]["rules"][1]["backendRefs"][1].update(namespace="other"),
            "RouteInvalid",
            "Services in its namespace",
        ),
    ],
)
def test_your_route_not_as_documented_is_an_error(mutate, reason: str, says: str) -> None:
    live: dict[str, Any] | None = copy.deepcopy(YOUR_ROUTE)
    if mutate(live) is None and reason == "RouteNotFound":
        live = None
    with pytest.raises(traffic.RouteError) as error:
        edit("step-1-weight-10").apply_to(live)
    assert error.value.reason == reason and says in error.value.message


# --------------------------------------------------------------------------- the rest


def live_copy(obj: dict[str, Any], uid: str = OWNER.uid) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out.pop("kind"), out.pop("apiVersion")  # list items carry neither
    out["metadata"]["ownerReferences"][0]["uid"] = uid
    return out


def test_stale_routes_are_ours_and_no_longer_rendered() -> None:
    nginx = render("nginx", "stable")
    istio = render("istio", "stable")
    lookalike = live_copy(nginx[1], uid="someone-else")
    lookalike["metadata"]["name"] = "shop-other"
    live = {
        "Ingress": [live_copy(o) for o in nginx] + [lookalike],
        "VirtualService": [live_copy(istio[0])],
    }
    stale = traffic.stale_routes(OWNER, istio, live)
    assert [(o["kind"], o["apiVersion"], o["metadata"]["name"]) for o in stale] == [
        ("Ingress", "networking.k8s.io/v1", "shop"),
        ("Ingress", "networking.k8s.io/v1", "shop-canary"),
    ]
    assert traffic.stale_routes(OWNER, nginx + istio, live) == []


def api_error(status: int, body: Any) -> ApiError:
    exc = ApiError(status=status, reason="x")
    exc.body = body if isinstance(body, str) else json.dumps(body)
    return exc


@pytest.mark.parametrize(
    "exc,reason,says",
    [
        (
            api_error(404, "404 page not found\n"),
            "RouteKindMissing",
            "the API server said: 404 page not found",
        ),
        (
            api_error(
                409,
                {
                    "reason": "Conflict",
                    "message": 'Apply failed with 1 conflict: conflict with "git"',
                },
            ),
            "RouteConflict",
            "HTTPRoute shop is not the operator's to write as it is: "
            'Apply failed with 1 conflict: conflict with "git"',
        ),
        (
            api_error(422, {"reason": "Invalid", "message": "spec.rules: bad"}),
            "RouteInvalid",
            "refused by the API server: spec.rules: bad",
        ),
        (
            api_error(403, {"reason": "Forbidden", "message": "nope"}),
            "RouteForbidden",
            "(see its RBAC): nope",
        ),
        (
            api_error(500, {"reason": "InternalError", "message": "boom"}),
            "RouteApplyFailed",
            "HTTPRoute shop: InternalError: boom",
        ),
    ],
)
def test_route_failures_say_why(exc: ApiError, reason: str, says: str) -> None:
    route = render("gatewayapi", "stable")[0]
    got_reason, message = traffic.route_failure(route, exc)
    assert got_reason == reason and says in message
    assert re.fullmatch(r"[A-Z][A-Za-z]+", got_reason)


def test_a_404_naming_an_object_is_not_a_missing_kind() -> None:
    exc = api_error(404, {"reason": "NotFound", "details": {"name": "shop", "kind": "httproutes"}})
    assert not traffic.kind_missing(exc)
    assert traffic.kind_missing(api_error(404, "404 page not found"))


def test_the_approximation_note_is_idempotent_and_only_for_none() -> None:
    spec, status = STAGES["none"]["step-1-weight-10"]
    status = status.model_copy(deep=True)
    base = status.message.split(NOTE)[0]
    once = status.message  # the stage as a reconcile writes it: the pipeline noted it
    assert once.startswith(base + NOTE) and "1 canary and 4 primary" in once and "~20%" in once
    note_approximation(spec, status)
    assert status.message == once
    note_approximation(spec, status)
    assert status.message == once
    status.canary_weight = 0
    note_approximation(spec, status)
    assert status.message == base
    spec_gw, status_gw = STAGES["gatewayapi"]["step-1-weight-10"]
    status_gw = status_gw.model_copy(deep=True)
    note_approximation(spec_gw, status_gw)
    assert NOTE not in status_gw.message
