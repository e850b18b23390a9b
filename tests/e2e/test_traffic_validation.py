"""Traffic combinations a provider cannot carry are refused at `kubectl apply`, with
an error that names the field; the same table is replayed against the pydantic
models by tests/unit/test_traffic_models.py (the CEL rules and their Python twins)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e

Manifest = dict[str, Any]


def manifest(traffic: dict[str, Any], shadow: dict[str, Any] | None = None) -> Manifest:
    strategy: dict[str, Any] = {"canary": {"steps": [{"weight": 10}, {"weight": 50}]}}
    if shadow is not None:
        strategy["shadow"] = shadow
    return {
        "apiVersion": "shadowroute.io/v1alpha1",
        "kind": "ShadowRoute",
        "metadata": {"name": "web"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "app", "image": "web:1"}]}},
            "service": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            "strategy": strategy,
            "traffic": traffic,
        },
    }


GATEWAY = {"provider": "gatewayapi", "gatewayAPI": {"parentRefs": [{"name": "public"}]}}
YOURS = {"provider": "gatewayapi", "gatewayAPI": {"httpRoute": {"name": "site", "rule": "web"}}}
NGINX = {"provider": "nginx", "nginx": {"host": "web.example.com"}}
ISTIO = {"provider": "istio"}
PREVIEW = {"header": {"name": "x-preview", "value": "yes"}}
COOKIE = {"cookie": {"name": "web-canary"}}
HEADER = {"header": {"name": "x-web-canary"}}
SHADOW = {"duration": "5m", "mirrorPercent": 50}


def with_(base: dict[str, Any], **more: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out.update(copy.deepcopy(more))
    return out


def without_traffic(m: Manifest) -> Manifest:
    """Traffic left out: the schema's default, provider none, applies."""
    del m["spec"]["traffic"]
    return m


def udp_first(m: Manifest) -> Manifest:
    m["spec"]["service"]["ports"] = [{"name": "dns", "port": 53, "protocol": "UDP"}]
    return m


@dataclass(frozen=True)
class Case:
    """A manifest the API server must refuse, and what its error must say."""

    id: str
    make: Callable[[], Manifest]
    field: str
    """The field the error names (kubectl prints it before the message)."""
    says: str
    """A fragment of the message; for our CEL rules also the models' message."""
    schema_only: bool = False
    """True when the refusal is the schema's own wording (a pattern, a size), not a
    message of ours that the Python twin repeats word for word."""


INVALID: list[Case] = [
    Case(
        "shadow-with-none",
        lambda: manifest({"provider": "none"}, SHADOW),
        "spec.strategy.shadow",
        "spec.strategy.shadow needs a traffic provider that can mirror requests",
    ),
    Case(
        "shadow-with-default-provider",
        lambda: without_traffic(manifest({}, SHADOW)),
        "spec.strategy.shadow",
        "spec.traffic.provider none moves whole requests between pods",
    ),
    Case(
        "nginx-mirror-percent",
        lambda: manifest(NGINX, SHADOW),
        "spec.strategy.shadow.mirrorPercent",
        "spec.strategy.shadow.mirrorPercent must be 100 with spec.traffic.provider nginx",
    ),
    Case(
        "gatewayapi-without-section",
        lambda: manifest({"provider": "gatewayapi"}),
        "spec.traffic.gatewayAPI",
        "spec.traffic.gatewayAPI is required with provider gatewayapi",
    ),
    Case(
        "section-of-another-provider",
        lambda: manifest(with_(ISTIO, nginx={"host": "web.example.com"})),
        "spec.traffic.nginx",
        "spec.traffic.nginx is set but spec.traffic.provider is not nginx",
    ),
    Case(
        "istio-section-with-gatewayapi",
        lambda: manifest(with_(GATEWAY, istio={"hosts": ["web.example.com"]})),
        "spec.traffic.istio",
        "spec.traffic.istio is set but spec.traffic.provider is not istio",
    ),
    Case(
        "gateway-section-with-none",
        lambda: manifest({"provider": "none", "gatewayAPI": GATEWAY["gatewayAPI"]}),
        "spec.traffic.gatewayAPI",
        "spec.traffic.gatewayAPI is set but spec.traffic.provider is not gatewayapi",
    ),
    Case(
        "preview-with-none",
        lambda: manifest({"provider": "none", "preview": PREVIEW}),
        "spec.traffic.preview",
        "spec.traffic.preview needs a provider that routes by header or path",
    ),
    Case(
        "stickiness-with-none",
        lambda: manifest({"provider": "none", "stickiness": COOKIE}),
        "spec.traffic.stickiness",
        "spec.traffic.stickiness needs a provider that routes by cookie or header",
    ),
    Case(
        "port-with-none",
        lambda: manifest({"provider": "none", "port": 80}),
        "spec.traffic.port",
        "spec.traffic.port is for the route of a provider",
    ),
    Case(
        "nginx-preview-path",
        lambda: manifest(with_(NGINX, preview={"pathPrefix": "/preview"})),
        "spec.traffic.preview.pathPrefix",
        "spec.traffic.preview.pathPrefix is not supported with provider nginx",
    ),
    Case(
        "nginx-header-stickiness",
        lambda: manifest(with_(NGINX, stickiness=HEADER)),
        "spec.traffic.stickiness.header",
        "spec.traffic.stickiness.header is not supported with provider nginx",
    ),
    Case(
        "your-route-with-preview",
        lambda: manifest(with_(YOURS, preview=PREVIEW)),
        "spec.traffic.preview",
        "spec.traffic.preview is not supported with spec.traffic.gatewayAPI.httpRoute",
    ),
    Case(
        "your-route-with-stickiness",
        lambda: manifest(with_(YOURS, stickiness=COOKIE)),
        "spec.traffic.stickiness",
        "spec.traffic.stickiness is not supported with spec.traffic.gatewayAPI.httpRoute",
    ),
    Case(
        "parent-refs-and-your-route",
        lambda: manifest(
            with_(
                GATEWAY,
                gatewayAPI={"parentRefs": [{"name": "p"}], "httpRoute": {"name": "s", "rule": "r"}},
            )
        ),
        "spec.traffic.gatewayAPI",
        "exactly one of spec.traffic.gatewayAPI.parentRefs",
    ),
    Case(
        "neither-parent-refs-nor-your-route",
        lambda: manifest(with_(GATEWAY, gatewayAPI={"hostnames": ["web.example.com"]})),
        "spec.traffic.gatewayAPI",
        "exactly one of spec.traffic.gatewayAPI.parentRefs",
    ),
    Case(
        "your-route-with-hostnames",
        lambda: manifest(
            with_(
                YOURS,
                gatewayAPI={"httpRoute": {"name": "s", "rule": "r"}, "hostnames": ["a.example"]},
            )
        ),
        "spec.traffic.gatewayAPI",
        "hostnames and path belong to your HTTPRoute",
    ),
    Case(
        "empty-parent-refs",
        lambda: manifest(with_(GATEWAY, gatewayAPI={"parentRefs": []})),
        "spec.traffic.gatewayAPI.parentRefs",
        "should have at least 1 items",
        schema_only=True,
    ),
    Case(
        "stickiness-cookie-and-header",
        lambda: manifest(with_(ISTIO, stickiness={**COOKIE, **HEADER})),
        "spec.traffic.stickiness",
        "exactly one of spec.traffic.stickiness.cookie and spec.traffic.stickiness.header",
    ),
    Case(
        "stickiness-empty",
        lambda: manifest(with_(ISTIO, stickiness={})),
        "spec.traffic.stickiness",
        "exactly one of spec.traffic.stickiness.cookie and spec.traffic.stickiness.header",
    ),
    Case(
        "preview-empty",
        lambda: manifest(with_(ISTIO, preview={})),
        "spec.traffic.preview",
        "spec.traffic.preview needs a header, a pathPrefix or both",
    ),
    Case(
        "preview-value-with-space",
        lambda: manifest(with_(ISTIO, preview={"header": {"name": "x-p", "value": "a b"}})),
        "spec.traffic.preview.header.value",
        "should match",
        schema_only=True,
    ),
    Case(
        "header-name-uppercase",
        lambda: manifest(with_(ISTIO, preview={"header": {"name": "X-Preview", "value": "1"}})),
        "spec.traffic.preview.header.name",
        "should match",
        schema_only=True,
    ),
    Case(
        "preview-path-root",
        lambda: manifest(with_(ISTIO, preview={"pathPrefix": "/"})),
        "spec.traffic.preview.pathPrefix",
        "should match",
        schema_only=True,
    ),
    Case(
        "path-with-dot-dot",
        lambda: manifest(with_(ISTIO, istio={"path": "/api/../admin"})),
        "spec.traffic.istio.path",
        "should match",
        schema_only=True,
    ),
    Case(
        "port-not-a-service-port",
        lambda: manifest(with_(ISTIO, port=8080)),
        "spec.traffic.port",
        "spec.traffic.port must be the port of a TCP entry of spec.service.ports",
    ),
    Case(
        "first-port-udp",
        lambda: udp_first(manifest(ISTIO)),
        "spec.traffic.port",
        "spec.traffic.port is required when the first port of spec.service.ports is not TCP",
    ),
    Case(
        "istio-gateways-without-hosts",
        lambda: manifest(with_(ISTIO, istio={"gateways": ["istio-ingress/public"]})),
        "spec.traffic.istio",
        "spec.traffic.istio.hosts is required with spec.traffic.istio.gateways",
    ),
    Case(
        "nginx-tls-without-host",
        lambda: manifest({"provider": "nginx", "nginx": {"tlsSecretName": "web-tls"}}),
        "spec.traffic.nginx",
        "spec.traffic.nginx.tlsSecretName needs spec.traffic.nginx.host",
    ),
    Case(
        "hostname-uppercase",
        lambda: manifest(
            with_(GATEWAY, gatewayAPI={**GATEWAY["gatewayAPI"], "hostnames": ["Web.Example.com"]})
        ),
        "spec.traffic.gatewayAPI.hostnames[0]",
        "should match",
        schema_only=True,
    ),
    Case(
        "cookie-name-too-long",
        lambda: manifest(with_(ISTIO, stickiness={"cookie": {"name": "c" * 49}})),
        "spec.traffic.stickiness.cookie.name",
        "Too long",
        schema_only=True,
    ),
    Case(
        "cookie-max-age-in-days",
        lambda: manifest(with_(ISTIO, stickiness={"cookie": {"name": "c", "maxAge": "1d"}})),
        "spec.traffic.stickiness.cookie.maxAge",
        "should match",
        schema_only=True,
    ),
    Case(
        "misspelled-section",
        lambda: manifest({"provider": "gatewayapi", "gatewayApi": {"parentRefs": [{"name": "p"}]}}),
        'unknown field "spec.traffic.gatewayApi"',
        "",
        schema_only=True,
    ),
]

VALID: dict[str, Callable[[], Manifest]] = {
    "gatewayapi-everything": lambda: manifest(
        with_(
            GATEWAY,
            port=80,
            gatewayAPI={
                "parentRefs": [{"name": "public", "namespace": "gw", "sectionName": "https"}],
                "hostnames": ["web.example.com", "*.web.example.com"],
                "path": "/shop/",
            },
            preview={**PREVIEW, "pathPrefix": "/preview"},
            stickiness={"cookie": {"name": "web.canary", "maxAge": "1h30m"}},
        ),
        SHADOW,
    ),
    "gatewayapi-your-route": lambda: manifest(YOURS, SHADOW),
    "nginx-everything": lambda: manifest(
        with_(
            NGINX,
            nginx={
                "ingressClassName": "nginx",
                "host": "web.example.com",
                "path": "/",
                "tlsSecretName": "web-tls",
                "clusterDomain": "corp.internal",
            },
            preview=PREVIEW,
            stickiness=COOKIE,
        ),
        {"duration": "1m", "mirrorPercent": 100},
    ),
    "istio-everything": lambda: manifest(
        with_(
            ISTIO,
            istio={"hosts": ["web.example.com"], "gateways": ["mesh", "gw/public"], "path": "/a"},
            preview={"pathPrefix": "/preview/v2"},
            stickiness=HEADER,
        ),
        SHADOW,
    ),
    "none-canary": lambda: manifest({"provider": "none"}),
}


def _apply(kubectl, make: Callable[[], Manifest], namespace: str):
    obj = make()
    obj["metadata"]["namespace"] = namespace
    return kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-",
        input=yaml.safe_dump(obj), check=False,
    )  # fmt: skip


@pytest.mark.parametrize("case", INVALID, ids=[c.id for c in INVALID])
def test_refused_naming_the_field(case: Case, kubectl, namespace: str, crds_installed) -> None:
    result = _apply(kubectl, case.make, namespace)
    assert result.returncode != 0, f"the API server accepted {case.id}"
    assert case.field in result.stderr, result.stderr
    assert case.says in result.stderr, result.stderr


@pytest.mark.parametrize("make", VALID.values(), ids=list(VALID))
def test_accepted(make, kubectl, namespace: str, crds_installed) -> None:
    result = _apply(kubectl, make, namespace)
    assert result.returncode == 0, result.stderr
