"""Shared cases for the traffic tests: one ShadowRoute per provider configuration, and
the status of each stage of a rollout, reached by driving the real state machine
(tests/unit/sim.py) rather than by writing statuses by hand."""

from __future__ import annotations

import copy
from typing import Any

from shadowroute.api import ShadowRouteSpec, ShadowRouteStatus
from shadowroute.names import Owner

from .sim import Sim, spec_dict

OWNER = Owner("shadowroute.io/v1alpha1", "ShadowRoute", "shop", "store", "uid-shop")

STEPS = [
    {"weight": 10, "pause": {"duration": "1m"}},
    {"weight": 50, "pause": {"duration": "1m"}},
]
SHADOW = {"duration": "1m", "mirrorPercent": 50}

PREVIEW = {"header": {"name": "x-shadowroute-preview", "value": "true"}, "pathPrefix": "/preview"}
COOKIE = {"cookie": {"name": "shop-canary", "maxAge": "1h"}}
HEADER = {"header": {"name": "x-shop-canary"}}

TRAFFIC: dict[str, dict[str, Any]] = {
    "gatewayapi": {
        "provider": "gatewayapi",
        "gatewayAPI": {
            "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
            "hostnames": ["shop.example.com"],
        },
        "preview": PREVIEW,
        "stickiness": COOKIE,
    },
    "gatewayapi-header": {
        "provider": "gatewayapi",
        "gatewayAPI": {"parentRefs": [{"name": "internal"}], "path": "/api"},
        "preview": {"header": PREVIEW["header"]},
        "stickiness": HEADER,
    },
    "gatewayapi-own-route": {
        "provider": "gatewayapi",
        "gatewayAPI": {"httpRoute": {"name": "storefront", "rule": "shop"}},
    },
    "nginx": {
        "provider": "nginx",
        "nginx": {
            "ingressClassName": "nginx",
            "host": "shop.example.com",
            "tlsSecretName": "shop-tls",
        },
        "preview": {"header": PREVIEW["header"]},
        "stickiness": COOKIE,
    },
    "istio": {
        "provider": "istio",
        "preview": PREVIEW,
        "stickiness": COOKIE,
    },
    "istio-gateway": {
        "provider": "istio",
        "istio": {
            "hosts": ["shop.example.com"],
            "gateways": ["istio-ingress/public"],
            "path": "/api",
        },
        "preview": {"pathPrefix": "/preview"},
        "stickiness": HEADER,
    },
    "none": {"provider": "none"},
}

YOUR_ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "storefront", "namespace": "store", "resourceVersion": "4711"},
    "spec": {
        "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}],
        "hostnames": ["store.example.com"],
        "rules": [
            {
                "name": "static",
                "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                "backendRefs": [
                    {"group": "", "kind": "Service", "name": "cdn", "port": 80, "weight": 1}
                ],
            },
            {
                "name": "shop",
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"set": [{"name": "x-team", "value": "shop"}]},
                    }
                ],
                "backendRefs": [
                    {
                        "group": "",
                        "kind": "Service",
                        "name": "shop-primary",
                        "port": 80,
                        "weight": 100,
                    },
                    {
                        "group": "",
                        "kind": "Service",
                        "name": "shop-canary",
                        "port": 80,
                        "weight": 0,
                    },
                ],
            },
        ],
    },
}
"""A user-owned HTTPRoute as the API server returns it (defaults filled in)."""


def spec_raw(traffic: str, blue_green: bool = False) -> dict[str, Any]:
    """The spec of a case, as a user would write it (camelCase)."""
    mirrors = TRAFFIC[traffic]["provider"] != "none"
    shadow = copy.deepcopy(SHADOW) if mirrors else None
    if shadow is not None and TRAFFIC[traffic]["provider"] == "nginx":
        shadow["mirrorPercent"] = 100  # ingress-nginx mirrors every request
    return spec_dict(
        replicas=4,
        image="shop:1",
        steps=copy.deepcopy(STEPS),
        shadow=shadow,
        blue_green={"previewDuration": "1m"} if blue_green else None,
        traffic=copy.deepcopy(TRAFFIC[traffic]),
    )


def stage_statuses(traffic: str) -> dict[str, tuple[ShadowRouteSpec, ShadowRouteStatus]]:
    """The spec and status at every stage of a rollout of shop:2 (and a blue/green
    preview), keyed by stage name."""
    out: dict[str, tuple[ShadowRouteSpec, ShadowRouteStatus]] = {}
    shadowing = TRAFFIC[traffic]["provider"] != "none"

    sim = Sim(spec_raw(traffic)).stable()
    out["stable"] = (sim.spec, sim.status.model_copy(deep=True))
    sim.set_image("shop:2")
    if shadowing:
        sim.run_until(lambda s: s.status.stage == "Shadowing" and s.status.mirror_percent > 0)
        out["shadow"] = (sim.spec, sim.status.model_copy(deep=True))
    sim.run_until(lambda s: s.status.stage == "Progressing" and s.status.canary_weight == 10)
    out["step-1-weight-10"] = (sim.spec, sim.status.model_copy(deep=True))
    at_step_1 = copy.deepcopy(sim)
    sim.run_until(
        lambda s: s.status.stage == "Progressing" and s.status.canary_weight == 50, seconds=10
    )
    out["step-2-weight-50"] = (sim.spec, sim.status.model_copy(deep=True))
    sim.run_until(lambda s: s.status.stage == "Succeeded", seconds=10)
    out["promoted"] = (sim.spec, sim.status.model_copy(deep=True))

    at_step_1.gate("abort")
    at_step_1.tick()
    assert at_step_1.status.stage == "RolledBack"
    out["rolled-back"] = (at_step_1.spec, at_step_1.status.model_copy(deep=True))

    bg = Sim(spec_raw(traffic, blue_green=True)).stable()
    bg.set_image("shop:2")
    bg.run_until(lambda s: s.status.stage == "Progressing" and s.status.stage_ready_at is not None)
    out["preview"] = (bg.spec, bg.status.model_copy(deep=True))
    return out


def shadow_then_abort(traffic: str) -> tuple[ShadowRouteStatus, ShadowRouteStatus]:
    """The status while shadowing, and right after an abort there."""
    sim = Sim(spec_raw(traffic)).stable()
    sim.set_image("shop:2")
    sim.run_until(lambda s: s.status.stage == "Shadowing" and s.status.mirror_percent > 0)
    before = sim.status.model_copy(deep=True)
    sim.gate("abort")
    sim.tick()
    assert sim.status.stage == "RolledBack"
    return before, sim.status.model_copy(deep=True)
