"""Batched analysis queries end to end: several routes in analysis at once, on one real
Prometheus fed by the traffic simulator. Their preset checks are asked as one query per
tick per preset (the operator's own counters say so), each route still gets its own
verdict (the breaching one rolls back, the others don't), and the batched query's
answer, split per route, is what each route's own query answers."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from shadowroute.analysis.judge import Sample
from shadowroute.analysis.presets import family_of, preset_queries
from shadowroute.analysis.templates import Context, render
from shadowroute.analysis.union import UNION, key_of
from shadowroute.api.models import MetricConvention, MetricPreset

from .conftest import KubectlFn, OperatorProcess, wait_for
from .test_analysis import ERRORS, P95, analysed, condition, metric, release, rolled_back
from .test_rollout import Route, stable

pytestmark = pytest.mark.e2e

NAMES = ["batch-a", "batch-b", "batch-c", "batch-bad"]
INTERVAL = 2.0
CUSTOM = {
    "name": "served",
    "query": 'sum(rate(http_requests_total{namespace="{{ namespace }}",'
    'service="{{ target }}"}[{{ window }}]))',
    "min": 0,
}
"""A custom template every route shares: asked as one union per tick."""


def counters(op: OperatorProcess) -> dict[str, float]:
    """The operator's query counters, read from its own /metrics on loopback."""
    url = f"http://127.0.0.1:{op.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for name in ("shadowroute_prometheus_asks_total", "shadowroute_prometheus_queries_total"):
        out[name] = sum(
            float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
        )
    return out


def at_time(prometheus: str, query: str, t: float) -> list[dict[str, Any]]:
    data = urllib.parse.urlencode({"query": query, "time": f"{t:.3f}"}).encode()
    with urllib.request.urlopen(f"{prometheus}/api/v1/query", data, timeout=10) as r:
        doc = json.loads(r.read())
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def in_analysis(s: dict[str, Any]) -> bool:
    return s.get("phase") == "Progressing" and condition(s).get("status") == "True"


def test_routes_in_analysis_share_one_query_per_tick_and_keep_their_own_verdicts(
    kubectl: KubectlFn, namespace: str, prometheus: str, operator: OperatorProcess, simulator
) -> None:
    steps = [{"weight": 50, "pause": {"duration": "1h"}}, {"weight": 100}]
    routes = []
    for name in NAMES:
        body = analysed(name, prometheus, [ERRORS, P95, CUSTOM], steps=steps, interval="2s")
        body["spec"]["progressDeadline"] = "30m"
        r = Route(kubectl, namespace, body)
        r.apply()
        routes.append(r)
    for r in routes:
        r.wait("Stable", stable)
    for r in routes:
        bad = r.name == "batch-bad"
        release(r, "registry.example/app:2", **({"error-rate": "0.2"} if bad else {}))
    *healthy, bad = routes
    s = bad.wait("rolled back", rolled_back, timeout=90)
    assert s["rollbackReason"] == "AnalysisFailed" and s["canaryWeight"] == 0
    assert 0.1 <= metric(s, "error-rate")["value"] <= 0.3
    assert 'service="batch-bad-canary"' in metric(s, "error-rate")["query"]
    for r in healthy:
        st = r.wait("analysis passing", in_analysis, timeout=90)
        assert st["canaryWeight"] == 50 and metric(st, "error-rate")["verdict"] == "Pass"
        assert f'service="{r.name}-canary"' in metric(st, "error-rate")["query"]

    # Three routes, each asking 4 queries a tick (error rate, its request count, p95,
    # the custom one): one query per tick for each of the 3 presets' families and one
    # for the custom queries' union, not one per route.
    asked, queried = "shadowroute_prometheus_asks_total", "shadowroute_prometheus_queries_total"
    before = counters(operator)
    t0 = time.monotonic()
    after = wait_for(
        lambda: (c := counters(operator))[asked] - before[asked] >= 3 * 4 * 8 and c,
        60,
        what="eight ticks of asks",
    )
    span = time.monotonic() - t0
    asks, sent = after[asked] - before[asked], after[queried] - before[queried]
    ticks = span / INTERVAL
    print(f"over {span:.1f}s ({ticks:.1f} ticks): {asks:g} asks, {sent:g} queries sent")
    assert asks >= 3 * 4 * (ticks - 2), (asks, ticks)
    assert sent <= 4 * (ticks + 2), (sent, asks, ticks)
    for r in healthy:  # nobody rolled back on the others' data
        assert r.status()["phase"] == "Progressing"
    assert bad.status()["phase"] == "RolledBack"

    # The batched answer, split per route, is each route's own query's answer.
    t = time.time() - 1
    for preset in (MetricPreset.ERROR_RATE, MetricPreset.LATENCY_P95):
        for requests in (False, True):
            keys, own = [], {}
            for r in healthy:
                ctx = Context(
                    namespace=r.ns, name=r.name, primary=f"{r.name}-primary",
                    canary=f"{r.name}-canary", shadow=f"{r.name}-shadow",
                    target=f"{r.name}-canary", revision="x", stable_revision="y",
                    canary_revision="x", interval=INTERVAL, window=5.0,
                )  # fmt: skip
                family, key = family_of(preset, MetricConvention.HTTP, requests, ctx)
                q = preset_queries(preset, MetricConvention.HTTP)
                own[key] = at_time(prometheus, render(q.requests if requests else q.value, ctx), t)
                keys.append(key)
            batched = at_time(prometheus, family.query(keys), t)
            split = family.split(
                Sample(tuple(sorted(x["metric"].items())), float(x["value"][1])) for x in batched
            )
            for key in keys:
                mine = [round(float(x["value"][1]), 9) for x in own[key]]
                got = [round(x.value, 9) for x in split.get(key, ())]
                assert got == mine, (preset, requests, key, got, mine)
                assert mine, f"no data for {key}: the comparison would be empty"


def test_a_union_of_custom_queries_answers_each_as_alone_on_the_real_prometheus(
    prometheus: str,
) -> None:
    """The union form is valid PromQL, and split back it is each member's own answer:
    members with labels, without series, and with quotes to escape; a member answering
    a scalar makes Prometheus refuse the union (the batcher then asks alone)."""
    members = [
        'sum by (job) (up{job=~".+"})',
        "count(up)",
        'sum(up{job="no \\"such\\" job"})',
        "max by (instance, job) (prometheus_build_info)",
    ]
    keys = [key_of(q) for q in members]
    t = time.time() - 1
    split = UNION.split(
        [
            Sample(tuple(sorted(x["metric"].items())), float(x["value"][1]))
            for x in at_time(prometheus, UNION.query(keys), t)
        ],
        keys,
    )
    for key in keys:
        own = sorted(
            (tuple(sorted(x["metric"].items())), float(x["value"][1]))
            for x in at_time(prometheus, key[0], t)
        )
        got = sorted((x.labels, x.value) for x in split.get(key, ()))
        assert got == own, (key, got, own)
    assert split.get(keys[0]) and not split.get(keys[2]), split
    with pytest.raises(urllib.error.HTTPError) as refused:
        at_time(prometheus, UNION.query([*keys, key_of("scalar(count(up))")]), t)
    assert refused.value.code == 400
