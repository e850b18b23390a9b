"""The shadow stage's gate: the comparison's verdict from the comparator's counters as
Prometheus reports them. Pure: the queries to send, and the judgement of the answers.

The comparator (a Deployment per revision on trial) counts from the moment it starts,
so the counters are the whole comparison of that revision: no rate window. A
comparator pod that restarts starts from zero; its old series go stale, so the sum
falls and the stage holds until enough requests are compared again. Fields are judged
real or noise by the same rule as the comparator's own `Tally` (`tally.is_real`),
over the sums of all comparator pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..api.models import (
    MAX_TOP_FIELDS,
    ComparisonStatus,
    ComparisonVerdict,
    FieldDifference,
    ShadowCompare,
)
from ..reasons import Reason
from ..rollout.observe import Health
from . import metrics
from .comparison import BASELINE, CANDIDATE
from .tally import FieldCount, Judgement, ShadowVerdict, is_real

REQUESTS = metrics.REQUESTS + "_total"
MISMATCHED = metrics.MISMATCHED
FIELD_DIFFERENCES = metrics.FIELD_DIFFERENCES + "_total"
FIELD_NOISE = metrics.FIELD_NOISE + "_total"
DURATION_BUCKETS = metrics.UPSTREAM_SECONDS + "_bucket"


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(frozen=True)
class Queries:
    """The PromQL that reads one revision's comparison."""

    compared: str
    mismatched: str
    raw: str
    noise: str
    shadow_p95: str
    baseline_p95: str

    def all(self) -> tuple[str, ...]:
        return (
            self.compared,
            self.mismatched,
            self.raw,
            self.noise,
            self.shadow_p95,
            self.baseline_p95,
        )


def queries(namespace: str, name: str, revision: str) -> Queries:
    """The comparator's series carry `route` and `revision`; Prometheus adds `namespace`
    (a ServiceMonitor's or PodMonitor's target label)."""
    where = (
        f'namespace="{_quoted(namespace)}",route="{_quoted(name)}",revision="{_quoted(revision)}"'
    )

    # `max by (pod, ...)` first: a pod scraped twice (its annotations and a PodMonitor)
    # counts once.
    def p95(side: str) -> str:
        buckets = f'{DURATION_BUCKETS}{{{where},side="{side}"}}'
        return f"histogram_quantile(0.95, sum by (le) (max by (pod, le) ({buckets})))"

    return Queries(
        compared=f"sum(max by (pod) ({REQUESTS}{{{where}}}))",
        mismatched=f"sum(max by (pod) ({MISMATCHED}{{{where}}}))",
        raw=f"sum by (field) (max by (pod, field) ({FIELD_DIFFERENCES}{{{where}}}))",
        noise=f"sum by (field) (max by (pod, field) ({FIELD_NOISE}{{{where}}}))",
        shadow_p95=p95(CANDIDATE),
        baseline_p95=p95(BASELINE),
    )


@dataclass(frozen=True)
class Counts:
    """What Prometheus answered; None where it had no series (nothing compared yet)."""

    compared: float | None = None
    mismatched: float | None = None
    raw: Mapping[str, float] = field(default_factory=dict)
    noise: Mapping[str, float] = field(default_factory=dict)
    shadow_p95: float | None = None
    baseline_p95: float | None = None


def top_fields(counts: Counts, compared: int) -> tuple[FieldCount, ...]:
    """The fields differing most beyond noise (those with more raw than noise)."""
    out = []
    for name, raw in counts.raw.items():
        noise = counts.noise.get(name, 0.0)
        if raw > noise:
            real = is_real(raw, noise, compared)
            out.append(FieldCount(name, int(raw), int(noise), real))
    out.sort(key=lambda f: (not f.real, -f.gap, f.name))
    return tuple(out[:MAX_TOP_FIELDS])


def judge(
    spec: ShadowCompare, revision: str, counts: Counts, checked_at: str
) -> tuple[ComparisonStatus, Health]:
    """The comparison's status and what it means for the stage: Healthy (may leave
    Shadowing), Pending (hold: too few requests compared) or Failed (roll back)."""
    compared = int(counts.compared or 0)
    mismatched = min(int(counts.mismatched or 0), compared)
    top = top_fields(counts, compared)
    if compared < spec.min_compared:
        judgement = Judgement.NOT_ENOUGH_DATA
    elif mismatched / compared > spec.max_mismatch_rate:
        judgement = Judgement.FAIL
    else:
        judgement = Judgement.PASS
    verdict = ShadowVerdict(
        judgement=judgement,
        compared=compared,
        mismatched=mismatched,
        exact=True,
        max_mismatch_rate=spec.max_mismatch_rate,
        min_compared=spec.min_compared,
        top=top,
    )
    message = verdict.message
    health, reason = {
        Judgement.NOT_ENOUGH_DATA: (Health.PENDING, Reason.COMPARISON_PENDING),
        Judgement.FAIL: (Health.FAILED, Reason.SHADOW_MISMATCH),
        Judgement.PASS: (Health.HEALTHY, Reason.COMPARISON_PASSED),
    }[judgement]
    slow = _too_slow(spec, counts)
    if slow and judgement is not Judgement.NOT_ENOUGH_DATA:
        health, reason, message = Health.FAILED, Reason.SHADOW_TOO_SLOW, f"{slow}; {message}"
        judgement = Judgement.FAIL
    status = ComparisonStatus(
        revision=revision,
        verdict=ComparisonVerdict(judgement.value),
        reason=reason,
        message=message,
        compared=compared,
        mismatched=mismatched,
        mismatch_rate=round(verdict.mismatch_rate, 6) if compared else None,
        shadow_p95=counts.shadow_p95,
        baseline_p95=counts.baseline_p95,
        top_fields=[
            FieldDifference(name=f.name, raw=f.raw, noise=f.noise, real=f.real) for f in top
        ],
        checked_at=checked_at,
    )
    return status, health


def _too_slow(spec: ShadowCompare, counts: Counts) -> str:
    """Why the shadow breaks the latency budget, or "" (no budget, or no latencies)."""
    ratio, shadow, baseline = spec.max_latency_ratio, counts.shadow_p95, counts.baseline_p95
    if ratio is None or shadow is None or baseline is None or baseline <= 0:
        return ""
    if shadow <= ratio * baseline:
        return ""
    return (
        f"the shadow's p95 latency {shadow * 1000:.0f} ms is more than {ratio:g} times the "
        f"baseline's {baseline * 1000:.0f} ms (maxLatencyRatio)"
    )


def unknown(revision: str, reason: str, message: str, checked_at: str | None) -> ComparisonStatus:
    """A comparison that could not be read (Prometheus down, no address)."""
    return ComparisonStatus(
        revision=revision,
        verdict=ComparisonVerdict.UNKNOWN,
        reason=reason,
        message=message,
        checked_at=checked_at,
    )
