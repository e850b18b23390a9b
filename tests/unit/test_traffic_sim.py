"""The traffic simulator reads the weights the way each data plane would: checked on
the golden route objects of every provider (whose headers state the intended weight
and mirror), plus its latency profile and its exported series."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from . import hack_scripts

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "unit" / "golden" / "traffic"


sim = hack_scripts.load("traffic_sim")

CASES = sorted(
    p for p in GOLDEN.glob("*/*.yaml") if p.parent.name != "none" and p.stem != "preview"
)


def header(path: Path) -> tuple[int, int]:
    weight, mirror = re.search(r"weight=(\d+) mirror=(\d+)", path.read_text()).groups()
    return int(weight), int(mirror)


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_split_read_from_each_provider_matches_the_intent(path: Path) -> None:
    weight, mirror = header(path)
    objects = [o for o in yaml.safe_load_all(path.read_text()) if o]
    provider = path.parent.name
    if provider.startswith("gatewayapi"):
        rule = "shop" if provider == "gatewayapi-own-route" else None
        routes = [o for o in objects if o.get("kind") == "HTTPRoute"]
        split = sim.split_gatewayapi("shop", routes[-1], rule)
    elif provider == "nginx":
        by_name = {o["metadata"]["name"]: o for o in objects}
        split = sim.split_nginx("shop", by_name.get("shop"), by_name.get("shop-canary"))
    else:
        split = sim.split_istio("shop", objects[0])
    assert split.shares.get("canary", 0.0) == pytest.approx(weight / 100)
    assert sum(split.shares.values()) == pytest.approx(1.0)
    assert split.mirror == pytest.approx(mirror / 100)


def test_no_route_object_means_no_traffic() -> None:
    assert sim.split_gatewayapi("shop", None, None).shares == {}
    assert sim.split_istio("shop", None).shares == {}
    assert sim.split_nginx("shop", None, None).shares == {}


def pod(role: str, **labels: str) -> dict:
    labels = {"shadowroute.io/name": "shop", "shadowroute.io/role": role, **labels}
    return {"metadata": {"name": f"{role}-x", "labels": labels}}


def test_provider_none_shares_by_the_pods_the_entry_service_selects() -> None:
    live = {"shadowroute.io/live": "true"}
    pods = [pod("primary", **live)] * 3 + [pod("canary", **live)] + [pod("shadow")]
    both = sim.split_none({"shadowroute.io/name": "shop", "shadowroute.io/live": "true"}, pods)
    assert both.shares == {"primary": 0.75, "canary": 0.25}
    primary = sim.split_none(
        {"shadowroute.io/name": "shop", "shadowroute.io/role": "primary"}, pods
    )
    assert primary.shares == {"primary": 1.0}


def test_a_gateway_mirror_fraction_and_the_default_weight() -> None:
    route = {
        "spec": {
            "rules": [
                {
                    "backendRefs": [{"name": "shop-primary"}, {"name": "shop-canary"}],
                    "filters": [
                        {
                            "type": "RequestMirror",
                            "requestMirror": {
                                "backendRef": {"name": "shop-shadow"},
                                "fraction": {"numerator": 1, "denominator": 4},
                            },
                        }
                    ],
                }
            ]
        }
    }
    split = sim.split_gatewayapi("shop", route, None)
    assert split.shares == {"primary": 0.5, "canary": 0.5}  # weight defaults to 1 each
    assert split.mirror == 0.25


def test_latency_profile_goes_through_p50_and_p95() -> None:
    p = sim.Profile.from_annotations(
        {"sim.shadowroute.io/latency-p50": "0.2", "sim.shadowroute.io/latency-p95": "1.0"}
    )
    assert p.latency(0.5) == pytest.approx(0.2)
    assert p.latency(0.95) == pytest.approx(1.0)
    assert sim.Profile.from_annotations({"sim.shadowroute.io/error-rate": "7"}).error_rate == 1.0
    assert sim.Profile.from_annotations({"sim.shadowroute.io/error-rate": "x"}).error_rate == 0.0


def test_exported_counts_are_exact_over_time() -> None:
    from prometheus_client import generate_latest

    exporter = sim.Exporter(["http"])
    state = sim.PodState()
    profile = sim.Profile(error_rate=0.2)
    served = errors = 0
    for _ in range(100):  # 100 ticks of 2.5 requests
        state.requests += 2.5
        n = int(state.requests)
        state.requests -= n
        state.errors += n * profile.error_rate
        e = int(state.errors)
        state.errors -= e
        served, errors = served + n, errors + e
        exporter.record("ns", "shop", "canary", "shop-canary-1", n - e, e, [0.1] * n, False)
    text = generate_latest(exporter.registry).decode()
    assert served == 250 and errors == 50
    labels = 'code="500",method="GET",namespace="ns",pod="shop-canary-1",service="shop-canary"'
    assert f"http_requests_total{{{labels}}} 50.0" in text
    exporter.forget_pods(set())
    assert "shop-canary-1" not in generate_latest(exporter.registry).decode()
