"""Gateway API against the real API server with the real Gateway API CRDs (v1.4
standard channel): the owned HTTPRoute through a whole rollout and two aborts, and
one rule of a user's HTTPRoute managed beside a second field manager."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from .conftest import Cluster, KubectlFn
from .traffic_support import (
    AT_REST,
    View,
    abort_at_step,
    abort_while_shadowing,
    at_step,
    live,
    make_sr_fixture,  # noqa: F401  (the make_sr fixture)
    sr_body,
    stable,
    walk,
)

pytestmark = pytest.mark.e2e

TRAFFIC = {
    "provider": "gatewayapi",
    "gatewayAPI": {
        "parentRefs": [{"name": "public", "sectionName": "http"}],
        "hostnames": ["shop.example.com"],
    },
    "preview": {"header": {"name": "x-preview", "value": "yes"}, "pathPrefix": "/preview"},
    "stickiness": {"cookie": {"name": "shop-canary"}},
}
TOKEN = re.compile(r"=([0-9a-f]{10})\(")


def view(route: dict[str, Any]) -> View:
    rules = {rule["name"]: rule for rule in route["spec"]["rules"]}
    weighted = rules["weighted"]
    weights = {ref["name"]: ref["weight"] for ref in weighted["backendRefs"]}
    mirrors = [
        f["requestMirror"] for f in weighted.get("filters", []) if f["type"] == "RequestMirror"
    ]
    sticky = None
    if "sticky" in rules:
        header = rules["sticky"]["matches"][0]["headers"][0]
        found = TOKEN.search(header["value"])
        sticky = found.group(1) if found else header["value"]
    name = route["metadata"]["name"]
    return View(
        weights[f"{name}-primary"],
        weights[f"{name}-canary"],
        (mirrors[0]["backendRef"]["name"], mirrors[0]["percent"]) if mirrors else None,
        "preview-header" in rules or "preview-path" in rules,
        sticky,
    )


def test_owned_route_through_shadow_canary_and_promotion(make_sr, kubectl: KubectlFn) -> None:
    r = make_sr(sr_body("shop", TRAFFIC, shadow={"duration": "6s", "mirrorPercent": 40}))

    def read() -> View:
        return view(live(kubectl, r.ns, "HTTPRoute", "shop"))

    def look(stage: str, status: dict[str, Any]) -> None:
        route = live(kubectl, r.ns, "HTTPRoute", "shop")
        assert route["spec"]["parentRefs"][0]["name"] == "public"
        assert route["spec"]["hostnames"] == ["shop.example.com"]
        owner = route["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("ShadowRoute", "shop", True)
        rules = {rule["name"]: rule for rule in route["spec"]["rules"]}
        if stage == "shadow":
            mirror = rules["weighted"]["filters"][0]["requestMirror"]
            assert mirror["backendRef"] == {
                "group": "",
                "kind": "Service",
                "name": "shop-shadow",
                "port": 80,
            }
        if stage == "step-1":
            assert list(rules) == ["preview-header", "preview-path", "sticky", "weighted"]
            preview = rules["preview-header"]["matches"][0]["headers"]
            assert preview == [{"name": "x-preview", "type": "Exact", "value": "yes"}]
            rewrite = rules["preview-path"]["filters"][0]["urlRewrite"]["path"]
            assert rewrite == {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}
            canary = rules["weighted"]["backendRefs"][1]
            cookie = canary["filters"][0]["responseHeaderModifier"]["add"][0]
            assert cookie["name"] == "Set-Cookie"
            assert cookie["value"].startswith(f"shop-canary={status['canaryRevision']};")
        if stage in ("stable", "promoted", "stable-again"):
            assert list(rules) == ["weighted"]

    walk(r, read, 40, look)


def test_abort_at_a_step_is_one_write(make_sr, kubectl: KubectlFn, cluster: Cluster) -> None:
    r = make_sr(sr_body("shop", TRAFFIC))
    writes = abort_at_step(
        r, cluster, lambda: view(live(kubectl, r.ns, "HTTPRoute", "shop")), ("HTTPRoute",)
    )
    assert writes == {("MODIFIED", "HTTPRoute", "shop"): 1}, writes


def test_abort_while_shadowing_is_one_write(make_sr, kubectl: KubectlFn, cluster: Cluster) -> None:
    body = sr_body("shop", TRAFFIC, shadow={"duration": "1h", "mirrorPercent": 25})
    r = make_sr(body)
    writes = abort_while_shadowing(
        r, cluster, lambda: view(live(kubectl, r.ns, "HTTPRoute", "shop")), ("HTTPRoute",), 25
    )
    assert writes == {("MODIFIED", "HTTPRoute", "shop"): 1}, writes


# --------------------------------------------------------------------------- your route

YOUR_TRAFFIC = {
    "provider": "gatewayapi",
    "gatewayAPI": {"httpRoute": {"name": "storefront", "rule": "shop"}},
}


def your_route(namespace: str, hostname: str, weights: tuple[int, int] = (100, 0)) -> dict:
    """The HTTPRoute as its owner (Git) writes it: the operator must keep all of it
    but the weights of rule "shop"."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "storefront", "namespace": namespace, "labels": {"team": "web"}},
        "spec": {
            "parentRefs": [{"name": "public"}],
            "hostnames": [hostname],
            "rules": [
                {
                    "name": "static",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                    "backendRefs": [{"name": "cdn", "port": 80}],
                },
                {
                    "name": "shop",
                    "backendRefs": [
                        {"name": "shop-primary", "port": 80, "weight": weights[0]},
                        {"name": "shop-canary", "port": 80, "weight": weights[1]},
                    ],
                },
            ],
        },
    }


def gitops_apply(kubectl: KubectlFn, obj: dict, *extra: str, check: bool = True):
    return kubectl(
        "apply", "--server-side", "--field-manager=gitops", *extra, "-f", "-",
        input=yaml.safe_dump(obj), check=check,
    )  # fmt: skip


def your_view(route: dict[str, Any]) -> View:
    rules = {rule["name"]: rule for rule in route["spec"]["rules"]}
    shop = rules["shop"]
    weights = {ref["name"]: ref["weight"] for ref in shop["backendRefs"]}
    mirrors = [f["requestMirror"] for f in shop.get("filters", []) if f["type"] == "RequestMirror"]
    return View(
        weights["shop-primary"],
        weights["shop-canary"],
        (mirrors[0]["backendRef"]["name"], mirrors[0]["percent"]) if mirrors else None,
    )


def owners(route: dict[str, Any]) -> dict[str, set[str]]:
    """Which manager owns which top-level spec field (server-side apply's record)."""
    out: dict[str, set[str]] = {}
    for entry in route["metadata"]["managedFields"]:
        spec = entry.get("fieldsV1", {}).get("f:spec", {})
        out.setdefault(entry["manager"], set()).update(k.removeprefix("f:") for k in spec)
    return out


def test_your_route_keeps_everything_but_the_weights(make_sr, kubectl: KubectlFn) -> None:
    """gitops owns the route; the operator owns only what it must. Gateway API's
    spec.rules is an atomic list, so that is the whole rules list: shown here, with
    what Git can and cannot do while a rollout holds it."""
    body = sr_body("shop", YOUR_TRAFFIC, shadow={"duration": "6s", "mirrorPercent": 30})
    r = make_sr(body)
    gitops_apply(kubectl, your_route(r.ns, "shop.example.com"))

    def get() -> dict[str, Any]:
        return json.loads(
            kubectl(
                "get", "httproute", "storefront", "-n", r.ns, "-o", "json",
                "--show-managed-fields",
            ).stdout
        )  # fmt: skip

    r.wait("Stable", stable)
    route = get()
    assert your_view(route) == AT_REST
    assert owners(route) == {"gitops": {"parentRefs", "hostnames", "rules"}}, "no write at rest"
    assert "ownerReferences" not in route["metadata"], "your route is never garbage-collected"

    r.set_image("registry.example/app:2")
    r.wait("shadowing", lambda s: s.get("phase") == "Shadowing" and s["mirrorPercent"] == 30)
    route = get()
    assert your_view(route) == View(100, 0, ("shop-shadow", 30))
    assert owners(route) == {
        "gitops": {"parentRefs", "hostnames"},
        "shadowroute-operator": {"rules"},
    }
    static = route["spec"]["rules"][0]
    assert static["name"] == "static" and static["backendRefs"][0]["name"] == "cdn"

    # Git re-applies its manifest with a new hostname: refused, because its rules
    # (weights 100/0, no mirror) would undo the rollout's and the operator owns them now.
    refused = gitops_apply(kubectl, your_route(r.ns, "shop2.example.com"), check=False)
    assert refused.returncode != 0
    assert (
        'conflict with "shadowroute-operator"' in refused.stderr and ".spec.rules" in refused.stderr
    )

    r.wait("step 1 at 10%", at_step(0, 10), timeout=90)
    # What works: Git applies the rules exactly as they are live (Argo CD's
    # RespectIgnoreDifferences does that for ignored fields): equal values are co-owned,
    # so the rest of its manifest goes in without a conflict.
    route = get()
    mine = your_route(r.ns, "shop2.example.com")
    mine["spec"]["rules"] = route["spec"]["rules"]
    gitops_apply(kubectl, mine)
    route = get()
    assert route["spec"]["hostnames"] == ["shop2.example.com"]
    assert your_view(route) == View(90, 10)
    assert owners(route)["gitops"] == {"parentRefs", "hostnames", "rules"}
    assert owners(route)["shadowroute-operator"] == {"rules"}, "co-owned"
    # Changing another rule means a different rules value: only with force, which hands
    # the whole list to Git. Carrying the live weights, that loses nothing.
    mine["spec"]["rules"][0]["matches"][0]["path"]["value"] = "/assets"
    gitops_apply(kubectl, mine, "--force-conflicts")
    route = get()
    assert your_view(route) == View(90, 10)
    assert owners(route) == {"gitops": {"parentRefs", "hostnames", "rules"}}

    r.gate("resume")
    r.wait("step 2 at 50%", at_step(1, 50))
    route = get()
    assert your_view(route) == View(50, 50)
    assert route["spec"]["hostnames"] == ["shop2.example.com"], "Git's change is kept"
    assert route["spec"]["rules"][0]["matches"][0]["path"]["value"] == "/assets"
    assert route["metadata"]["labels"] == {"team": "web"}
    assert owners(route) == {
        "gitops": {"parentRefs", "hostnames"},
        "shadowroute-operator": {"rules"},
    }, "the operator's next weight change took the rules back, Git's change included"

    r.gate("resume")
    r.wait("promoted", lambda s: s.get("phase") == "Succeeded", timeout=60)
    assert your_view(get()) == View(0, 100)
    r.wait("stable on the new version", stable, timeout=60)
    route = get()
    assert your_view(route) == AT_REST
    assert [rule["name"] for rule in route["spec"]["rules"]] == ["static", "shop"]


def test_your_route_abort_is_one_write(make_sr, kubectl: KubectlFn, cluster: Cluster) -> None:
    r = make_sr(sr_body("shop", YOUR_TRAFFIC))
    gitops_apply(kubectl, your_route(r.ns, "shop.example.com"))
    writes = abort_at_step(
        r,
        cluster,
        lambda: your_view(live(kubectl, r.ns, "HTTPRoute", "storefront")),
        ("HTTPRoute",),
    )
    assert writes == {("MODIFIED", "HTTPRoute", "storefront"): 1}, writes
    assert live(kubectl, r.ns, "HTTPRoute", "storefront")["spec"]["hostnames"] == [
        "shop.example.com"
    ]


def test_your_route_without_the_rule_is_degraded(make_sr, kubectl: KubectlFn) -> None:
    r = make_sr(sr_body("shop", YOUR_TRAFFIC))

    def degraded(reason: str):
        return lambda s: any(
            c["type"] == "Degraded" and c["status"] == "True" and c["reason"] == reason
            for c in s.get("conditions", [])
        )

    s = r.wait("the route is missing", degraded("RouteNotFound"))
    message = next(c["message"] for c in s["conditions"] if c["type"] == "Degraded")
    assert "HTTPRoute storefront" in message and "spec.traffic.gatewayAPI.httpRoute" in message

    mine = your_route(r.ns, "shop.example.com")
    mine["spec"]["rules"][1]["name"] = "web"
    gitops_apply(kubectl, mine)
    s = r.wait("the rule is missing", degraded("RouteInvalid"), timeout=30)
    message = next(c["message"] for c in s["conditions"] if c["type"] == "Degraded")
    assert "no rule named shop" in message and "static, web" in message
    events = kubectl(
        "get", "events.events.k8s.io", "-n", r.ns,
        "--field-selector", "reason=RouteInvalid", "-o", "json",
    )  # fmt: skip
    assert json.loads(events.stdout)["items"], "a Warning Event says so too"

    mine["spec"]["rules"][1]["name"] = "shop"
    gitops_apply(kubectl, mine)
    r.wait("healed", lambda s: stable(s) and not degraded("RouteInvalid")(s), timeout=30)
