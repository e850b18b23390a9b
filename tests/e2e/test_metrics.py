"""The operator's /metrics scraped by the real Prometheus: a rollout that is promoted
and one that is aborted show up as the counters, gauges and histograms the dashboard
and the alert rules read; and the dashboard's queries return data."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from .conftest import Cluster, KubectlFn, OperatorProcess, wait_for
from .test_chart import dashboard_queries, prometheus_query
from .test_rollout import Route, route, stable

pytestmark = pytest.mark.e2e


def value(cluster: Cluster, expr: str) -> float | None:
    answer = prometheus_query(cluster, expr)
    assert answer.get("status") == "success", (expr, answer)
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@pytest.fixture
def scraped(cluster: Cluster, own_namespace: str, crds_installed: None, tmp_path: Path):
    """An operator of its own for this namespace, registered as a Prometheus target."""
    assert cluster.prometheus and cluster.prometheus_targets, "no Prometheus to scrape with"
    op = OperatorProcess(cluster.kubeconfig, tmp_path, "--namespace", own_namespace)
    op.start()
    job = f"shadowroute-test-{uuid.uuid4().hex[:8]}"
    target = cluster.prometheus_targets / f"{job}.json"
    partial = target.with_suffix(".tmp")  # Prometheus reads *.json: write, then rename
    partial.write_text(
        json.dumps([{"targets": [f"127.0.0.1:{op.metrics_port}"], "labels": {"job": job}}])
    )
    partial.rename(target)
    try:
        wait_for(
            lambda: value(cluster, f'up{{job="{job}"}}') == 1,
            30,
            0.5,
            "Prometheus scraping the operator",
        )
        yield op, job
    finally:
        target.unlink(missing_ok=True)
        op.stop()


def test_prometheus_scrapes_rollout_metrics(
    scraped, cluster: Cluster, kubectl: KubectlFn, own_namespace: str
) -> None:
    namespace = own_namespace  # the scraped operator's alone
    op, job = scraped
    sel = f'job="{job}",namespace="{namespace}",name="metered"'
    r = Route(
        kubectl,
        namespace,
        route("metered", steps=[{"weight": 40, "pause": {}}, {"weight": 80}], keepWarm="3s"),
    )
    r.apply()
    r.wait("Stable", stable)
    r.set_image("registry.example/app:2")
    r.wait("waiting at 40%", lambda s: s.get("waitingForPromotion") and s["canaryWeight"] == 40)
    # Prometheus sees the weight and the phase while the rollout holds.
    wait_for(
        lambda: value(cluster, f"shadowroute_canary_weight_percent{{{sel}}}") == 40,
        20,
        0.5,
        "weight 40",
    )
    wait_for(
        lambda: value(cluster, f'shadowroute_route_phase{{{sel},phase="Paused"}}') == 1,
        20,
        0.5,
        "Paused",
    )
    assert value(cluster, f'shadowroute_rollouts{{job="{job}",phase="Paused"}}') == 1
    r.gate("promote")
    r.wait("promoted", lambda s: stable(s) and s["history"][0]["outcome"] == "Promoted", timeout=60)
    r.set_image("registry.example/app:3")
    r.wait("waiting again", lambda s: s.get("waitingForPromotion"))
    r.gate("abort")
    r.wait("RolledBack", lambda s: s.get("phase") == "RolledBack")

    wait_for(
        lambda: value(cluster, f'shadowroute_rollbacks_total{{{sel},reason="Aborted"}}') == 1,
        20, 0.5, "the rollback counted",
    )  # fmt: skip
    assert value(cluster, f"shadowroute_promotions_total{{{sel}}}") == 1
    assert value(cluster, f'shadowroute_route_phase{{{sel},phase="RolledBack"}}') == 1
    assert value(cluster, f"shadowroute_canary_weight_percent{{{sel}}}") == 0
    assert value(cluster, f"max_over_time(shadowroute_canary_weight_percent{{{sel}}}[5m])") == 100
    assert value(cluster, f'shadowroute_build_info{{job="{job}"}}') == 1
    assert value(cluster, f'sum(shadowroute_reconcile_duration_seconds_count{{job="{job}"}})') > 5
    assert value(cluster, f'shadowroute_api_writes_total{{job="{job}",kind="Deployment"}}') >= 3
    assert value(cluster, f'sum(shadowroute_api_writes_total{{job="{job}",kind="Event"}})') >= 5
    # Nothing failed, and the health endpoints answer.
    assert value(cluster, f'sum(shadowroute_reconcile_errors_total{{job="{job}"}})') in (None, 0)
    assert op.metrics()
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}{path}", timeout=5) as resp:
            assert resp.status == 200


def test_prometheus_scrapes_shadow_and_analysis_metrics(
    scraped, cluster: Cluster, kubectl: KubectlFn, own_namespace: str
) -> None:
    namespace = own_namespace  # the scraped operator's alone
    """While shadowing with an analysis against the real Prometheus: the mirror percent,
    each metric's last value and verdict, and the operator's own query timings and
    errors (a query Prometheus refuses) reach Prometheus."""
    _, job = scraped
    sel = f'job="{job}",namespace="{namespace}",name="watched"'
    body = route("watched", strategy={
        "shadow": {"duration": "10m", "mirrorPercent": 40},
        "canary": {"steps": [{"weight": 50}]},
    })  # fmt: skip
    body["spec"]["traffic"] = {  # a provider that can mirror
        "provider": "gatewayapi",
        "gatewayAPI": {"parentRefs": [{"name": "gateway"}], "hostnames": ["watched.example"]},
    }
    body["spec"]["analysis"] = {
        "prometheus": {"address": cluster.prometheus},
        "interval": "1s",
        "failureLimit": 100,
        "metrics": [
            {"name": "level", "query": "vector(0.25)", "max": 1},
            {"name": "refused", "query": "sum(rate(nothing[1m])", "max": 1},
        ],
    }
    r = Route(kubectl, namespace, body)
    r.apply()
    r.wait("Stable", stable)
    r.set_image("registry.example/app:2")
    r.wait("shadowing", lambda s: s.get("phase") == "Shadowing" and s["mirrorPercent"] == 40)
    wait_for(
        lambda: value(cluster, f"shadowroute_mirror_percent{{{sel}}}") == 40, 20, 0.5, "mirror 40"
    )
    wait_for(
        lambda: value(cluster, f'shadowroute_analysis_value{{{sel},metric="level"}}') == 0.25,
        20, 0.5, "the metric's value",
    )  # fmt: skip
    verdict = f'shadowroute_analysis_verdict{{{sel},metric="%s",verdict="%s"}}'
    assert value(cluster, verdict % ("level", "Pass")) == 1
    assert value(cluster, verdict % ("refused", "Inconclusive")) == 1
    assert value(cluster, f'shadowroute_analysis_value{{{sel},metric="refused"}}') is None
    queries = f'shadowroute_prometheus_query_duration_seconds_count{{job="{job}"}}'
    assert value(cluster, queries) >= 2
    refused = f'shadowroute_prometheus_query_errors_total{{job="{job}",reason="InvalidQuery"}}'
    assert value(cluster, refused) >= 1
    runs = f'sum(shadowroute_analysis_runs_total{{job="{job}"}})'
    assert value(cluster, runs) >= 1
    assert r.status()["phase"] == "Shadowing", "a check without an answer never advances"


def test_dashboard_panels_have_data(
    scraped, cluster: Cluster, kubectl: KubectlFn, own_namespace: str
) -> None:
    namespace = own_namespace  # the scraped operator's alone
    """Each query of the dashboard's core panels returns series from a live operator."""
    _, job = scraped
    r = Route(kubectl, namespace, route("panel"))
    r.apply()
    r.wait("Stable", stable)
    wait_for(
        lambda: value(cluster, f'shadowroute_route_phase{{job="{job}",phase="Stable"}}') == 1,
        20, 0.5, "the route scraped",
    )  # fmt: skip
    time.sleep(2)  # rate() over the dashboard's 1m window needs two samples
    empty = []
    for expr in dashboard_queries():
        if any(
            word in expr
            for word in ("analysis", "prometheus_query", "rollbacks", "promotions", "errors")
        ):
            continue  # only after analysis runs, a rollout ends, or something fails
        if not prometheus_query(cluster, expr)["data"]["result"]:
            empty.append(expr)
    assert not empty, empty
