"""Rollouts carrying real requests: the operator's HTTPRoute programs a real Envoy
(Envoy Gateway), the pods are real processes, and every verdict comes from what the
load generator's requests saw or from the pods' own counters — never from reading
the weights back from the route.

The shares are checked against a binomial tolerance (4 standard deviations): a 20 %
weight over 400 requests passes between 48 and 112 canary answers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import KubectlFn, OperatorProcess, get_json, wait_for
from .real_traffic import (
    app_route,
    app_template,
    dump,
    hostname,
    load,
    pod_requests,
    served_by,
    within_binomial,
)
from .test_rollout import Route, stable

pytestmark = pytest.mark.e2e

PREVIEW = {"header": {"name": "x-shadowroute-preview", "value": "true"}}


@pytest.fixture
def real_route(kubectl: KubectlFn, namespace: str, operator: OperatorProcess):
    def make(body: dict[str, Any]) -> Route:
        r = Route(kubectl, namespace, body)
        r.apply()
        r.wait("the first version Stable", stable, 120)
        return r

    return make


def release(r: Route, version: str, env: dict[str, str] | None = None) -> None:
    r.body["spec"]["template"] = app_template(r.name, version, env)
    r.apply()


def until_served(host: str, version: str, timeout: float = 60, **options: Any) -> None:
    """Send a trickle of requests until `version` answers one: the gateway has the
    route as the operator last wrote it."""

    def answered() -> bool:
        report = load(host, rate=20, duration=1, **options).run()
        return report.versions.get(version, 0) > 0

    wait_for(answered, timeout, 0.1, f"{version} to answer at {host}")


def test_each_canary_weight_gets_its_share_of_real_requests(real_route, namespace: str) -> None:
    steps = [{"weight": 20, "pause": {}}, {"weight": 50, "pause": {}}]
    r = real_route(app_route("split", namespace, strategy={"canary": {"steps": steps}}))
    host = hostname(r.name, namespace)
    release(r, "v2")
    for step, weight in enumerate((20, 50)):
        r.wait(f"step {step + 1}", lambda s, w=weight: s.get("canaryWeight") == w, 90)
        until_served(host, "v2")
        report = load(host, rate=100, requests=400).run()
        n = report.responses
        canary = report.versions.get("v2", 0)
        assert report.statuses == {200: n} and not report.errors, report.to_text()
        assert within_binomial(canary, n, weight / 100), (
            f"weight {weight}: canary answered {canary} of {n}"
        )
        r.gate("resume")
    r.wait("promoted", stable, 120)
    report = load(host, rate=50, requests=100).run()
    assert report.versions == {"v2": 100}, report.to_text()


def test_shadow_gets_mirrored_copies_and_clients_never_see_its_answers(
    real_route, kubectl: KubectlFn, namespace: str
) -> None:
    shadow = {"duration": "10m", "mirrorPercent": 50}
    strategy = {"shadow": shadow, "canary": {"steps": [{"weight": 50, "pause": {}}]}}
    r = real_route(app_route("mirror", namespace, strategy=strategy))
    host = hostname(r.name, namespace)
    release(r, "v2")
    r.wait("Shadowing with the mirror on", lambda s: s.get("mirrorPercent") == 50, 90)
    service = f"{r.name}-shadow"
    # The mirror is programmed once the shadow counts a copy.
    wait_for(
        lambda: load(host, rate=20, duration=1).run() and pod_requests(kubectl, namespace, service),
        60,
        0.1,
        "the shadow to receive a mirrored copy",
    )
    before = pod_requests(kubectl, namespace, service)
    report = load(host, rate=100, requests=400).run()
    n = report.responses
    assert report.versions == {"v1": n} and report.statuses == {200: n}, report.to_text()
    copies = wait_for(
        lambda: (c := pod_requests(kubectl, namespace, service) - before) >= 0.5 * n * 0.75 and c,
        30,
        0.5,
        "the mirrored copies to be counted",
    )
    assert within_binomial(copies, n, 0.5), f"the shadow got {copies} copies of {n} requests"


def test_preview_header_reaches_the_new_version_and_no_one_else_before_the_switch(
    real_route, namespace: str
) -> None:
    r = real_route(
        app_route(
            "preview",
            namespace,
            strategy={"blueGreen": {}},
            traffic={**app_route("preview", namespace)["spec"]["traffic"], "preview": PREVIEW},
        )
    )
    host = hostname(r.name, namespace)
    release(r, "v2")
    r.wait("waiting for promotion", lambda s: s.get("stage") == "Progressing", 90)
    header = {PREVIEW["header"]["name"]: PREVIEW["header"]["value"]}
    until_served(host, "v2", headers=header)
    previewed = load(host, rate=50, requests=150, headers=header).run()
    plain = load(host, rate=50, requests=150).run()
    assert previewed.versions == {"v2": 150}, previewed.to_text()
    assert plain.versions == {"v1": 150}, plain.to_text()


def test_a_client_the_canary_served_stays_on_it(real_route, namespace: str) -> None:
    traffic = app_route("sticky", namespace)["spec"]["traffic"]
    traffic["stickiness"] = {"cookie": {"name": "sticky-canary", "maxAge": "10m"}}
    steps = [{"weight": 20, "pause": {}}, {"weight": 50, "pause": {}}]
    r = real_route(
        app_route("sticky", namespace, strategy={"canary": {"steps": steps}}, traffic=traffic)
    )
    host = hostname(r.name, namespace)
    release(r, "v2")
    r.wait("step 1", lambda s: s.get("canaryWeight") == 20, 90)
    until_served(host, "v2")
    run = load(host, rate=60, duration=12, clients=20, cookies=True)
    run.start()
    wait_for(lambda: run.snapshot().responses >= 300, 30, 0.2, "300 answers at 20 %")
    r.gate("resume")  # the weight grows to 50 % while the clients keep their cookies
    run.wait(60)
    report = run.stop()
    assert not report.errors and set(report.statuses) == {200}, report.to_text()
    by_client: dict[int, list[str]] = {}
    for rec in sorted(run.records(), key=lambda rec: rec.sent_at):
        by_client.setdefault(rec.client, []).append(rec.version or "")
    on_canary = 0
    for client, versions in by_client.items():
        if "v2" not in versions:
            continue
        on_canary += 1
        after = versions[versions.index("v2") :]
        assert set(after) == {"v2"}, f"client {client} left the canary: {versions}"
    assert on_canary >= 3, f"only {on_canary} of 20 clients ever reached the canary"


def test_after_a_breach_the_canary_serves_no_more_requests(
    real_route, kubectl: KubectlFn, namespace: str, prometheus: str
) -> None:
    analysis = {
        "prometheus": {"address": prometheus},
        "interval": "1s",
        "window": "5s",
        "failureLimit": 0,
        "metrics": [{"name": "errors", "preset": "error-rate", "max": 0.05, "minRequests": 5}],
    }
    steps = [{"weight": 50, "pause": {"duration": "5m"}}]
    r = real_route(
        app_route("breach", namespace, strategy={"canary": {"steps": steps}}, analysis=analysis)
    )
    host = hostname(r.name, namespace)
    run = load(host, rate=50, duration=120)
    run.start()
    try:
        release(r, "v2", {"ERROR_RATE": "0.5"})
        rolled = r.wait("rolled back", lambda s: s.get("phase") == "RolledBack", 120)
        wait_for(
            lambda: _canary_weight(kubectl, namespace, r.name) == 0,
            30,
            0.1,
            "the route's canary weight 0",
        )
        zero_at, sent_at_zero = time.time(), run.snapshot().sent
        # Keep sending a while after the route went back: nothing may reach the canary.
        wait_for(
            lambda: run.snapshot().sent >= sent_at_zero + 150,
            30,
            0.2,
            "150 more requests after the rollback",
        )
    finally:
        run.stop()
    records = run.records()
    assert rolled["history"][0]["reason"] == "AnalysisFailed", rolled["history"][0]
    bad = served_by(records, "v2")
    assert bad, "the bad canary never answered a request"
    first_bad = min(rec.sent_at + rec.latency for rec in records if rec.status >= 500)
    last_canary = max(rec.sent_at + rec.latency for rec in bad)
    late = [rec for rec in bad if rec.sent_at > zero_at + 2.0]
    assert not late, (
        f"the canary answered {len(late)} requests sent 2 s after weight 0:\n{dump(late)}"
    )
    assert last_canary - first_bad < 30, (last_canary, first_bad)


def _canary_weight(kubectl: KubectlFn, namespace: str, name: str) -> int | None:
    route = get_json(kubectl, "httproute", name, "-n", namespace)
    for rule in route["spec"]["rules"]:
        for ref in rule.get("backendRefs") or []:
            if ref["name"] == f"{name}-canary" and "weight" in ref:
                return ref["weight"]
    return None


def test_a_blue_green_switch_and_the_promotion_lose_no_request(real_route, namespace: str) -> None:
    r = real_route(app_route("switch", namespace, strategy={"blueGreen": {}}))
    host = hostname(r.name, namespace)
    release(r, "v2")
    r.wait("waiting for the switch", lambda s: s.get("stage") == "Progressing", 90)
    run = load(host, rate=80, duration=120, clients=4)
    run.start()
    try:
        wait_for(lambda: run.snapshot().responses >= 100, 30, 0.2, "traffic on the blue version")
        r.gate("promote")
        r.wait("switched and promoted", stable, 120)
        mark = run.snapshot().sent
        wait_for(lambda: run.snapshot().sent >= mark + 100, 30, 0.2, "traffic after promotion")
    finally:
        report = run.stop()
    records = run.records()
    assert not report.errors, report.to_text()
    assert set(report.statuses) == {200}, report.to_text()
    versions = [rec.version for rec in sorted(records, key=lambda rec: rec.sent_at)]
    assert versions[0] == "v1" and versions[-1] == "v2", report.to_text()
    assert report.versions.get("v1", 0) >= 100 and report.versions.get("v2", 0) >= 100


def test_a_canary_step_loses_no_request(real_route, namespace: str) -> None:
    r = real_route(app_route("step", namespace))  # one step: 50 %, then a pause
    host = hostname(r.name, namespace)
    # A second rollout: the canary Deployment is there already, scaled to zero.
    release(r, "v2")
    r.wait("step 1 of v2", lambda s: s.get("canaryWeight") == 50, 90)
    r.gate("promote")
    r.wait("v2 promoted", lambda s: stable(s) and s.get("stableRevision"), 120)
    run = load(host, rate=80, duration=120, clients=4)
    run.start()
    try:
        wait_for(lambda: run.snapshot().responses >= 100, 30, 0.2, "traffic on v2")
        release(r, "v3")
        r.wait("step 1 of v3", lambda s: s.get("canaryWeight") == 50, 90)
        wait_for(lambda: run.snapshot().versions.get("v3", 0) >= 100, 30, 0.2, "v3 answering")
    finally:
        report = run.stop()
    assert not report.errors and set(report.statuses) == {200}, report.to_text()
