"""Analysis end to end: the real operator asks a real Prometheus, which scrapes the
traffic simulator, which reads the routes the operator wrote. Nothing here is a fake:
a version with 20 % errors gets real 5xx counters, Prometheus computes the rate, and
the operator rolls it back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .analysis_support import OwnPrometheus, Receiver, free_port
from .conftest import Cluster, KubectlFn, OperatorProcess, get_json, wait_for
from .test_rollout import Route, route, stable

pytestmark = pytest.mark.e2e

HEALTHY = {"error-rate": "0", "latency-p50": "0.05", "latency-p95": "0.1"}
STEPS = [{"weight": 20, "pause": {"duration": "2s"}}, {"weight": 50, "pause": {"duration": "2s"}}]
ERRORS = {"name": "error-rate", "preset": "error-rate", "max": 0.05, "minRequests": 5}
P95 = {"name": "p95", "preset": "latency-p95", "max": 0.5}
GATEWAY = {"provider": "gatewayapi", "gatewayAPI": {"parentRefs": [{"name": "gw"}]}}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def make_route(kubectl: KubectlFn, namespace: str, operator: OperatorProcess, simulator):
    def make(body: dict[str, Any]) -> Route:
        r = Route(kubectl, namespace, body)
        r.apply()
        r.wait("Stable", stable)
        return r

    return make


def analysed(
    name: str,
    prometheus: str,
    metrics: list[dict[str, Any]],
    steps: list[dict[str, Any]] | None = None,
    failure_limit: int = 1,
    interval: str = "1s",
    **analysis: Any,
) -> dict[str, Any]:
    body = route(name, steps=steps or STEPS)
    body["spec"]["template"]["metadata"]["annotations"] = profile()
    body["spec"]["keepWarm"] = "3s"
    body["spec"]["analysis"] = {
        "prometheus": {"address": prometheus},
        "interval": interval,
        "window": "5s",
        "failureLimit": failure_limit,
        "metrics": metrics,
        **analysis,
    }
    return body


def profile(**changes: str) -> dict[str, str]:
    return {f"sim.shadowroute.io/{k}": v for k, v in {**HEALTHY, **changes}.items()}


def release(r: Route, image: str, **changes: str) -> None:
    """A new version with its own behaviour (error rate, latency) under load."""
    r.body["spec"]["template"]["metadata"]["annotations"] = profile(**changes)
    r.set_image(image)


def condition(s: dict[str, Any], type_: str = "AnalysisHealthy") -> dict[str, Any]:
    return next((c for c in s.get("conditions") or [] if c["type"] == type_), {})


def metric(s: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in s["analysis"]["metrics"] if m["name"] == name)


def events(kubectl: KubectlFn, ns: str, reason: str) -> list[dict[str, Any]]:
    items = get_json(kubectl, "events.events.k8s.io", "-n", ns)["items"]
    return [e for e in items if e.get("reason") == reason]


def rolled_back(s: dict[str, Any]) -> bool:
    return s.get("phase") == "RolledBack"


def promoted(s: dict[str, Any]) -> bool:
    return stable(s) and bool(s.get("history")) and s["history"][0]["outcome"] == "Promoted"


# --------------------------------------------------------------------------- healthy


def test_a_healthy_version_is_promoted_through_every_step(
    make_route: Callable[..., Route], prometheus: str, receiver: Receiver
) -> None:
    body = analysed("healthy", prometheus, [ERRORS, P95])
    body["spec"]["traffic"] = GATEWAY  # the simulator follows the HTTPRoute's weights
    body["spec"]["analysis"]["notifications"] = {
        "webhooks": [{"name": "ops", "url": f"{receiver.url}/json"}]
    }
    r = make_route(body)
    release(r, "registry.example/app:2")
    seen: list[tuple[int, str]] = []

    def record(s: dict[str, Any]) -> bool:
        seen.append((s.get("canaryWeight", 0), condition(s).get("status", "")))
        return promoted(s)

    s = r.wait("promoted", record, timeout=90)
    weights = [w for w, _ in seen]
    assert 20 in weights and 50 in weights, weights
    assert weights.index(50) > weights.index(20)
    # Each step was left only on passing checks: at 50 % the analysis was never False
    # (Unknown while its window still held the 20 % step: PartialWindow).
    assert all(c in ("True", "Unknown") for w, c in seen if w == 50), seen
    assert any(c == "True" for w, c in seen if w == 50), seen
    assert condition(s)["status"] == "True" and condition(s)["reason"] == "AnalysisPassed"
    assert metric(s, "error-rate")["verdict"] == "Pass" and metric(s, "error-rate")["value"] == 0
    assert 0 < metric(s, "p95")["value"] <= 0.5
    assert 'service="healthy-canary"' in metric(s, "p95")["query"]
    sent = wait_for(lambda: receiver.bodies("/json"), 15, what="the Promoted webhook")
    assert sent[0]["kind"] == "Promoted" and sent[0]["name"] == "healthy"
    assert sent[0]["revision"] == s["stableRevision"]


# --------------------------------------------------------------------------- bad versions


def test_twenty_percent_errors_on_the_canary_roll_it_back(
    make_route: Callable[..., Route], prometheus: str, receiver: Receiver, kubectl: KubectlFn
) -> None:
    # Every convention's error-rate preset reads the same traffic; http decides.
    others = [
        {"name": f"errors-{c}", "preset": "error-rate", "convention": c, "max": 1}
        for c in ("istio", "linkerd", "nginx")
    ]
    body = analysed("errors", prometheus, [ERRORS, *others])
    body["spec"]["analysis"]["notifications"] = {
        "webhooks": [
            {"name": "ops", "url": f"{receiver.url}/json"},
            {"name": "chat", "type": "slack", "urlSecretRef": {"name": "hooks", "key": "slack"}},
        ]
    }
    r = make_route(body)
    kubectl(
        "create", "secret", "generic", "hooks", "-n", r.ns,
        f"--from-literal=slack={receiver.url}/slack",
    )  # fmt: skip
    old = r.status()["stableRevision"]
    release(r, "registry.example/app:2", **{"error-rate": "0.2"})
    s = r.wait("rolled back", rolled_back, timeout=60)
    assert s["canaryWeight"] == 0 and s["stableRevision"] == old
    assert s["rollbackReason"] == "AnalysisFailed"
    entry = s["history"][0]
    assert entry["outcome"] == "RolledBack" and entry["reason"] == "AnalysisFailed"
    # The reason names the metric, the value and the query as sent.
    assert "error-rate = 0.2" in entry["message"] or "error-rate = 0.1" in entry["message"]
    assert "above max 0.05" in entry["message"]
    assert 'service="errors-canary"' in entry["message"]
    for m in s["analysis"]["metrics"]:
        assert 0.15 <= m.get("value", -1) <= 0.25, m
    assert condition(s)["status"] == "False" and condition(s)["reason"] == "AnalysisFailed"
    assert events(kubectl, r.ns, "AnalysisFailed"), "a Warning Event says why"
    wait_for(lambda: r.replicas("canary") == 0, 30, what="canary scaled down")
    json_doc = wait_for(lambda: receiver.bodies("/json"), 15, what="the JSON webhook")[0]
    assert json_doc["kind"] == "RolledBack" and json_doc["reason"] == "AnalysisFailed"
    text = wait_for(lambda: receiver.bodies("/slack"), 15, what="the Slack webhook")[0]["text"]
    assert "errors" in text and "rolled back (AnalysisFailed)" in text
    # The bad revision stays rolled back: no flapping.
    time.sleep(3)
    assert r.status()["phase"] == "RolledBack"


def test_p95_latency_above_the_limit_rolls_back(
    make_route: Callable[..., Route], prometheus: str
) -> None:
    others = [
        {"name": f"p95-{c}", "preset": "latency-p95", "convention": c, "max": 0.5}
        for c in ("istio", "linkerd", "nginx")
    ]
    r = make_route(analysed("slow", prometheus, [ERRORS, P95, *others]))
    release(r, "registry.example/app:2", **{"latency-p50": "0.8", "latency-p95": "2.0"})
    s = r.wait("rolled back", rolled_back, timeout=60)
    assert s["rollbackReason"] == "AnalysisFailed" and s["canaryWeight"] == 0
    assert metric(s, "error-rate")["verdict"] == "Pass"
    for name in ("p95", "p95-istio", "p95-linkerd", "p95-nginx"):
        m = metric(s, name)
        # Histogram buckets blur the figure; the limit is clearly passed in every one.
        assert m["verdict"] == "Fail" and 1.0 <= m["value"] <= 3.0, m
    assert "p95 = " in s["history"][0]["message"]


# --------------------------------------------------------------------------- no traffic


def silent(body: dict[str, Any]) -> dict[str, Any]:
    """A route nobody sends requests to (the simulator reads this annotation)."""
    body["metadata"]["annotations"] = {"sim.shadowroute.io/rps": "0"}
    return body


@pytest.mark.parametrize("policy", ["fail", "pass"])
def test_no_traffic_follows_the_no_data_policy(
    make_route: Callable[..., Route], prometheus: str, policy: str
) -> None:
    check = {**ERRORS, "noData": policy}
    r = make_route(silent(analysed(f"quiet-{policy}", prometheus, [check])))
    release(r, "registry.example/app:2")
    if policy == "fail":
        s = r.wait("rolled back for no data", rolled_back, timeout=60)
        m = metric(s, "error-rate")
        assert m["verdict"] == "Fail" and m["reason"] == "TooFewRequests" and m["requests"] == 0
        assert "noData policy fail" in s["history"][0]["message"]
    else:
        s = r.wait("promoted without data", promoted, timeout=90)
        m = metric(s, "error-rate")
        assert m["verdict"] == "Pass" and m["reason"] == "TooFewRequests"


def test_no_traffic_with_the_hold_policy_holds_until_traffic_comes(
    make_route: Callable[..., Route], prometheus: str, kubectl: KubectlFn
) -> None:
    r = make_route(silent(analysed("quiet-hold", prometheus, [{**ERRORS, "noData": "hold"}])))
    release(r, "registry.example/app:2")
    s = r.wait("holding", lambda s: condition(s).get("reason") == "NoData", timeout=60)
    time.sleep(6)  # three times the step's pause, six analysis runs
    s = r.status()
    assert s["phase"] == "Progressing" and s["currentStep"] == 0 and s["canaryWeight"] == 20
    assert s["analysis"]["consecutiveFailures"] == 0
    assert (
        # Unknown: no evidence either way, the rollout holds (not False: nothing failed).
        condition(s)["status"] == "Unknown"
        and "fewer than minRequests 5" in condition(s)["message"]
    )
    kubectl(
        "annotate", "--overwrite", "-n", r.ns, f"shadowroute/{r.name}", "sim.shadowroute.io/rps=50"
    )
    r.wait("promoted once traffic came", promoted, timeout=90)


# --------------------------------------------------------------------------- Prometheus away


def test_prometheus_stopped_mid_rollout_holds_and_resumes(
    make_route: Callable[..., Route], cluster: Cluster, simulator, tmp_path: Path
) -> None:
    own = OwnPrometheus(cluster.prometheus_targets, tmp_path / "prometheus")
    own.start()
    try:
        steps = [{"weight": 20, "pause": {"duration": "6s"}}, {"weight": 50}]
        r = make_route(analysed("outage", own.url, [ERRORS], steps=steps))
        release(r, "registry.example/app:2")
        r.wait("at step 1", lambda s: s.get("canaryWeight") == 20, timeout=60)
        own.stop()
        s = r.wait(
            "PrometheusUnavailable",
            lambda s: condition(s).get("reason") == "PrometheusUnavailable",
            timeout=30,
        )
        assert condition(s)["status"] == "False"
        assert "unreachable since" in condition(s)["message"]
        time.sleep(8)  # well past the step's pause: it holds
        s = r.status()
        assert s["phase"] == "Progressing" and s["currentStep"] == 0 and s["canaryWeight"] == 20
        own.start()
        s = r.wait("promoted after Prometheus returned", promoted, timeout=90)
        assert "unreachableSince" not in s["analysis"]
    finally:
        own.stop()


def test_prometheus_unreachable_past_the_timeout_rolls_back_with_policy_rollback(
    make_route: Callable[..., Route],
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    body = analysed(
        "unreachable", nowhere, [ERRORS], unreachable={"timeout": "3s", "policy": "rollback"}
    )
    r = make_route(body)
    release(r, "registry.example/app:2")
    s = r.wait("rolled back", rolled_back, timeout=60)
    assert s["rollbackReason"] == "PrometheusUnavailable"
    assert "past unreachable.timeout 3s with policy rollback" in s["history"][0]["message"]


def test_a_token_with_a_line_break_is_refused_and_abort_still_rolls_back(
    make_route: Callable[..., Route],
    prometheus: str,
    kubectl: KubectlFn,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    """A Secret whose token holds a line break (aiohttp refuses such a header with a
    ValueError at every request): the analysis says CredentialsInvalid and sends nothing,
    the rollout holds, and the abort gate still puts all traffic back at once."""
    body = analysed("badtoken", prometheus, [ERRORS], steps=[{"weight": 20}, {"weight": 50}])
    body["spec"]["analysis"]["prometheus"]["secretRef"] = {"name": "prom-token"}
    body["spec"]["traffic"] = GATEWAY
    secret = ["s3cr3t-first-line", "s3cr3t-second-line"]
    kubectl(
        "create", "secret", "generic", "prom-token", "-n", namespace,
        f"--from-literal=token={secret[0]}\n{secret[1]}\n",
    )  # fmt: skip
    r = make_route(body)
    release(r, "registry.example/app:2")
    s = r.wait(
        "CredentialsInvalid at step 1",
        lambda s: (
            s.get("canaryWeight") == 20 and condition(s).get("reason") == "CredentialsInvalid"
        ),
        timeout=60,
    )
    c = condition(s)
    assert c["status"] == "False" and "Secret " in c["message"] and "prom-token" in c["message"]
    assert "key token holds a line break" in c["message"]
    assert s["phase"] == "Progressing" and s["currentStep"] == 0, "held, never advanced"
    r.gate("abort")
    s = r.wait("rolled back by the abort gate", rolled_back, timeout=30)
    assert s["canaryWeight"] == 0 and s["rollbackReason"] == "Aborted"
    assert condition(s)["reason"] == "CredentialsInvalid"
    rules = {
        x["name"]: x
        for x in get_json(kubectl, "httproute", "badtoken", "-n", r.ns)["spec"]["rules"]
    }
    weights = {b["name"]: b["weight"] for b in rules["weighted"]["backendRefs"]}
    assert weights == {"badtoken-primary": 100, "badtoken-canary": 0}, weights
    wait_for(lambda: r.replicas("canary") == 0, 30, what="canary scaled down")
    shown = json.dumps(r.get()) + operator.log.read_text()
    assert not any(part in shown for part in secret), "the token is never shown"
    assert "Forbidden control character" not in operator.log.read_text()


# --------------------------------------------------------------------------- restarts, warm window


def test_operator_restarted_mid_analysis_keeps_its_failure_count(
    make_route: Callable[..., Route], prometheus: str, operator: OperatorProcess
) -> None:
    r = make_route(analysed("restart", prometheus, [ERRORS], failure_limit=4, interval="2s"))
    release(r, "registry.example/app:2", **{"error-rate": "0.2"})
    r.wait("failing", lambda s: (s.get("analysis") or {}).get("consecutiveFailures", 0) >= 1)
    operator.kill()
    try:
        before = r.status()["analysis"]["consecutiveFailures"]
        assert 1 <= before <= 4
        time.sleep(3)
        assert r.status()["analysis"]["consecutiveFailures"] == before
    finally:
        operator.start()
    counts = [before]

    def record(s: dict[str, Any]) -> bool:
        counts.append(s["analysis"]["consecutiveFailures"])
        return rolled_back(s)

    s = r.wait("rolled back after the restart", record, timeout=60)
    changes = [c for i, c in enumerate(counts) if i == 0 or c != counts[i - 1]]
    assert changes == list(range(before, 6)), f"the count went on from {before}: {changes}"
    assert "5 failed runs in a row, more than failureLimit 4" in s["history"][0]["message"]


def test_a_failure_in_the_warm_window_switches_back_at_once(
    make_route: Callable[..., Route], prometheus: str, kubectl: KubectlFn
) -> None:
    body = analysed("warm", prometheus, [ERRORS])
    body["spec"]["keepWarm"] = "60s"
    r = make_route(body)
    old = r.status()["stableRevision"]
    release(r, "registry.example/app:2")
    s = r.wait("promoted, old version warm", lambda s: s.get("phase") == "Succeeded", timeout=60)
    new = s["stableRevision"]
    # The new version degrades under full load: its pods start failing (no new revision).
    kubectl(
        "annotate", "--overwrite", "pods", "-n", r.ns,
        "-l", "shadowroute.io/name=warm,shadowroute.io/role=canary",
        "sim.shadowroute.io/error-rate=0.5",
    )  # fmt: skip
    s = r.wait("back on the previous version", lambda s: s.get("stableRevision") == old, 60)
    assert s["canaryWeight"] == 0 and s["phase"] == "RolledBack"
    assert [h["outcome"] for h in s["history"][:2]] == ["RolledBack", "Promoted"]
    assert s["history"][0]["revision"] == new and s["history"][0]["reason"] == "AnalysisFailed"
    assert r.image("primary") == "registry.example/app:1"
