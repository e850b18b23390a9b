"""ingress-nginx's annotation contract on real Ingress objects, validated by the real
API server (ingress-nginx itself is not installed: no controller reads them here)."""

from __future__ import annotations

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

A = "nginx.ingress.kubernetes.io/"
TRAFFIC = {
    "provider": "nginx",
    "nginx": {"ingressClassName": "nginx", "host": "shop.example.com"},
    "preview": {"header": {"name": "x-preview", "value": "yes"}},
    "stickiness": {"cookie": {"name": "shop-canary", "maxAge": "30m"}},
}


def view(stable: dict[str, Any], canary: dict[str, Any]) -> View:
    s, c = stable["metadata"].get("annotations", {}), canary["metadata"].get("annotations", {})
    assert c[f"{A}canary"] == "true", "the canary Ingress is always marked"
    assert f"{A}canary" not in s
    weight = int(c[f"{A}canary-weight"])
    mirror = None
    if f"{A}mirror-target" in s:
        host = s[f"{A}mirror-target"].removeprefix("http://").split(".")[0]
        mirror = (host, 100)  # ingress-nginx mirrors every request
    sticky = None
    if f"{A}session-cookie-name" in c:
        sticky = c[f"{A}session-cookie-name"].removeprefix("shop-canary-")
    return View(100 - weight, weight, mirror, f"{A}canary-by-header" in c, sticky)


def backend(ingress: dict[str, Any]) -> str:
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    return path["backend"]["service"]["name"]


def test_ingress_pair_through_shadow_canary_and_promotion(make_sr, kubectl: KubectlFn) -> None:
    r = make_sr(sr_body("shop", TRAFFIC, shadow={"duration": "6s", "mirrorPercent": 100}))

    def pair() -> tuple[dict[str, Any], dict[str, Any]]:
        return live(kubectl, r.ns, "Ingress", "shop"), live(kubectl, r.ns, "Ingress", "shop-canary")

    def look(stage: str, status: dict[str, Any]) -> None:
        stable, canary = pair()
        assert backend(stable) == "shop-primary" and backend(canary) == "shop-canary"
        for ing in (stable, canary):
            assert ing["spec"]["ingressClassName"] == "nginx"
            assert ing["spec"]["rules"][0]["host"] == "shop.example.com"
        s, c = stable["metadata"].get("annotations", {}), canary["metadata"]["annotations"]
        if stage == "shadow":
            assert s[f"{A}mirror-target"] == (
                f"http://shop-shadow.{r.ns}.svc.cluster.local:80$request_uri"
            )
            assert s[f"{A}mirror-host"] == "shop.example.com"
        if stage == "step-1":
            assert c[f"{A}canary-by-header"] == "x-preview"
            assert c[f"{A}canary-by-header-value"] == "yes"
            assert c[f"{A}canary-by-cookie"] == "shop-canary"
            assert c[f"{A}affinity"] == "cookie"
            assert c[f"{A}affinity-canary-behavior"] == "sticky"
            assert c[f"{A}session-cookie-max-age"] == "1800"
        if stage in ("stable", "promoted", "stable-again"):
            assert set(c) - {"shadowroute.io/applied-hash"} == {f"{A}canary", f"{A}canary-weight"}
            assert not any(k.startswith(A) for k in s)

    walk(r, lambda: view(*pair()), 100, look)


def test_abort_at_a_step_is_one_write(make_sr, kubectl: KubectlFn, cluster: Cluster) -> None:
    r = make_sr(sr_body("shop", TRAFFIC))

    def read() -> View:
        return view(
            live(kubectl, r.ns, "Ingress", "shop"), live(kubectl, r.ns, "Ingress", "shop-canary")
        )

    writes = abort_at_step(r, cluster, read, ("Ingress",))
    assert writes == {("MODIFIED", "Ingress", "shop-canary"): 1}, writes


def test_abort_while_shadowing_is_one_write(make_sr, kubectl: KubectlFn, cluster: Cluster) -> None:
    r = make_sr(sr_body("shop", TRAFFIC, shadow={"duration": "1h", "mirrorPercent": 100}))

    def read() -> View:
        return view(
            live(kubectl, r.ns, "Ingress", "shop"), live(kubectl, r.ns, "Ingress", "shop-canary")
        )

    writes = abort_while_shadowing(r, cluster, read, ("Ingress",), 100)
    assert writes == {("MODIFIED", "Ingress", "shop"): 1}, writes
