"""A route changed by hand is put back at once: the operator watches its routes, and
any value it set (a weight, an annotation) that differs is written again, in one
write, with no tug of war afterwards."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from . import test_traffic_gatewayapi as gatewayapi
from . import test_traffic_istio as istio
from . import test_traffic_nginx as nginx
from .conftest import Cluster, KubectlFn
from .traffic_support import (
    ROUTE_RESOURCES,
    RouteWrites,
    View,
    at_step,
    live,
    make_sr_fixture,  # noqa: F401  (the make_sr fixture)
    sr_body,
    stable,
    wait_for,
)

pytestmark = pytest.mark.e2e


def all_to_canary(rules: str, refs: str) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    """The JSON patch of someone sending everything to the canary by hand: weights of
    the rule named "weighted" (in spec.<rules>, its backends in <refs>) set 0 / 100."""

    def ops(route: dict[str, Any]) -> list[dict[str, Any]]:
        i = next(i for i, rule in enumerate(route["spec"][rules]) if rule["name"] == "weighted")
        base = f"/spec/{rules}/{i}/{refs}"
        return [
            {"op": "replace", "path": f"{base}/0/weight", "value": 0},
            {"op": "replace", "path": f"{base}/1/weight", "value": 100},
        ]

    return ops


def canary_weight_100(_: dict[str, Any]) -> list[dict[str, Any]]:
    key = nginx.A.replace("/", "~1") + "canary-weight"
    return [{"op": "replace", "path": f"/metadata/annotations/{key}", "value": "100"}]


CASES: dict[str, tuple[dict[str, Any], str, str, Callable[[dict[str, Any]], Any]]] = {
    # provider: (traffic, the route edited by hand, its name, the edit)
    "gatewayapi": (gatewayapi.TRAFFIC, "HTTPRoute", "shop", all_to_canary("rules", "backendRefs")),
    "nginx": (nginx.TRAFFIC, "Ingress", "shop-canary", canary_weight_100),
    "istio": (istio.TRAFFIC, "VirtualService", "shop", all_to_canary("http", "route")),
}


def read_view(kubectl: KubectlFn, ns: str, provider: str) -> View:
    if provider == "gatewayapi":
        return gatewayapi.view(live(kubectl, ns, "HTTPRoute", "shop"))
    if provider == "istio":
        return istio.view(live(kubectl, ns, "VirtualService", "shop"))
    return nginx.view(
        live(kubectl, ns, "Ingress", "shop"), live(kubectl, ns, "Ingress", "shop-canary")
    )


@pytest.mark.parametrize("provider", sorted(CASES))
def test_a_weight_changed_by_hand_is_put_back(
    provider: str, make_sr, kubectl: KubectlFn, cluster: Cluster
) -> None:
    traffic, kind, name, edit = CASES[provider]
    r = make_sr(sr_body("shop", traffic))
    r.wait("Stable", stable)
    r.set_image("registry.example/app:2")
    r.wait("step 1 at 10%", at_step(0, 10), timeout=90)
    intended = read_view(kubectl, r.ns, provider)
    assert (intended.primary, intended.canary) == (90, 10)

    ops = edit(live(kubectl, r.ns, kind, name))
    with RouteWrites(cluster, r.ns, (kind,)) as writes:
        kubectl(
            "patch", ROUTE_RESOURCES[kind], name, "-n", r.ns, "--type=json",
            "--field-manager=someone-by-hand", "-p", json.dumps(ops),
        )  # fmt: skip
        wait_for(lambda: read_view(kubectl, r.ns, provider) == intended, 15, what="put back")
        time.sleep(3)  # and then nothing more: no tug of war
    assert writes.count() == {("MODIFIED", kind, name): 2}, writes.count()
    assert r.status()["phase"] == "Paused", "a hand edit is not a reason to move the rollout"
