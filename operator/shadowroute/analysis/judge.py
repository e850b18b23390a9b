"""The judge: answers + thresholds + policy -> a verdict per metric and for the run.

Pure. The rule it enforces is that a check is decided by exactly one sample: an empty
answer, several series, NaN (0/0: nothing happened in the window) and too few requests
are each reported as what they are, then settled by the metric's no-data policy —
fail, hold or pass — so none of them passes silently or crashes the analysis.

An infinite value is an answer, not an absence: histogram_quantile gives +Inf when the
quantile lies above the highest finite bucket. It fails a bound it is beyond (+Inf
above max, -Inf below min); on the side of no bound it tells nothing, and is settled
by the no-data policy like NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..api.models import MetricCheck, NoDataPolicy, Verdict
from ..reasons import Reason

MAX_MESSAGE = 2000
PASSED = Reason.ANALYSIS_PASSED
FAILED = Reason.ANALYSIS_FAILED
NO_DATA = Reason.NO_DATA
INVALID_QUERY = Reason.INVALID_QUERY
PARTIAL_WINDOW = Reason.PARTIAL_WINDOW


@dataclass(frozen=True)
class Sample:
    """One series of an instant answer."""

    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True)
class Answer:
    """What one query returned: its samples, or why it is unusable (a query Prometheus
    refused, a template that cannot be rendered)."""

    samples: tuple[Sample, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class MetricJudgement:
    name: str
    verdict: Verdict
    reason: str
    message: str
    value: float | None = None
    requests: float | None = None
    query: str = ""
    """The query as sent; a failure quotes it, so the rollback says what was asked."""


@dataclass(frozen=True)
class RunJudgement:
    verdict: Verdict
    reason: str
    message: str
    consecutive_failures: int
    rollback: bool


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.6g}"


def _series(samples: Sequence[Sample], shown: int = 3) -> str:
    labels = ["{" + ",".join(f'{k}="{v}"' for k, v in s.labels) + "}" for s in samples[:shown]]
    more = f" and {len(samples) - shown} more" if len(samples) > shown else ""
    return ", ".join(labels) + more


def _bounds(check: MetricCheck) -> str:
    parts = []
    if check.min is not None:
        parts.append(f"min {fmt(check.min)}")
    if check.max is not None:
        parts.append(f"max {fmt(check.max)}")
    return " and ".join(parts)


def _no_data(
    check: MetricCheck,
    reason: str,
    what: str,
    value: float | None = None,
    requests: float | None = None,
) -> MetricJudgement:
    """Settle an answer that is not one usable value by the metric's no-data policy."""
    policy = check.no_data
    verdict = {
        NoDataPolicy.FAIL: Verdict.FAIL,
        NoDataPolicy.HOLD: Verdict.INCONCLUSIVE,
        NoDataPolicy.PASS: Verdict.PASS,
    }[policy]
    effect = {
        NoDataPolicy.FAIL: "counts as a failure",
        NoDataPolicy.HOLD: "holds the rollout",
        NoDataPolicy.PASS: "lets it pass",
    }[policy]
    message = f"{check.name}: {what}; noData policy {policy.value} {effect}"
    return MetricJudgement(check.name, verdict, reason, message, value, requests)


def request_count(answer: Answer) -> tuple[float | None, str]:
    """The request count from its answer: nothing or NaN is 0 requests; several series
    or an unusable answer is no count at all (with why)."""
    if answer.error:
        return None, f"request count query failed: {answer.error}"
    if len(answer.samples) > 1:
        return None, (
            f"request count query returned {len(answer.samples)} series "
            f"({_series(answer.samples)}); it must return one (wrap it in sum())"
        )
    if not answer.samples or math.isnan(answer.samples[0].value):
        return 0.0, ""
    return answer.samples[0].value, ""


def judge_metric(
    check: MetricCheck, answer: Answer, requests: Answer | None = None, query: str = ""
) -> MetricJudgement:
    """One check's verdict. `requests` is the request count's answer when minRequests
    is set; `query` is the query as sent, kept with the verdict."""
    return replace(_judge(check, answer, requests), query=query)


def _judge(check: MetricCheck, answer: Answer, requests: Answer | None) -> MetricJudgement:
    count: float | None = None
    if answer.error:
        return MetricJudgement(
            check.name, Verdict.INCONCLUSIVE, INVALID_QUERY, f"{check.name}: {answer.error}"
        )
    if check.min_requests is not None:
        if requests is None:
            raise ValueError("minRequests is set: the request count's answer is needed")
        count, problem = request_count(requests)
        if count is None:
            reason = INVALID_QUERY if requests.error else "MultipleSeries"
            if requests.error:
                return MetricJudgement(
                    check.name, Verdict.INCONCLUSIVE, reason, f"{check.name}: {problem}"
                )
            return _no_data(check, reason, problem)
        if count < check.min_requests:
            return _no_data(
                check,
                "TooFewRequests",
                f"{fmt(count)} requests in the window, fewer than minRequests {check.min_requests}",
                requests=count,
            )
    samples = answer.samples
    if not samples:
        return _no_data(check, "NoData", "the query returned no series", requests=count)
    if len(samples) > 1:
        return _no_data(
            check,
            "MultipleSeries",
            f"the query returned {len(samples)} series ({_series(samples)}); it must "
            "return exactly one (aggregate with sum() or pick one with labels)",
            requests=count,
        )
    value = samples[0].value
    if math.isnan(value):
        return _no_data(
            check, "NaN", "the query returned NaN (0/0: no requests in the window?)", None, count
        )
    if check.max is not None and value > check.max:
        return MetricJudgement(
            check.name,
            Verdict.FAIL,
            "AboveMax",
            f"{check.name} = {fmt(value)} above max {fmt(check.max)}",
            value,
            count,
        )
    if check.min is not None and value < check.min:
        return MetricJudgement(
            check.name,
            Verdict.FAIL,
            "BelowMin",
            f"{check.name} = {fmt(value)} below min {fmt(check.min)}",
            value,
            count,
        )
    if math.isinf(value):
        return _no_data(
            check,
            "Infinite",
            f"the query returned {fmt(value)}, which no bound ({_bounds(check)}) decides",
            value,
            count,
        )
    return MetricJudgement(
        check.name,
        Verdict.PASS,
        "WithinBounds",
        f"{check.name} = {fmt(value)} within {_bounds(check)}",
        value,
        count,
    )


def judge_run(
    results: Sequence[MetricJudgement],
    failures_before: int,
    failure_limit: int,
    partial: str = "",
) -> RunJudgement:
    """The run's verdict: any failure fails it (one more in a row; past the limit it
    rolls back), else anything inconclusive holds it (the count stays), else it passes
    (the count restarts) — unless `partial` says why its window cannot back a pass:
    then it is inconclusive too (PartialWindow; the count stays). A failure or a hold
    stands whatever the window."""
    failed = [r for r in results if r.verdict is Verdict.FAIL]
    unsure = [r for r in results if r.verdict is Verdict.INCONCLUSIVE]
    if failed:
        failures = failures_before + 1
        rollback = failures > failure_limit
        tail = (
            f"{failures} failed runs in a row, more than failureLimit {failure_limit}"
            if rollback
            else f"{failures} failed run(s) in a row; failureLimit {failure_limit} tolerated"
        )
        message = "; ".join(
            f"{r.message} (query: {r.query})" if r.query else r.message for r in failed
        )
        return RunJudgement(Verdict.FAIL, FAILED, _cap(f"{message} ({tail})"), failures, rollback)
    if unsure:
        invalid = [r for r in unsure if r.reason == INVALID_QUERY]
        reason = INVALID_QUERY if invalid else NO_DATA
        message = "; ".join(r.message for r in (invalid or unsure))
        return RunJudgement(Verdict.INCONCLUSIVE, reason, _cap(message), failures_before, False)
    message = "; ".join(r.message for r in results) or "no checks configured"
    if partial:
        message = f"within bounds, but not yet a pass: {partial} ({message})"
        return RunJudgement(
            Verdict.INCONCLUSIVE, PARTIAL_WINDOW, _cap(message), failures_before, False
        )
    return RunJudgement(Verdict.PASS, PASSED, _cap(message), 0, False)


def _cap(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
