"""Ready-made checks, so that a user writes `preset: error-rate` instead of PromQL.

Each preset is a query template (rendered and escaped like any other) for one metric
convention, plus the request count its `minRequests` is checked against. They look at
`{{ target }}`: the Service of the new version in the current stage (`<name>-shadow`
while shadowing, `<name>-canary` otherwise). Latencies are always in seconds, whatever
unit the convention records.

Two traps they avoid: a version that never failed has no 5xx series at all, so the
error count is `... or vector(0)` (else the ratio would be "no data" exactly when all
is well); and no traffic makes the ratio 0/0 = NaN, which the judge reports as no data.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api.models import MetricConvention, MetricPreset


@dataclass(frozen=True)
class Convention:
    """Where one convention keeps request counts and latency histograms."""

    selector: str
    requests: str
    error_matcher: str
    buckets: str
    to_seconds: str = ""  # appended to a latency query: "/ 1000" for milliseconds


CONVENTIONS: dict[MetricConvention, Convention] = {
    # Prometheus client libraries' names, with the namespace and service target labels
    # that the Prometheus Operator (ServiceMonitor) and kube-prometheus attach.
    MetricConvention.HTTP: Convention(
        selector='namespace="{{ namespace }}",service="{{ target }}"',
        requests="http_requests_total",
        error_matcher='code=~"5.."',
        buckets="http_request_duration_seconds_bucket",
    ),
    # Istio's standard metrics, as reported by the destination's sidecar.
    MetricConvention.ISTIO: Convention(
        selector='reporter="destination",destination_service_namespace="{{ namespace }}",'
        'destination_service_name="{{ target }}"',
        requests="istio_requests_total",
        error_matcher='response_code=~"5.."',
        buckets="istio_request_duration_milliseconds_bucket",
        to_seconds=" / 1000",
    ),
    # Linkerd's proxy metrics, keyed by Deployment (named like the Service here).
    MetricConvention.LINKERD: Convention(
        selector='namespace="{{ namespace }}",deployment="{{ target }}",direction="inbound"',
        requests="response_total",
        error_matcher='classification="failure"',
        buckets="response_latency_ms_bucket",
        to_seconds=" / 1000",
    ),
    # ingress-nginx's controller metrics, by backend Service.
    MetricConvention.NGINX: Convention(
        selector='namespace="{{ namespace }}",service="{{ target }}"',
        requests="nginx_ingress_controller_requests",
        error_matcher='status=~"5.."',
        buckets="nginx_ingress_controller_request_duration_seconds_bucket",
    ),
}

QUANTILES = {
    MetricPreset.LATENCY_P50: "0.5",
    MetricPreset.LATENCY_P90: "0.9",
    MetricPreset.LATENCY_P95: "0.95",
    MetricPreset.LATENCY_P99: "0.99",
}


@dataclass(frozen=True)
class PresetQueries:
    """The templates of a preset: its value and the request count for minRequests."""

    value: str
    requests: str


def preset_queries(preset: MetricPreset, convention: MetricConvention) -> PresetQueries:
    c = CONVENTIONS[convention]
    window = "[{{ window }}]"
    total = f"sum(rate({c.requests}{{{c.selector}}}{window}))"
    count = f"sum(increase({c.requests}{{{c.selector}}}{window}))"
    if preset is MetricPreset.ERROR_RATE:
        errors = f"sum(rate({c.requests}{{{c.selector},{c.error_matcher}}}{window}))"
        return PresetQueries(value=f"({errors} or vector(0)) / {total}", requests=count)
    quantile = QUANTILES[preset]
    value = (
        f"histogram_quantile({quantile}, sum by (le) "
        f"(rate({c.buckets}{{{c.selector}}}{window}))){c.to_seconds}"
    )
    return PresetQueries(value=value, requests=count)
