"""The judge: exactly one sample decides a check; everything else is reported as what
it is and settled by the no-data policy; runs count failures in a row."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shadowroute.analysis.judge import (
    Answer,
    MetricJudgement,
    Sample,
    judge_metric,
    judge_run,
    request_count,
)
from shadowroute.api.models import MetricCheck, NoDataPolicy, Verdict

POLICY_VERDICT = {
    NoDataPolicy.FAIL: Verdict.FAIL,
    NoDataPolicy.HOLD: Verdict.INCONCLUSIVE,
    NoDataPolicy.PASS: Verdict.PASS,
}


def check(**kw) -> MetricCheck:
    kw.setdefault("name", "errors")
    kw.setdefault("query", "x")
    if "min" not in kw and "max" not in kw:
        kw["max"] = 0.05
    return MetricCheck(**kw)


def one(value: float, **labels: str) -> Answer:
    return Answer(samples=(Sample(tuple(sorted(labels.items())), value),))


finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
bounds = st.tuples(st.none() | finite, st.none() | finite).filter(
    lambda b: (
        (b[0] is not None or b[1] is not None) and (b[0] is None or b[1] is None or b[0] <= b[1])
    )
)
policies = st.sampled_from(list(NoDataPolicy))


# --------------------------------------------------------------------------- one sample


@given(value=finite, b=bounds, policy=policies)
def test_one_finite_sample_passes_exactly_within_the_bounds(value, b, policy) -> None:
    low, high = b
    c = check(min=low, max=high, no_data=policy)
    j = judge_metric(c, one(value))
    inside = (low is None or value >= low) and (high is None or value <= high)
    assert j.verdict is (Verdict.PASS if inside else Verdict.FAIL)
    assert j.value == value
    assert j.reason in (("WithinBounds",) if inside else ("AboveMax", "BelowMin"))


def test_bounds_are_inclusive() -> None:
    assert judge_metric(check(min=1, max=2), one(1.0)).verdict is Verdict.PASS
    assert judge_metric(check(min=1, max=2), one(2.0)).verdict is Verdict.PASS


def test_a_failure_names_the_value_and_the_bound() -> None:
    j = judge_metric(check(max=0.05), one(0.2), query="sum(x)")
    assert j.message == "errors = 0.2 above max 0.05" and j.query == "sum(x)"


# --------------------------------------------------------------------------- no single value


@given(policy=policies)
def test_an_empty_answer_is_no_data_settled_by_the_policy(policy) -> None:
    j = judge_metric(check(no_data=policy), Answer())
    assert (j.verdict, j.reason) == (POLICY_VERDICT[policy], "NoData")
    assert f"noData policy {policy.value}" in j.message and j.value is None


@given(policy=policies, n=st.integers(2, 50), value=finite)
def test_several_series_are_reported_and_settled_by_the_policy(policy, n, value) -> None:
    answer = Answer(samples=tuple(Sample((("pod", f"p{i}"),), value) for i in range(n)))
    j = judge_metric(check(no_data=policy), answer)
    assert (j.verdict, j.reason) == (POLICY_VERDICT[policy], "MultipleSeries")
    assert f"returned {n} series" in j.message and 'pod="p0"' in j.message


@given(policy=policies)
def test_nan_is_no_data_settled_by_the_policy(policy) -> None:
    j = judge_metric(check(no_data=policy), one(math.nan))
    assert (j.verdict, j.reason) == (POLICY_VERDICT[policy], "NaN")


@given(policy=policies)
def test_infinity_beyond_a_bound_fails_whatever_the_policy(policy) -> None:
    assert judge_metric(check(max=0.5, no_data=policy), one(math.inf)).verdict is Verdict.FAIL
    assert judge_metric(check(min=1, no_data=policy), one(-math.inf)).verdict is Verdict.FAIL


@given(policy=policies)
def test_infinity_no_bound_decides_is_settled_by_the_policy(policy) -> None:
    for c, v in (
        (check(min=1, no_data=policy), math.inf),
        (check(max=1, no_data=policy), -math.inf),
    ):
        j = judge_metric(c, one(v))
        assert (j.verdict, j.reason) == (POLICY_VERDICT[policy], "Infinite")


def test_a_query_prometheus_refused_is_inconclusive_whatever_the_policy() -> None:
    for policy in NoDataPolicy:
        j = judge_metric(check(no_data=policy), Answer(error="bad_data: parse error"))
        assert (j.verdict, j.reason) == (Verdict.INCONCLUSIVE, "InvalidQuery")


@given(
    samples=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
    b=bounds,
    policy=st.sampled_from([NoDataPolicy.FAIL, NoDataPolicy.HOLD]),
)
def test_never_a_silent_pass(samples, b, policy) -> None:
    """Without the pass policy, only one sample within the bounds passes."""
    c = check(min=b[0], max=b[1], no_data=policy)
    answer = Answer(samples=tuple(Sample((("i", str(i)),), v) for i, v in enumerate(samples)))
    j = judge_metric(c, answer)
    if j.verdict is Verdict.PASS:
        assert len(samples) == 1 and not math.isnan(samples[0])
        v = samples[0]
        assert (b[0] is None or v >= b[0]) and (b[1] is None or v <= b[1])


# --------------------------------------------------------------------------- minRequests


@given(count=st.integers(0, 200), minimum=st.integers(1, 100), policy=policies)
def test_too_few_requests_is_no_data_settled_by_the_policy(count, minimum, policy) -> None:
    c = check(preset="error-rate", query=None, min_requests=minimum, no_data=policy)
    j = judge_metric(c, one(0.5), requests=one(float(count)))
    if count < minimum:
        assert (j.verdict, j.reason) == (POLICY_VERDICT[policy], "TooFewRequests")
        assert j.requests == count
    else:
        assert (j.verdict, j.reason) == (Verdict.FAIL, "AboveMax"), "then the value decides"


def test_no_request_series_at_all_counts_as_zero_requests() -> None:
    assert request_count(Answer()) == (0.0, "")
    assert request_count(one(math.nan)) == (0.0, "")
    c = check(preset="error-rate", query=None, min_requests=10, no_data="fail")
    assert judge_metric(c, one(0.0), requests=Answer()).reason == "TooFewRequests"


def test_a_request_count_of_several_series_is_reported() -> None:
    c = check(query="x", request_count_query="y", min_requests=1, no_data="hold")
    two = Answer(samples=(Sample((("a", "1"),), 5.0), Sample((("a", "2"),), 5.0)))
    j = judge_metric(c, one(0.0), requests=two)
    assert (j.verdict, j.reason) == (Verdict.INCONCLUSIVE, "MultipleSeries")
    assert "request count query returned 2 series" in j.message


def test_min_requests_without_the_count_answer_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        judge_metric(check(preset="error-rate", query=None, min_requests=1), one(0.0))


# --------------------------------------------------------------------------- runs


def result(verdict: Verdict, reason: str = "", name: str = "m") -> MetricJudgement:
    return MetricJudgement(name, verdict, reason, f"{name} {verdict}", query=f"q_{name}")


@given(
    verdicts=st.lists(st.sampled_from(list(Verdict)), max_size=5),
    before=st.integers(0, 10),
    limit=st.integers(0, 10),
)
def test_run_verdict_and_failures_in_a_row(verdicts, before, limit) -> None:
    run = judge_run([result(v) for v in verdicts], before, limit)
    if Verdict.FAIL in verdicts:
        assert run.verdict is Verdict.FAIL and run.consecutive_failures == before + 1
        assert run.rollback is (before + 1 > limit)
    elif Verdict.INCONCLUSIVE in verdicts:
        assert run.verdict is Verdict.INCONCLUSIVE and run.consecutive_failures == before
        assert not run.rollback, "no evidence is never a rollback by itself"
    else:
        assert run.verdict is Verdict.PASS and run.consecutive_failures == 0
        assert not run.rollback


def test_failure_limit_zero_rolls_back_at_the_first_failed_run() -> None:
    run = judge_run([result(Verdict.FAIL)], 0, 0)
    assert run.rollback and run.reason == "AnalysisFailed"
    assert "(query: q_m)" in run.message and "more than failureLimit 0" in run.message


def test_an_invalid_query_outranks_no_data_in_the_reason() -> None:
    run = judge_run(
        [
            result(Verdict.INCONCLUSIVE, "NoData", "a"),
            result(Verdict.INCONCLUSIVE, "InvalidQuery", "b"),
        ],
        0,
        2,
    )
    assert run.reason == "InvalidQuery" and run.message == "b Inconclusive"


def test_no_checks_pass() -> None:
    run = judge_run([], 3, 2)
    assert (run.verdict, run.consecutive_failures, run.message) == (
        Verdict.PASS,
        0,
        "no checks configured",
    )


@given(value=st.floats())
def test_the_judge_never_raises_on_any_value(value: float) -> None:
    for policy in NoDataPolicy:
        judge_metric(check(min=-1, max=1, no_data=policy), one(value))
