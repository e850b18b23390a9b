"""checks.ledger: the restart-safe decisions from the records status holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shadowroute.acceptance.ledger import (
    AllPassed,
    CheckRecord,
    CheckState,
    Failed,
    Run,
    Wait,
    for_revision,
    from_status,
    keep_revisions,
    next_step,
    record_result,
    record_start,
    to_status,
)
from shadowroute.acceptance.spec import Check, Hook, HttpCheck

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REV = "abcdef0123"


def check(name: str = "smoke", retries: int = 1, timeout: float = 10, hook=Hook.BEFORE_TRAFFIC):  # type: ignore[no-untyped-def]
    return Check(name, hook, HttpCheck(), timeout_seconds=timeout, retries=retries)


def test_nothing_recorded_runs_the_first_check_first() -> None:
    a, b = check("a"), check("b")
    assert next_step([a, b], REV, (), T0) == Run(a, 1)
    assert next_step([], REV, (), T0) == AllPassed()


def test_a_full_run_with_one_retry() -> None:
    c = check(retries=1)
    records = record_start((), c, REV, 1, T0)
    assert next_step([c], REV, records, T0) == Wait(c, T0 + timedelta(seconds=10))
    records = record_result(records, c, REV, 1, False, "status 503", T0 + timedelta(seconds=1))
    assert records[0].state is CheckState.PENDING
    assert next_step([c], REV, records, T0) == Run(c, 2)
    records = record_start(records, c, REV, 2, T0 + timedelta(seconds=2))
    records = record_result(records, c, REV, 2, False, "status 500", T0 + timedelta(seconds=3))
    assert records[0].state is CheckState.FAILED and records[0].attempts == 2
    assert next_step([c], REV, records, T0 + timedelta(days=1)) == Failed(c, "status 500")


def test_a_pass_lets_the_next_check_run_and_then_all_pass() -> None:
    a, b = check("a"), check("b")
    records = record_result(record_start((), a, REV, 1, T0), a, REV, 1, True, "ok", T0)
    assert next_step([a, b], REV, records, T0) == Run(b, 1)
    records = record_result(record_start(records, b, REV, 1, T0), b, REV, 1, True, "ok", T0)
    assert next_step([a, b], REV, records, T0) == AllPassed()


def test_a_running_attempt_past_its_timeout_is_a_failed_attempt() -> None:
    c = check(retries=1, timeout=10)
    records = record_start((), c, REV, 1, T0)
    late = T0 + timedelta(seconds=10)
    assert next_step([c], REV, records, late) == Run(c, 2)
    records = record_start(records, c, REV, 2, late)
    assert "attempt 1 of 2 timed out after 10s" in records[0].message
    step = next_step([c], REV, records, late + timedelta(seconds=10))
    assert isinstance(step, Failed) and "attempt 2 of 2 timed out" in step.message
    records = record_result(records, c, REV, 2, False, step.message, late)
    assert records[0].state is CheckState.FAILED


def test_stale_starts_and_results_change_nothing() -> None:
    c = check(retries=2)
    records = record_start((), c, REV, 1, T0)
    assert record_start(records, c, REV, 1, T0) == records  # already begun
    assert record_result(records, c, REV, 2, True, "ok", T0) == records  # another attempt
    done = record_result(records, c, REV, 1, True, "ok", T0)
    assert record_result(done, c, REV, 1, False, "late", T0) == done
    assert record_start(done, c, REV, 2, T0) == done
    with pytest.raises(ValueError):
        record_start((), c, REV, 4, T0)


def test_each_step_checks_are_recorded_per_step() -> None:
    c = check(hook=Hook.EACH_STEP)
    step0 = record_result(
        record_start((), c, REV, 1, T0, step=0), c, REV, 1, True, "ok", T0, step=0
    )
    assert next_step([c], REV, step0, T0, step=0) == AllPassed()
    assert next_step([c], REV, step0, T0, step=1) == Run(c, 1)
    with pytest.raises(ValueError):
        next_step([c], REV, step0, T0)
    with pytest.raises(ValueError):
        next_step([check()], REV, (), T0, step=1)


def test_status_round_trip_and_pruning() -> None:
    c = check()
    records = record_start((), c, REV, 1, T0)
    records = record_result(records, c, REV, 1, False, "status 503", T0 + timedelta(seconds=2))
    assert tuple(from_status(to_status(r)) for r in records) == records
    assert to_status(records[0])["startedAt"] == "2026-12-01T12:00:00Z"
    other = CheckRecord("smoke", Hook.BEFORE_TRAFFIC, "old", CheckState.PASSED, 1)
    assert for_revision((*records, other), "old") == (other,)
    assert keep_revisions((*records, other), [REV]) == records


# --------------------------------------------------------------------------- properties

CHECKS = [check("a", retries=0), check("b", retries=2), check("c", retries=1, timeout=5)]
states = st.sampled_from(list(CheckState))
THIS_REVISION = st.just(REV)


@st.composite
def records_of(draw: st.DrawFn, revision: st.SearchStrategy[str] = THIS_REVISION) -> CheckRecord:
    c = draw(st.sampled_from(CHECKS))
    state = draw(states)
    attempts = draw(st.integers(1 if state is CheckState.RUNNING else 0, c.max_attempts))
    started = T0 + timedelta(seconds=draw(st.integers(-60, 60)))
    return CheckRecord(
        c.name, c.hook, draw(revision), state, attempts, started, None, draw(st.text(max_size=3))
    )


nows = st.integers(-60, 120).map(lambda s: T0 + timedelta(seconds=s))


@given(st.lists(records_of(), max_size=8), st.randoms(), nows)
def test_the_order_of_records_never_matters(records, rnd, now) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(records)
    rnd.shuffle(shuffled)
    assert next_step(CHECKS, REV, records, now) == next_step(CHECKS, REV, shuffled, now)


@given(st.lists(records_of(), max_size=8), st.randoms(), nows)
def test_a_passed_check_is_never_rerun(records, rnd, now) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(records)
    rnd.shuffle(shuffled)
    passed = {r.name for r in records if r.state is CheckState.PASSED}
    step = next_step(CHECKS, REV, shuffled, now)
    if isinstance(step, Run | Wait | Failed):
        assert step.check.name not in passed


@given(
    st.lists(records_of(), max_size=6),
    st.lists(records_of(st.sampled_from(["other", "older"])), max_size=6),
    st.randoms(),
    nows,
)
def test_other_revisions_never_matter(mine, theirs, rnd, now) -> None:  # type: ignore[no-untyped-def]
    mixed = mine + theirs
    rnd.shuffle(mixed)
    assert next_step(CHECKS, REV, mixed, now) == next_step(CHECKS, REV, mine, now)
    c = CHECKS[1]
    after = record_start(mixed, c, REV, 1, now)
    assert [r for r in after if r.revision != REV] == [r for r in mixed if r.revision != REV]


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30)), max_size=40))
def test_attempts_never_exceed_the_budget(script) -> None:  # type: ignore[no-untyped-def]
    """Drive the ledger as the shell would, with arbitrary outcomes and clock jumps
    (a jump past the timeout loses the attempt): no run beyond 1 + retries, ever, and
    a final answer within the budget."""
    records: tuple[CheckRecord, ...] = ()
    now = T0
    runs = {c.name: 0 for c in CHECKS}
    for passed, seconds in script:
        now += timedelta(seconds=seconds)
        step = next_step(CHECKS, REV, records, now)
        if isinstance(step, Run):
            runs[step.check.name] += 1
            assert step.attempt == runs[step.check.name] <= step.check.max_attempts
            records = record_start(records, step.check, REV, step.attempt, now)
        elif isinstance(step, Wait):
            if seconds % 3:  # the result arrives; otherwise the clock may pass the deadline
                attempt = next(r.attempts for r in records if r.name == step.check.name)
                records = record_result(records, step.check, REV, attempt, passed, "x", now)
        elif isinstance(step, Failed):
            r = next(r for r in records if r.name == step.check.name)
            records = record_result(records, step.check, REV, r.attempts, False, step.message, now)
            later = next_step(CHECKS, REV, records, now + timedelta(days=9))
            assert isinstance(later, Failed) and later.check == step.check  # stays failed
            break
        else:
            break
    for r in records:
        check_ = next(c for c in CHECKS if c.name == r.name)
        assert r.attempts <= check_.max_attempts
