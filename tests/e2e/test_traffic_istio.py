"""Istio VirtualServices against the real API server with Istio's CRDs (its
validating webhook is not installed; the unit tests hold the renderer to its rules)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import Cluster, KubectlFn
from .traffic_support import (
    View,
    abort_at_step,
    abort_while_shadowing,
    live,
    make_sr_fixture,  # noqa: F401  (the make_sr fixture)
    sr_body,
    walk,
)

pytestmark = pytest.mark.e2e

TRAFFIC = {
    "provider": "istio",
    "preview": {"header": {"name": "x-preview", "value": "yes"}, "pathPrefix": "/preview"},
    "stickiness": {"cookie": {"name": "shop-canary"}},
}
GATEWAY_TRAFFIC = {
    "provider": "istio",
    "istio": {"hosts": ["shop.example.com"], "gateways": ["istio-ingress/public"], "path": "/api"},
    "stickiness": {"header": {"name": "x-shop-canary"}},
}
TOKEN = re.compile(r"=([0-9a-f]{10})\(")


def view(vs: dict[str, Any]) -> View:
    routes = {route["name"]: route for route in vs["spec"]["http"]}
    weighted = routes["weighted"]
    weights = {d["destination"]["host"]: d.get("weight", 0) for d in weighted["route"]}
    assert sum(weights.values()) == 100, "Istio wants weights that sum to 100"
    mirror = None
    if "mirror" in weighted:
        mirror = (weighted["mirror"]["host"], weighted["mirrorPercentage"]["value"])
    sticky = None
    if "sticky" in routes:
        (match,) = routes["sticky"]["match"][0]["headers"].values()
        found = TOKEN.search(match.get("regex", ""))
        sticky = found.group(1) if found else match.get("exact")
    name = vs["metadata"]["name"]
    return View(
        weights[f"{name}-primary"],
        weights[f"{name}-canary"],
        mirror,
        "preview-header" in routes or "preview-path" in routes,
        sticky,
    )


def test_virtual_service_through_shadow_canary_and_promotion(make_sr, kubectl: KubectlFn) -> None:
    r = make_sr(sr_body("shop", TRAFFIC, shadow={"duration": "6s", "mirrorPercent": 35}))

    def look(stage: str, status: dict[str, Any]) -> None:
        vs = live(kubectl, r.ns, "VirtualService", "shop")
        assert vs["spec"]["hosts"] == ["shop"], "inside the mesh: the entry Service"
        assert "gateways" not in vs["spec"]
        routes = {route["name"]: route for route in vs["spec"]["http"]}
        if stage == "shadow":
            assert routes["weighted"]["mirror"] == {"host": "shop-shadow", "port": {"number": 80}}
        if stage == "step-1":
            assert list(routes) == ["preview-header", "preview-path", "sticky", "weighted"]
            assert routes["preview-path"]["rewrite"] == {"uri": "/"}
            canary = routes["weighted"]["route"][1]
            cookie = canary["headers"]["response"]["add"]["set-cookie"]
            assert cookie.startswith(f"shop-canary={status['canaryRevision']};")
        if stage in ("stable", "promoted", "stable-again"):
            assert list(routes) == ["weighted"]
            assert "mirror" not in routes["weighted"]

    walk(r, lambda: view(live(kubectl, r.ns, "VirtualService", "shop")), 35, look)


def test_gateway_hosts_and_header_stickiness(make_sr, kubectl: KubectlFn) -> None:
    """At a canary step with a Gateway: hosts, gateways, the path and the header token."""
    r = make_sr(sr_body("web", GATEWAY_TRAFFIC))
    r.wait("Stable", lambda s: s.get("phase") == "Stable")
    r.set_image("registry.example/app:2")
    s = r.wait("step 1", lambda s: s.get("phase") == "Paused" and s["canaryWeight"] == 10)
    vs = live(kubectl, r.ns, "VirtualService", "web")
    assert vs["spec"]["hosts"] == ["shop.example.com"]
    assert vs["spec"]["gateways"] == ["istio-ingress/public"]
    routes = {route["name"]: route for route in vs["spec"]["http"]}
    assert routes["sticky"]["match"] == [
        {"uri": {"prefix": "/api"}, "headers": {"x-shop-canary": {"exact": s["canaryRevision"]}}}
    ]
    assert routes["weighted"]["match"] == [{"uri": {"prefix": "/api"}}]
    added = routes["weighted"]["route"][1]["headers"]["response"]["add"]
    assert added == {"x-shop-canary": s["canaryRevision"]}
    assert view(vs) == View(90, 10, None, False, s["canaryRevision"])


def test_abort_at_a_step_is_one_write(make_sr, kubectl: KubectlFn, cluster: Cluster) -> None:
    r = make_sr(sr_body("shop", TRAFFIC))
    writes = abort_at_step(
        r, cluster, lambda: view(live(kubectl, r.ns, "VirtualService", "shop")), ("VirtualService",)
    )
    assert writes == {("MODIFIED", "VirtualService", "shop"): 1}, writes


def test_abort_while_shadowing_is_one_write(make_sr, kubectl: KubectlFn, cluster: Cluster) -> None:
    r = make_sr(sr_body("shop", TRAFFIC, shadow={"duration": "1h", "mirrorPercent": 35}))
    writes = abort_while_shadowing(
        r,
        cluster,
        lambda: view(live(kubectl, r.ns, "VirtualService", "shop")),
        ("VirtualService",),
        35,
    )
    assert writes == {("MODIFIED", "VirtualService", "shop"): 1}, writes
