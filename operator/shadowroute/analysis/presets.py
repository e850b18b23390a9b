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

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..api.models import MetricConvention, MetricPreset
from .judge import Sample
from .templates import Context, escape_regex, escape_string, promql_duration

_PLACEHOLDER = re.compile(r"\{\{ *([A-Za-z]+) *\}\}")


@dataclass(frozen=True)
class Convention:
    """Where one convention keeps request counts and latency histograms."""

    matchers: tuple[tuple[str, str], ...]
    """The selector's label matchers (all `=`); a value may be a placeholder."""
    requests: str
    error_matcher: str
    buckets: str
    to_seconds: str = ""  # appended to a latency query: "/ 1000" for milliseconds

    @property
    def selector(self) -> str:
        return ",".join(f'{label}="{value}"' for label, value in self.matchers)

    @property
    def keys(self) -> tuple[tuple[str, str], ...]:
        """(label, placeholder) of the matchers that tell one route's series from
        another's: those whose value is a placeholder."""
        out = []
        for label, value in self.matchers:
            m = _PLACEHOLDER.fullmatch(value)
            if m:
                out.append((label, m.group(1)))
        return tuple(out)


CONVENTIONS: dict[MetricConvention, Convention] = {
    # Prometheus client libraries' names, with the namespace and service target labels
    # that the Prometheus Operator (ServiceMonitor) and kube-prometheus attach.
    MetricConvention.HTTP: Convention(
        matchers=(("namespace", "{{ namespace }}"), ("service", "{{ target }}")),
        requests="http_requests_total",
        error_matcher='code=~"5.."',
        buckets="http_request_duration_seconds_bucket",
    ),
    # Istio's standard metrics, as reported by the destination's sidecar.
    MetricConvention.ISTIO: Convention(
        matchers=(
            ("reporter", "destination"),
            ("destination_service_namespace", "{{ namespace }}"),
            ("destination_service_name", "{{ target }}"),
        ),
        requests="istio_requests_total",
        error_matcher='response_code=~"5.."',
        buckets="istio_request_duration_milliseconds_bucket",
        to_seconds=" / 1000",
    ),
    # Linkerd's proxy metrics, keyed by Deployment (named like the Service here).
    MetricConvention.LINKERD: Convention(
        matchers=(
            ("namespace", "{{ namespace }}"),
            ("deployment", "{{ target }}"),
            ("direction", "inbound"),
        ),
        requests="response_total",
        error_matcher='classification="failure"',
        buckets="response_latency_ms_bucket",
        to_seconds=" / 1000",
    ),
    # ingress-nginx's controller metrics, by backend Service.
    MetricConvention.NGINX: Convention(
        matchers=(("namespace", "{{ namespace }}"), ("service", "{{ target }}")),
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
    """The templates of one route's checks, rendered like any other template."""
    c = CONVENTIONS[convention]
    return _queries(preset, c, c.selector, (), "{{ window }}")


def _queries(
    preset: MetricPreset, c: Convention, selector: str, by: tuple[str, ...], window: str
) -> PresetQueries:
    """A preset's queries over `selector`; with `by` (the batched form) every
    aggregation keeps those labels, so each route's series are summed apart."""
    rng = f"[{window}]"
    total_sum = f"sum by ({', '.join(by)}) " if by else "sum"
    total = f"{total_sum}(rate({c.requests}{{{selector}}}{rng}))"
    count = f"{total_sum}(increase({c.requests}{{{selector}}}{rng}))"
    if preset is MetricPreset.ERROR_RATE:
        errors = f"{total_sum}(rate({c.requests}{{{selector},{c.error_matcher}}}{rng}))"
        # A route without 5xx series counts 0 errors: alone, `or vector(0)`; grouped,
        # a zero for every route that has requests (vector(0) has no labels to match).
        zero = f"({total} * 0)" if by else "vector(0)"
        return PresetQueries(value=f"({errors} or {zero}) / {total}", requests=count)
    quantile = QUANTILES[preset]
    le = ", ".join(("le", *by))
    value = (
        f"histogram_quantile({quantile}, sum by ({le}) "
        f"(rate({c.buckets}{{{selector}}}{rng}))){c.to_seconds}"
    )
    return PresetQueries(value=value, requests=count)


@dataclass(frozen=True)
class Family:
    """The checks of every route that uses one preset with one convention and one
    window: their queries differ only in the values of the convention's key labels
    (namespace and Service, say), so they are asked as one query grouped by those
    labels, whose answer is split back per route (`split`)."""

    preset: MetricPreset
    convention: MetricConvention
    requests: bool
    """The request count of minRequests (else the check's value)."""
    window: str
    """The range, as a PromQL duration."""

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label for label, _ in CONVENTIONS[self.convention].keys)

    def query(self, members: Iterable[tuple[str, ...]]) -> str:
        """One query answering every member (a tuple of key label values): each key
        label matches any of the members' values, the other matchers stay; the answer
        holds a series per key, and the members' own among them."""
        c = CONVENTIONS[self.convention]
        members = list(members)
        keyed = dict(c.keys)
        parts = []
        for label, value in c.matchers:
            if label in keyed:
                column = self.labels.index(label)
                values = sorted({m[column] for m in members})
                pattern = "|".join(escape_regex(v) for v in values)
                parts.append(f'{label}=~"{escape_string(pattern)}"')
            else:
                parts.append(f'{label}="{value}"')
        q = _queries(self.preset, c, ",".join(parts), self.labels, self.window)
        return q.requests if self.requests else q.value

    def split(
        self, samples: Iterable[Sample], members: Iterable[tuple[str, ...]] = ()
    ) -> dict[tuple[str, ...], tuple[Sample, ...]]:
        """The batched answer per member key, each sample without the key labels, as
        the route's own query would have answered (a member absent: no samples)."""
        out: dict[tuple[str, ...], list[Sample]] = {}
        labels = self.labels
        for s in samples:
            metric = dict(s.labels)
            key = tuple(metric.pop(label, "") for label in labels)
            out.setdefault(key, []).append(Sample(tuple(sorted(metric.items())), s.value))
        return {k: tuple(v) for k, v in out.items()}


def family_of(
    preset: MetricPreset, convention: MetricConvention, requests: bool, ctx: Context
) -> tuple[Family, tuple[str, ...]]:
    """The family of a route's preset query, and the route's key in it."""
    strings = ctx.strings()
    key = tuple(strings[p] for _, p in CONVENTIONS[convention].keys)
    return Family(preset, convention, requests, promql_duration(ctx.window)), key
