"""Hypothesis strategies for whole ShadowRoute specs, shared by the unit property tests
and the end-to-end fuzz test.

``raw_specs`` draws camelCase specs over every part of the model (every provider and
its options, canary and blue/green, shadow, analysis with queries and presets,
webhooks, stickiness, preview), with durations drawn from the whole language the
schema's pattern admits: zero, fractions, several terms, and values far past what Go
(and so the API server's CEL) can hold. Not every draw is valid; ``accepted_specs``
keeps those the models accept, which is what the API server accepts (the two are held
to the same rules, tests/unit/test_crd.py and tests/e2e/test_crd_validation.py).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from pydantic import ValidationError
from shadowroute.api import ShadowRouteSpec

UNITS = ("ms", "s", "m", "h")


@st.composite
def durations(draw: st.DrawFn) -> str:
    """Any string the duration pattern admits (at most 32 characters), biased to edges."""
    kind = draw(st.sampled_from(["usual", "usual", "usual", "zero", "edge", "huge", "terms"]))
    if kind == "usual":
        return f"{draw(st.integers(1, 600))}{draw(st.sampled_from(['s', 's', 'm', 'ms']))}"
    if kind == "zero":
        return draw(st.sampled_from(["0s", "0ms", "0h", "0.0m", "0s0ms"]))
    if kind == "edge":
        return draw(
            st.sampled_from(
                ["1s", "999ms", "100ms", "99ms", "5m", "5m1ms", "8760h", "8760h1ms", "8759h60m"]
            )
        )
    if kind == "huge":
        digits = draw(st.integers(6, 28))
        return f"{'9' * digits}{draw(st.sampled_from(UNITS))}"[:32]
    parts = draw(
        st.lists(
            st.tuples(
                st.integers(0, 10**7).map(str),
                st.one_of(st.just(""), st.integers(0, 10**6).map(lambda f: f".{f}")),
                st.sampled_from(UNITS),
            ),
            min_size=1,
            max_size=4,
        )
    )
    text = "".join(w + f + u for w, f, u in parts)
    return text if len(text) <= 32 else parts[0][0] + parts[0][2]


NOWHERE = st.just("http://127.0.0.1:9")
"""A Prometheus that refuses connections at once (the discard port)."""
NAMES = st.from_regex(r"\A[a-z]([a-z0-9-]{0,6}[a-z0-9])?\Z")


def _maybe(draw: st.DrawFn, strategy: st.SearchStrategy[Any]) -> Any:
    return draw(strategy) if draw(st.booleans()) else None


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


@st.composite
def ports(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 3))
    numbers = draw(st.lists(st.integers(1, 65535), min_size=count, max_size=count, unique=True))
    names = draw(st.lists(NAMES, min_size=count, max_size=count, unique=True))
    out = []
    for i, number in enumerate(numbers):
        port: dict[str, Any] = {"port": number}
        if count > 1 or draw(st.booleans()):
            port["name"] = names[i]
        target = draw(st.one_of(st.none(), st.integers(1, 65535), st.just("http")))
        _put(port, "targetPort", target)
        # The first port is TCP most of the time: routes carry HTTP.
        protocol = draw(st.sampled_from(["TCP", "TCP", "TCP", "UDP", "SCTP", None]))
        _put(port, "protocol", protocol)
        _put(port, "appProtocol", _maybe(draw, st.sampled_from(["http", "h2c"])))
        out.append(port)
    return out


@st.composite
def strategies(draw: st.DrawFn, provider: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if provider != "none" and draw(st.booleans()):
        mirror = 100 if provider == "nginx" else draw(st.integers(0, 100))
        out["shadow"] = {"duration": draw(durations()), "mirrorPercent": mirror}
    if draw(st.booleans()):
        weights = sorted(draw(st.sets(st.integers(1, 100), min_size=1, max_size=4)))
        steps = []
        for weight in weights:
            step: dict[str, Any] = {"weight": weight}
            pause = draw(st.sampled_from(["none", "gate", "timed", "timed"]))
            if pause == "gate":
                step["pause"] = {}
            elif pause == "timed":
                step["pause"] = {"duration": draw(durations())}
            steps.append(step)
        out["canary"] = {"steps": steps}
    else:
        out["blueGreen"] = {"previewDuration": draw(durations())} if draw(st.booleans()) else {}
    return out


@st.composite
def traffic(draw: st.DrawFn, provider: str, port_list: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"provider": provider}
    if provider == "none":
        return out
    tcp = [p["port"] for p in port_list if p.get("protocol", "TCP") == "TCP"]
    first_is_tcp = port_list[0].get("protocol", "TCP") == "TCP"
    if tcp and (not first_is_tcp or draw(st.booleans())):
        out["port"] = draw(st.sampled_from(tcp))
    own_route = False
    if provider == "gatewayapi":
        if draw(st.integers(0, 3)) == 0:
            own_route = True
            out["gatewayAPI"] = {"httpRoute": {"name": "yours", "rule": "main"}}
        else:
            section: dict[str, Any] = {"parentRefs": [{"name": "gw"}]}
            _put(section, "hostnames", _maybe(draw, st.just(["shop.example.com"])))
            _put(section, "path", _maybe(draw, st.sampled_from(["/", "/api", "/v1/cart/"])))
            out["gatewayAPI"] = section
    elif provider == "nginx" and draw(st.booleans()):
        section = {}
        _put(section, "host", _maybe(draw, st.just("shop.example.com")))
        _put(section, "path", _maybe(draw, st.just("/shop")))
        out["nginx"] = section
    elif provider == "istio" and draw(st.booleans()):
        out["istio"] = {"hosts": ["shop.example.com"], "gateways": ["mesh"]}
    if not own_route and draw(st.booleans()):
        preview: dict[str, Any] = {"header": {"name": "x-preview", "value": "true"}}
        if provider != "nginx" and draw(st.booleans()):
            preview["pathPrefix"] = "/preview"
        out["preview"] = preview
    if not own_route and draw(st.booleans()):
        if provider == "nginx" or draw(st.booleans()):
            cookie: dict[str, Any] = {"name": "canary"}
            _put(cookie, "maxAge", _maybe(draw, durations()))
            out["stickiness"] = {"cookie": cookie}
        else:
            out["stickiness"] = {"header": {"name": "x-user"}}
    return out


@st.composite
def metrics(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(0, 3))):
        metric: dict[str, Any] = {"name": f"m{i}"}
        if draw(st.booleans()):
            metric["preset"] = draw(st.sampled_from(["error-rate", "latency-p95", "latency-p99"]))
            _put(metric, "convention", _maybe(draw, st.sampled_from(["http", "istio"])))
            _put(metric, "minRequests", _maybe(draw, st.integers(1, 100)))
        else:
            metric["query"] = draw(
                st.sampled_from(
                    [
                        "vector(0)",
                        'sum(rate(http_requests_total{service="{{ target }}"}[{{ window }}]))',
                        "scalar(up{namespace='{{ namespace }}'})",
                    ]
                )
            )
        bounds = draw(st.sampled_from(["min", "max", "both"]))
        if bounds in ("min", "both"):
            metric["min"] = 0
        if bounds in ("max", "both"):
            metric["max"] = draw(st.sampled_from([0.05, 1, 100]))
        metric["noData"] = draw(st.sampled_from(["fail", "hold", "pass"]))
        out.append(metric)
    return out


@st.composite
def analyses(draw: st.DrawFn, prometheus: st.SearchStrategy[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"metrics": draw(metrics())}
    if draw(st.booleans()):
        out["prometheus"] = {"address": draw(prometheus), "timeout": draw(durations())}
    for key in ("interval", "window"):
        _put(out, key, _maybe(draw, durations()))
    _put(out, "failureLimit", _maybe(draw, st.integers(0, 5)))
    if draw(st.booleans()):
        out["unreachable"] = {
            "timeout": draw(durations()),
            "policy": draw(st.sampled_from(["hold", "rollback"])),
        }
    if draw(st.booleans()):
        out["notifications"] = {
            "webhooks": [{"name": "hook", "url": "http://127.0.0.1:9/hook"}],
            "cooldown": draw(durations()),
            "holdAfter": draw(durations()),
        }
    return out


@st.composite
def raw_specs(
    draw: st.DrawFn,
    max_replicas: int = 20,
    prometheus: st.SearchStrategy[str] = NOWHERE,
    image: st.SearchStrategy[str] | None = None,
) -> dict[str, Any]:
    """A camelCase spec as a user might write it; not necessarily a valid one."""
    provider = draw(st.sampled_from(["none", "gatewayapi", "nginx", "istio"]))
    port_list = draw(ports())
    spec: dict[str, Any] = {
        "replicas": draw(st.integers(0, max_replicas)),
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": draw(
                            image if image is not None else st.sampled_from(["web:1", "web:2"])
                        ),
                    }
                ]
            },
        },
        "service": {"ports": port_list},
        "strategy": draw(strategies(provider)),
        "traffic": draw(traffic(provider, port_list)),
    }
    for key in ("progressDeadline", "keepWarm"):
        _put(spec, key, _maybe(draw, durations()))
    if draw(st.booleans()):
        spec["rollback"] = {"cooldown": draw(durations())}
    _put(spec, "paused", _maybe(draw, st.booleans()))
    if draw(st.booleans()):
        spec["analysis"] = draw(analyses(prometheus))
    return spec


def accepted(raw: dict[str, Any]) -> ShadowRouteSpec | None:
    """The spec as the models (and so the API server) accept it, or None."""
    try:
        return ShadowRouteSpec.model_validate(raw)
    except ValidationError:
        return None


def accepted_specs(**kwargs: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Raw specs the models accept."""
    return raw_specs(**kwargs).filter(lambda raw: accepted(raw) is not None)
