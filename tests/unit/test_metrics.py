"""The operator's own metrics: per-route gauges and outcome counters from decided
statuses, the health endpoints, the scheduler hooks, and JSON logs."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import threading
import urllib.error
import urllib.request
import uuid
from http.server import ThreadingHTTPServer

import pytest
from prometheus_client import REGISTRY
from shadowroute.__main__ import parse_args
from shadowroute.api.models import HistoryEntry, MetricResult, ShadowRouteStatus
from shadowroute.observability import logs, metrics
from shadowroute.reconciler import Outcome
from shadowroute.scheduler import Scheduler

START = dt.datetime(2026, 11, 25, 5, 0, 0, tzinfo=dt.UTC)


def ts(seconds: int) -> str:
    return (START + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def value(metric: str, /, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


@pytest.fixture
def key() -> tuple[str, str]:
    """A route of its own: the metrics are process-wide, the labels keep tests apart."""
    return f"ns-{uuid.uuid4().hex[:8]}", "web"


def status(phase: str = "Stable", **fields) -> ShadowRouteStatus:
    return ShadowRouteStatus(phase=phase, **fields)


def promoted(rev: str, at: int) -> HistoryEntry:
    return HistoryEntry(revision=rev, outcome="Promoted", reason="Promoted", at=ts(at))


def rolled_back(rev: str, at: int, reason: str = "AnalysisFailed") -> HistoryEntry:
    return HistoryEntry(revision=rev, outcome="RolledBack", reason=reason, at=ts(at))


def test_phase_weight_and_mirror_follow_the_decided_status(key) -> None:
    rm = metrics.RouteMetrics(started=START)
    before = value("shadowroute_rollouts", phase="Progressing") or 0
    rm.observe(*key, status("Progressing", canary_weight=30, mirror_percent=0))
    ns, name = key
    assert value("shadowroute_route_phase", namespace=ns, name=name, phase="Progressing") == 1
    assert value("shadowroute_canary_weight_percent", namespace=ns, name=name) == 30
    assert value("shadowroute_rollouts", phase="Progressing") == before + 1
    rm.observe(*key, status("Shadowing", mirror_percent=50))
    assert value("shadowroute_route_phase", namespace=ns, name=name, phase="Progressing") is None
    assert value("shadowroute_route_phase", namespace=ns, name=name, phase="Shadowing") == 1
    assert value("shadowroute_rollouts", phase="Progressing") == before
    assert value("shadowroute_mirror_percent", namespace=ns, name=name) == 50


def test_forget_drops_every_series_of_the_route(key) -> None:
    rm = metrics.RouteMetrics(started=START)
    ns, name = key
    before = value("shadowroute_rollouts", phase="RolledBack") or 0
    s = status("RolledBack", history=[rolled_back("b", 10)])
    s.analysis.metrics = [MetricResult(name="errors", value=0.5, verdict="Fail")]
    rm.observe(*key, s)
    assert value("shadowroute_rollbacks_total", namespace=ns, name=name, reason="AnalysisFailed")
    rm.forget(*key)
    for metric, extra in [
        ("shadowroute_route_phase", {"phase": "RolledBack"}),
        ("shadowroute_canary_weight_percent", {}),
        ("shadowroute_analysis_value", {"metric": "errors"}),
        ("shadowroute_analysis_verdict", {"metric": "errors", "verdict": "Fail"}),
        ("shadowroute_rollbacks_total", {"reason": "AnalysisFailed"}),
    ]:
        assert value(metric, namespace=ns, name=name, **extra) is None, metric
    assert value("shadowroute_rollouts", phase="RolledBack") == before
    rm.forget(*key)  # twice is harmless


def test_each_promotion_and_rollback_is_counted_once(key) -> None:
    rm = metrics.RouteMetrics(started=START)
    ns, name = key
    s = status("Succeeded", history=[promoted("b", 60)])
    rm.observe(*key, s)
    rm.observe(*key, s)  # the same decision seen again (a resync)
    assert value("shadowroute_promotions_total", namespace=ns, name=name) == 1
    s = status("RolledBack", history=[rolled_back("c", 120, "Aborted"), promoted("b", 60)])
    rm.observe(*key, s)
    assert value("shadowroute_promotions_total", namespace=ns, name=name) == 1
    assert value("shadowroute_rollbacks_total", namespace=ns, name=name, reason="Aborted") == 1
    # A full history (20 entries, the oldest falling off) still counts only what is new.
    full = [promoted(f"r{i}", 200 + i) for i in range(20)]
    rm.observe(*key, status("Stable", history=full))
    assert value("shadowroute_promotions_total", namespace=ns, name=name) == 21
    rm.observe(*key, status("Stable", history=[promoted("new", 400), *full[:19]]))
    assert value("shadowroute_promotions_total", namespace=ns, name=name) == 22


def test_a_restart_does_not_count_the_past_again(key) -> None:
    ns, name = key
    history = [rolled_back("c", 30), promoted("b", 0), promoted("a", -100)]
    rm = metrics.RouteMetrics(started=START)  # started in the second of entry "b"
    rm.observe(*key, status("RolledBack", history=history))
    assert value("shadowroute_promotions_total", namespace=ns, name=name) is None
    assert (
        value("shadowroute_rollbacks_total", namespace=ns, name=name, reason="AnalysisFailed") == 1
    )


def test_analysis_value_and_verdict_per_metric(key) -> None:
    rm = metrics.RouteMetrics(started=START)
    ns, name = key
    s = status("Progressing")
    s.analysis.consecutive_failures = 1
    s.analysis.metrics = [
        MetricResult(name="error-rate", value=0.02, verdict="Pass"),
        MetricResult(name="latency", value=None, verdict="Inconclusive"),
    ]
    rm.observe(*key, s)
    assert value("shadowroute_analysis_value", namespace=ns, name=name, metric="error-rate") == 0.02
    assert value("shadowroute_analysis_value", namespace=ns, name=name, metric="latency") is None
    v = {"namespace": ns, "name": name, "metric": "latency"}
    assert value("shadowroute_analysis_verdict", verdict="Inconclusive", **v) == 1
    assert value("shadowroute_analysis_consecutive_failures", namespace=ns, name=name) == 1
    s.analysis.metrics = [MetricResult(name="latency", value=0.3, verdict="Fail")]
    rm.observe(*key, s)
    assert value("shadowroute_analysis_verdict", verdict="Inconclusive", **v) is None
    assert value("shadowroute_analysis_verdict", verdict="Fail", **v) == 1
    assert value("shadowroute_analysis_value", **v) == 0.3
    # A metric no longer in the status loses its series.
    assert value("shadowroute_analysis_value", namespace=ns, name=name, metric="error-rate") is None


def test_observe_query_records_duration_and_errors_by_reason() -> None:
    count = value("shadowroute_prometheus_query_duration_seconds_count") or 0
    errors = value("shadowroute_prometheus_query_errors_total", reason="Timeout") or 0
    metrics.observe_query(0.2, ok=True)
    metrics.observe_query(5.0, ok=False, reason="Timeout")
    assert value("shadowroute_prometheus_query_duration_seconds_count") == count + 2
    assert value("shadowroute_prometheus_query_errors_total", reason="Timeout") == errors + 1


def test_build_info_names_the_version() -> None:
    from shadowroute import __version__

    assert value("shadowroute_build_info", version=__version__) == 1


# --------------------------------------------------------------------------- health


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def server():
    clock = FakeClock()
    probes = metrics.Health(stale_after=10, clock=clock)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), metrics.make_handler(REGISTRY, probes))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", probes, clock
    httpd.shutdown()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_health_endpoints(server) -> None:
    base, probes, clock = server
    code, body = get(base + "/metrics")
    assert code == 200 and "shadowroute_build_info" in body
    assert get(base + "/readyz")[0] == 503, "not ready before kopf finished starting"
    probes.ready.set()
    assert get(base + "/readyz") == (200, "ready\n")
    assert get(base + "/healthz")[0] == 200
    clock.t += 11  # the event loop has not beaten for 11 s
    code, body = get(base + "/healthz")
    assert code == 503 and "silent for 11s" in body
    probes.beat()
    assert get(base + "/healthz")[0] == 200
    assert get(base + "/nope")[0] == 404


# --------------------------------------------------------------------------- scheduler hooks


async def test_scheduler_feeds_decided_status_and_forgets_deleted_routes(key) -> None:
    rm = metrics.RouteMetrics(started=START)
    release = asyncio.Event()
    calls = 0

    async def reconcile(ns: str, name: str) -> Outcome:
        nonlocal calls
        calls += 1
        if calls == 2:
            await release.wait()  # a reconcile still running when the route is deleted
        if calls >= 3:
            return Outcome(None, 0)  # the route is gone
        return Outcome(None, 0, status("Progressing", canary_weight=10 * calls))

    sched = Scheduler(reconcile, metrics=rm)
    ns, name = key
    sched.trigger(*key)
    await asyncio.sleep(0.05)
    assert value("shadowroute_canary_weight_percent", namespace=ns, name=name) == 10
    sched.trigger(*key)
    await asyncio.sleep(0.05)
    sched.forget(*key)
    sched.trigger(*key)  # a child's event right after the delete
    release.set()
    await asyncio.sleep(0.05)
    assert value("shadowroute_canary_weight_percent", namespace=ns, name=name) is None, (
        "a reconcile that finishes after the delete must not bring the series back"
    )
    await sched.stop()


# --------------------------------------------------------------------------- logs


def test_json_logs_are_one_object_per_line_with_the_object_and_exception() -> None:
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    try:
        log = logging.getLogger("shadowroute.test")
        log.info("applied %s", "web", extra={"k8s_ref": {"namespace": "shop", "name": "web"}})
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("failed", extra={"attempt": 2})
    finally:
        logs.configure("text")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "applied web" and first["level"] == "info"
    assert first["namespace"] == "shop" and first["name"] == "web"
    assert first["time"].endswith("Z") and "k8s_ref" not in first
    assert second["level"] == "error" and second["attempt"] == 2
    assert "ValueError: bad" in second["exception"]


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format"):
        logs.configure("xml")


def test_operator_flags() -> None:
    args = parse_args(["--log-format", "json", "-n", "a", "-n", "b", "--no-cluster-scope"])
    assert args.log_format == "json" and args.namespace == ["a", "b"] and args.no_cluster_scope
    for bad in (["--no-cluster-scope"], ["--no-cluster-scope", "-n", "t-*"], ["--log-format=x"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(bad)
        assert exc.value.code == 2
