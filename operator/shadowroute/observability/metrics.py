"""The operator's own metrics, on a /metrics port (prometheus-client)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

API_WRITES = Counter(
    "shadowroute_api_writes_total",
    "Writes to the API server, by kind (server-side applies, status applies, events).",
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


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics from a daemon thread; 0 disables it."""
    if port:
        start_http_server(port, addr=address)
