"""The comparator's metrics, in its own registry, every series labelled with `route`
and `revision`. The counts are read from the `Comparison` at scrape time (one source
for /metrics and /summary; the mismatched count is retroactive: which fields are real
changes as requests come in); only the latency histogram is a live instrument.

Scrapes run on the event loop that updates the Comparison: no lock needed.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .comparison import DROP_REASONS, SIDES, SKIP_REASONS, Comparison

PREFIX = "shadowroute_compare_"
REQUESTS = PREFIX + "requests"  # exposed as ..._requests_total
MISMATCHED = PREFIX + "mismatched_requests"
MATCHED = PREFIX + "matched_requests"
FIELD_DIFFERENCES = PREFIX + "field_differences"
FIELD_NOISE = PREFIX + "field_noise"
SKIPPED = PREFIX + "skipped"
DROPPED = PREFIX + "dropped"
NO_ANSWERS = PREFIX + "upstream_no_answers"
UPSTREAM_SECONDS = PREFIX + "upstream_duration_seconds"
BUCKETS = tuple(round(0.001 * 1.25**i, 6) for i in range(47))
"""1 ms to about 36 s, each bound 25 % above the last: the operator compares the two
sides' p95 (maxLatencyRatio) from these, so coarse buckets (5, 10, 25 ms…) would read
an 11 ms shadow against a 9 ms baseline as 2.5 times slower."""
LABELS = ("route", "revision")


class _TallyCollector(Collector):
    def __init__(self, comparison: Comparison) -> None:
        self.comparison = comparison
        config = comparison.config
        self.labels = [config.route, config.revision]

    def collect(self) -> Iterator[Metric]:
        c, labels = self.comparison, self.labels
        tally = c.tally
        compared, mismatched = tally.compared, tally.mismatched
        requests = CounterMetricFamily(
            REQUESTS, "Mirrored requests compared (every answer in).", labels=LABELS
        )
        requests.add_metric(labels, compared)
        yield requests
        gauge = GaugeMetricFamily(
            MISMATCHED,
            "Compared requests with a field that differs beyond noise, by the fields real "
            "so far (an upper bound when the tally is not exact).",
            labels=LABELS,
        )
        gauge.add_metric(labels, mismatched)
        yield gauge
        gauge = GaugeMetricFamily(
            MATCHED, "Compared requests minus mismatched ones.", labels=LABELS
        )
        gauge.add_metric(labels, max(0, compared - mismatched))
        yield gauge
        raw = CounterMetricFamily(
            FIELD_DIFFERENCES,
            "Requests whose field differed between the candidate and the baseline (raw; "
            "_other past the name cap).",
            labels=[*LABELS, "field"],
        )
        noise = CounterMetricFamily(
            FIELD_NOISE,
            "Requests whose field differed between two baseline answers (noise).",
            labels=[*LABELS, "field"],
        )
        for field in tally.fields:
            raw.add_metric([*labels, field.name], field.raw)
            noise.add_metric([*labels, field.name], field.noise)
        yield raw
        yield noise
        for name, doc, counts, known in (
            (SKIPPED, "Mirrored requests not compared, by reason.", c.skipped, SKIP_REASONS),
            (DROPPED, "Mirrored requests the comparator could not take.", c.dropped, DROP_REASONS),
        ):
            family = CounterMetricFamily(name, doc, labels=[*LABELS, "reason"])
            for reason, n in {**dict.fromkeys(known, 0), **counts}.items():
                family.add_metric([*labels, reason], n)
            yield family
        family = CounterMetricFamily(
            NO_ANSWERS,
            "Upstream asks without an answer to compare, by side and reason.",
            labels=[*LABELS, "side", "reason"],
        )
        for side in SIDES:
            for reason, n in c.no_answers[side].items():
                family.add_metric([*labels, side, reason], n)
        yield family


class Metrics:
    """The registry of one comparator and its latency histogram."""

    def __init__(self, comparison: Comparison) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_TallyCollector(comparison))
        # process_resident_memory_bytes and friends: its memory, watched over a run.
        ProcessCollector(registry=self.registry)
        config = comparison.config
        histogram = Histogram(
            UPSTREAM_SECONDS,
            "Time of one upstream ask to its whole answer (answers only), by side.",
            [*LABELS, "side"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._latency = {
            side: histogram.labels(config.route, config.revision, side) for side in SIDES
        }

    def timed(self, side: str, seconds: float) -> None:
        self._latency[side].observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
