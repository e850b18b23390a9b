"""The operator's own metrics, on a /metrics port (prometheus-client), with the
health probes of its pod (/healthz, /readyz) on the same port.

Per-route gauges and the promotion/rollback counters are fed from the status each
reconcile *decided* (`RouteMetrics.observe`), never by reading objects back: the
numbers are what the operator did, and cost no API call.

Names other modules call:
- `observe_query(duration, ok, reason="error")`: one Prometheus query of the analysis;
- `RouteMetrics.observe(namespace, name, status)` / `.forget(...)`: the scheduler's hooks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from .. import __version__
from ..api.models import Outcome, ShadowRouteStatus, parse_timestamp
from ..names import Phase
from . import memory

log = logging.getLogger(__name__)
disable_created_metrics()  # the *_created series double the output and nobody graphs them

API_WRITES = Counter(
    "shadowroute_api_writes_total",
    "Writes to the API server, by kind (server-side applies, status applies, events).",
    ["kind"],
)
API_READS = Counter(
    "shadowroute_api_reads_total",
    "Reads from the API server, by kind (GETs and LISTs; a LIST page counts once).",
    ["kind"],
)
STORE_RELISTS = Counter(
    "shadowroute_store_relists_total",
    "LISTs made to rebuild the watch index of a kind: at start, and after kopf re-listed "
    "it (a watch gap, a 410 Gone).",
    ["kind"],
)
STORE_PURGED = Counter(
    "shadowroute_store_purged_total",
    "Objects dropped from the watch index because a LIST after a watch gap lacked them "
    "(deleted while the watch was down).",
    ["kind"],
)
RECONCILE_SECONDS = Histogram(
    "shadowroute_reconcile_duration_seconds",
    "Time of one reconcile of one ShadowRoute.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_ERRORS = Counter(
    "shadowroute_reconcile_errors_total",
    "Reconciles that raised, by exception type.",
    ["error"],
)
BUILD_INFO = Gauge(
    "shadowroute_build_info", "Always 1; the operator's version as a label.", ["version"]
)
BUILD_INFO.labels(__version__).set(1)
LEADER = Gauge(
    "shadowroute_leader",
    "1 when this process reconciles (it holds the lease, or runs without leader "
    "election); 0 while it stands by.",
)
SHARDS_CONFIGURED = Gauge(
    "shadowroute_shards",
    "How many shards the routes are split into (--shards; 1: no sharding).",
)
SHARD_HELD = Gauge(
    "shadowroute_shard_held",
    "With --shards > 1: 1 for each shard this replica holds (reconciles), 0 otherwise.",
    ["shard"],
)

ROLLOUTS = Gauge(
    "shadowroute_rollouts",
    "ShadowRoutes watched by this operator, by phase.",
    ["phase"],
)
PHASE = Gauge(
    "shadowroute_route_phase",
    "1 for the phase each ShadowRoute is in (one series per route).",
    ["namespace", "name", "phase"],
)
CANARY_WEIGHT = Gauge(
    "shadowroute_canary_weight_percent",
    "Percent of live traffic the decided status sends to the new version.",
    ["namespace", "name"],
)
MIRROR_PERCENT = Gauge(
    "shadowroute_mirror_percent",
    "Percent of live requests the decided status mirrors to the shadow.",
    ["namespace", "name"],
)
ANALYSIS_VALUE = Gauge(
    "shadowroute_analysis_value",
    "Last value of each analysis metric (absent when the query returned no finite value).",
    ["namespace", "name", "metric"],
)
ANALYSIS_VERDICT = Gauge(
    "shadowroute_analysis_verdict",
    "1 for the last verdict of each analysis metric (Pass, Fail or Inconclusive).",
    ["namespace", "name", "metric", "verdict"],
)
ANALYSIS_FAILURES = Gauge(
    "shadowroute_analysis_consecutive_failures",
    "Failed analysis runs in a row; one more than failureLimit rolls back.",
    ["namespace", "name"],
)
PROMOTIONS = Counter(
    "shadowroute_promotions_total",
    "Revisions promoted (history entries with outcome Promoted decided by this process).",
    ["namespace", "name"],
)
ROLLBACKS = Counter(
    "shadowroute_rollbacks_total",
    "Revisions rolled back, by reason (history entries with outcome RolledBack).",
    ["namespace", "name", "reason"],
)
ANALYSIS_RUNS = Counter(
    "shadowroute_analysis_runs_total",
    "Analysis runs, by result: Pass, Fail, Inconclusive, Unavailable (no answer), or Error.",
    ["result"],
)
QUERY_SECONDS = Histogram(
    "shadowroute_prometheus_query_duration_seconds",
    "Time of one analysis query to Prometheus, answered or not.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUERY_ERRORS = Counter(
    "shadowroute_prometheus_query_errors_total",
    "Analysis queries that got no usable answer, by reason.",
    ["reason"],
)


QUERIES = Counter(
    "shadowroute_prometheus_queries_total",
    "HTTP queries sent to Prometheus by the analysis (each attempt), by form: alone "
    "(one route's query) or batched (one query for the routes of a tick sharing a preset).",
    ["form"],
)
ASKS = Counter(
    "shadowroute_prometheus_asks_total",
    "Queries the analysis' checks asked (one per route and distinct query of a run), "
    "answered by a query of their own or a share of a batched or identical one.",
)


def observe_query(duration: float, ok: bool, reason: str = "error") -> None:
    """Record one Prometheus query of the analysis: its duration, and when it failed
    (timeout, HTTP error, bad answer) the reason, a short CamelCase word."""
    QUERY_SECONDS.observe(max(duration, 0.0))
    if not ok:
        QUERY_ERRORS.labels(reason or "error").inc()


Key = tuple[str, str]
_HistoryId = tuple[str, str, str, str]


class RouteMetrics:
    """Per-route gauges and the outcome counters, from the decided statuses.

    Promotions and rollbacks are counted as *new* history entries: an entry not in the
    history this process last saw for the route. The first status seen for a route
    after a start counts only entries dated after the start, so a restart does not
    count the past again.
    """

    def __init__(self, started: dt.datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._started = (started or dt.datetime.now(dt.UTC)).replace(microsecond=0)
        self._phase: dict[Key, str] = {}
        self._metrics: dict[Key, set[str]] = {}
        self._verdicts: dict[tuple[str, str, str], str] = {}
        self._history: dict[Key, set[_HistoryId]] = {}
        for phase in Phase:
            ROLLOUTS.labels(phase.value)  # every phase present from the start, at 0

    def observe(self, namespace: str, name: str, status: ShadowRouteStatus) -> None:
        key = (namespace, name)
        with self._lock:
            self._set_phase(key, status.phase.value)
            CANARY_WEIGHT.labels(namespace, name).set(status.canary_weight)
            MIRROR_PERCENT.labels(namespace, name).set(status.mirror_percent)
            ANALYSIS_FAILURES.labels(namespace, name).set(status.analysis.consecutive_failures)
            self._set_analysis(key, status)
            self._count_outcomes(key, status)

    def forget(self, namespace: str, name: str) -> None:
        """The route is gone: drop its series (counters too: they would never move)."""
        key = (namespace, name)
        with self._lock:
            phase = self._phase.pop(key, None)
            if phase is not None:
                ROLLOUTS.labels(phase).dec()
                _remove(PHASE, namespace, name, phase)
            for gauge in (CANARY_WEIGHT, MIRROR_PERCENT, ANALYSIS_FAILURES):
                _remove(gauge, namespace, name)
            for metric in self._metrics.pop(key, set()):
                self._drop_metric(key, metric)
            self._history.pop(key, None)
            for counter in (PROMOTIONS, ROLLBACKS):
                _remove_matching(counter, namespace, name)

    def _set_phase(self, key: Key, phase: str) -> None:
        old = self._phase.get(key)
        if old == phase:
            return
        if old is not None:
            ROLLOUTS.labels(old).dec()
            _remove(PHASE, *key, old)
        ROLLOUTS.labels(phase).inc()
        PHASE.labels(*key, phase).set(1)
        self._phase[key] = phase

    def _set_analysis(self, key: Key, status: ShadowRouteStatus) -> None:
        seen = set()
        for result in status.analysis.metrics:
            seen.add(result.name)
            if result.value is None:
                _remove(ANALYSIS_VALUE, *key, result.name)
            else:
                ANALYSIS_VALUE.labels(*key, result.name).set(result.value)
            vkey = (*key, result.name)
            old = self._verdicts.get(vkey)
            if old != result.verdict.value:
                if old is not None:
                    _remove(ANALYSIS_VERDICT, *key, result.name, old)
                ANALYSIS_VERDICT.labels(*key, result.name, result.verdict.value).set(1)
                self._verdicts[vkey] = result.verdict.value
        for gone in self._metrics.get(key, set()) - seen:
            self._drop_metric(key, gone)
        self._metrics[key] = seen

    def _drop_metric(self, key: Key, metric: str) -> None:
        _remove(ANALYSIS_VALUE, *key, metric)
        old = self._verdicts.pop((*key, metric), None)
        if old is not None:
            _remove(ANALYSIS_VERDICT, *key, metric, old)

    def _count_outcomes(self, key: Key, status: ShadowRouteStatus) -> None:
        ids = {_history_id(h) for h in status.history}
        known = self._history.get(key)
        for entry in status.history:
            hid = _history_id(entry)
            if known is not None:
                if hid in known:
                    continue
            elif not _after(entry.at, self._started):
                continue
            if entry.outcome == Outcome.PROMOTED:
                PROMOTIONS.labels(*key).inc()
            elif entry.outcome == Outcome.ROLLED_BACK:
                ROLLBACKS.labels(*key, entry.reason or "RolledBack").inc()
        self._history[key] = ids


def _history_id(entry: Any) -> _HistoryId:
    return (entry.revision, entry.outcome.value, entry.reason, entry.at or "")


def _after(at: str | None, started: dt.datetime) -> bool:
    """Strictly after the start second: an entry stamped in the very second this
    process started may be a previous process's, and must not be counted twice."""
    if not at:
        return False
    try:
        return parse_timestamp(at) > started
    except ValueError:
        return False


def _remove(metric: Any, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


def _remove_matching(metric: Any, namespace: str, name: str) -> None:
    for sample_labels in list(metric._metrics):  # prometheus-client keeps children here
        if sample_labels[:2] == (namespace, name):
            _remove(metric, *sample_labels)


route_metrics = RouteMetrics()
"""The process-wide instance the scheduler feeds."""


# --------------------------------------------------------------------------- serving


class Health:
    """What /healthz and /readyz answer. Live: the event loop beat recently (a blocked
    loop reconciles nothing, so the pod should be restarted). Ready: the operator
    finished starting (its watches are established)."""

    def __init__(self, stale_after: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.stale_after = stale_after
        self._clock = clock
        self._beat = clock()
        self.ready = threading.Event()

    def beat(self) -> None:
        self._beat = self._clock()

    def alive(self) -> tuple[bool, str]:
        age = self._clock() - self._beat
        if age > self.stale_after:
            return False, f"event loop silent for {age:.0f}s (limit {self.stale_after:.0f}s)"
        return True, f"event loop beat {age:.1f}s ago"


health = Health()


def make_handler(
    registry: CollectorRegistry = REGISTRY, probes: Health = health
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, why = probes.alive()
                self._send(200 if ok else 503, (why + "\n").encode())
            elif path == "/readyz":
                ok = probes.ready.is_set()
                self._send(200 if ok else 503, b"ready\n" if ok else b"starting\n")
            elif path == "/debug/memory":
                self._memory()
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _memory(self) -> None:
            """The top allocation sites (observability/memory.py): ?top=15&by=file."""
            query = urllib.parse.parse_qs(self.path.partition("?")[2])
            try:
                top = int(query.get("top", ["15"])[0])
                text = memory.report(max(1, min(top, 500)), query.get("by", ["file"])[0])
            except LookupError as exc:
                self._send(404, f"{exc}\n".encode())
            except ValueError as exc:
                self._send(400, f"{exc}\n".encode())
            else:
                self._send(200, text.encode())

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes and probes every few seconds would drown the operator's log

    return Handler


def serve(port: int, address: str = "0.0.0.0") -> ThreadingHTTPServer | None:
    """Serve /metrics, /healthz, /readyz (and /debug/memory, see memory.py) from a daemon
    thread; port 0 disables it."""
    if not port:
        return None
    server = ThreadingHTTPServer((address, port), make_handler())
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("serving /metrics, /healthz and /readyz on %s:%d", address, port)
    return server
