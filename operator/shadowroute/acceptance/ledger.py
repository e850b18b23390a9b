"""What ``.status`` records of the acceptance checks, and what to do next from it alone.

The operator may be killed at any instant, so the decision is a pure function of the
records it reads back (and of ``now``, passed in): a check that passed for a revision
is never rerun, one that failed stays failed (until the shell clears its records, as
``kubectl shadowroute retry`` will), and an attempt that was running when the operator
died is waited for until its timeout and then counts as a failed attempt, because a
Job may still be running and an http request may have been lost, and the record
cannot tell which.

One record per check, hook, revision and step (`Hook.EACH_STEP` checks run again at
each canary step; every other hook has ``step=None``). It holds the check's latest
state, not a log: ``attempts`` counts the attempts begun so far. States:

- ``Pending``: an attempt failed and the retry budget allows another;
- ``Running``: attempt ``attempts`` began at ``started_at``;
- ``Passed`` / ``Failed``: final for this revision (and step); ``message`` says why.

Records of other revisions (or steps) are kept untouched and ignored: they are the
history of another version. Functions return new tuples; a record is never changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ..api.models import CheckState, format_timestamp, parse_timestamp
from .spec import Check, Hook

FINAL = frozenset({CheckState.PASSED, CheckState.FAILED})


@dataclass(frozen=True)
class CheckRecord:
    """A check's state for one revision (and step), as status holds it."""

    name: str
    hook: Hook
    revision: str
    state: CheckState
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""
    step: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "hook", Hook(self.hook))
        object.__setattr__(self, "state", CheckState(self.state))
        if self.attempts < 0:
            raise ValueError("attempts is not negative")
        if self.state is CheckState.RUNNING and (self.started_at is None or self.attempts < 1):
            raise ValueError("a Running record has begun an attempt: started_at, attempts ≥ 1")

    def key(self) -> tuple[str, Hook, str, int | None]:
        return (self.name, self.hook, self.revision, self.step)


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Run:
    """Begin attempt ``attempt`` (1-based) of ``check``: record it with `record_start`
    before acting, so that a restart finds it."""

    check: Check
    attempt: int


@dataclass(frozen=True)
class Wait:
    """An attempt is in flight: look again at ``until`` (its deadline) or when its
    result arrives, whichever is first."""

    check: Check
    until: datetime


@dataclass(frozen=True)
class AllPassed:
    """Every check of the hook passed for this revision (and step): the stage may go on."""


@dataclass(frozen=True)
class Failed:
    """``check`` failed past its retries: roll back (reason ``CheckFailed``) with this
    message. When it comes from a timed-out attempt the record is not final yet: record
    it with `record_result` so that the failure survives a restart."""

    check: Check
    message: str


Step = Run | Wait | AllPassed | Failed


def _moment(at: datetime | None) -> tuple[bool, float]:
    return (at is not None, at.timestamp() if at is not None else 0.0)


def _rank(record: CheckRecord) -> tuple[Any, ...]:
    """Which of several records of one key counts, whatever their order: a final one
    over any other (Passed over Failed: a pass was really seen), then the most attempts,
    then the latest; the rest only breaks ties so that the choice is total."""
    final = {CheckState.PASSED: 2, CheckState.FAILED: 1}.get(record.state, 0)
    return (
        final,
        record.attempts,
        _moment(record.started_at),
        _moment(record.finished_at),
        record.state.value,
        record.message,
    )


def find(
    records: Iterable[CheckRecord], check: Check, revision: str, step: int | None = None
) -> CheckRecord | None:
    """The record that counts for this check, revision and step, or None."""
    key = (check.name, check.hook, revision, step)
    matching = [r for r in records if r.key() == key]
    return max(matching, key=_rank) if matching else None


def _check_step(check: Check, step: int | None) -> None:
    if (check.hook is Hook.EACH_STEP) != (step is not None):
        raise ValueError(f"check {check.name}: a step is given exactly for {Hook.EACH_STEP} checks")


def deadline(check: Check, record: CheckRecord) -> datetime:
    """When the running attempt of ``record`` times out."""
    assert record.started_at is not None
    return record.started_at + timedelta(seconds=check.timeout_seconds)


def timed_out_message(check: Check, attempt: int) -> str:
    return f"attempt {attempt} of {check.max_attempts} timed out after {check.timeout_seconds:g}s"


def next_step(
    checks: Sequence[Check],
    revision: str,
    records: Iterable[CheckRecord],
    now: datetime,
    step: int | None = None,
) -> Step:
    """What to do for one hook's checks, one at a time in declared order (the first
    that is not passed decides): begin an attempt, wait for the one in flight, stop on
    a failure, or go on when all passed. ``step`` is the canary step for
    `Hook.EACH_STEP` checks, None for the other hooks."""
    records = tuple(records)
    for check in checks:
        _check_step(check, step)
        record = find(records, check, revision, step)
        if record is None:
            return Run(check, 1)
        if record.state is CheckState.PASSED:
            continue
        if record.state is CheckState.FAILED:
            return Failed(check, record.message)
        if record.state is CheckState.RUNNING:
            until = deadline(check, record)
            if now < until:
                return Wait(check, until)
            if record.attempts >= check.max_attempts:
                return Failed(check, timed_out_message(check, record.attempts))
        # Pending, or Running past its deadline with budget left: the next attempt
        if record.attempts >= check.max_attempts:  # a budget lowered since: no more
            return Failed(check, record.message or "no attempts left")
        return Run(check, record.attempts + 1)
    return AllPassed()


# --------------------------------------------------------------------------- records


def _put(records: Sequence[CheckRecord], new: CheckRecord) -> tuple[CheckRecord, ...]:
    """``records`` with every record of ``new``'s key replaced by ``new`` (at the first
    one's place, else appended): one record per key from then on."""
    out: list[CheckRecord] = []
    placed = False
    for r in records:
        if r.key() != new.key():
            out.append(r)
        elif not placed:
            out.append(new)
            placed = True
    if not placed:
        out.append(new)
    return tuple(out)


def record_start(
    records: Sequence[CheckRecord],
    check: Check,
    revision: str,
    attempt: int,
    now: datetime,
    step: int | None = None,
) -> tuple[CheckRecord, ...]:
    """The records once attempt ``attempt`` began: what `next_step`'s `Run` asks to be
    written before the request is sent or the Job created. A final record, or a start
    that is not the next attempt, leaves the records as they are (a stale decision)."""
    _check_step(check, step)
    if not 1 <= attempt <= check.max_attempts:
        raise ValueError(f"check {check.name} allows attempts 1..{check.max_attempts}: {attempt}")
    current = find(records, check, revision, step)
    done = current.attempts if current is not None else 0
    if (current is not None and current.state in FINAL) or attempt != done + 1:
        return tuple(records)
    message = current.message if current is not None else ""
    if current is not None and current.state is CheckState.RUNNING:
        message = timed_out_message(check, current.attempts)
    new = CheckRecord(
        name=check.name,
        hook=check.hook,
        revision=revision,
        state=CheckState.RUNNING,
        attempts=attempt,
        started_at=now,
        finished_at=None,
        message=message,
        step=step,
    )
    return _put(records, new)


def record_result(
    records: Sequence[CheckRecord],
    check: Check,
    revision: str,
    attempt: int,
    passed: bool,
    message: str,
    now: datetime,
    step: int | None = None,
) -> tuple[CheckRecord, ...]:
    """The records once attempt ``attempt`` ended: Passed; or, failed, Pending while the
    budget allows another attempt, else Failed. A result for another attempt than the
    current one, or for a final record, is stale and changes nothing."""
    _check_step(check, step)
    current = find(records, check, revision, step)
    if current is None or current.state in FINAL or current.attempts != attempt:
        return tuple(records)
    if passed:
        state = CheckState.PASSED
    elif attempt >= check.max_attempts:
        state = CheckState.FAILED
    else:
        state = CheckState.PENDING
    return _put(records, replace(current, state=state, finished_at=now, message=message))


def for_revision(records: Iterable[CheckRecord], revision: str) -> tuple[CheckRecord, ...]:
    """The records of one revision (what ``kubectl shadowroute status`` shows)."""
    return tuple(r for r in records if r.revision == revision)


def keep_revisions(
    records: Iterable[CheckRecord], revisions: Iterable[str]
) -> tuple[CheckRecord, ...]:
    """Only the records of these revisions (the stable and the candidate one): status
    stays bounded however many versions went by."""
    wanted = set(revisions)
    return tuple(r for r in records if r.revision in wanted)


# --------------------------------------------------------------------------- status


def to_status(record: CheckRecord) -> dict[str, Any]:
    """A record as ``.status`` spells it (camelCase, RFC 3339, absent fields left out)."""
    out: dict[str, Any] = {
        "name": record.name,
        "hook": str(record.hook),
        "revision": record.revision,
        "state": str(record.state),
        "attempts": record.attempts,
    }
    if record.step is not None:
        out["step"] = record.step
    if record.started_at is not None:
        out["startedAt"] = format_timestamp(record.started_at)
    if record.finished_at is not None:
        out["finishedAt"] = format_timestamp(record.finished_at)
    if record.message:
        out["message"] = record.message
    return out


def from_status(data: Mapping[str, Any]) -> CheckRecord:
    """A record read back from ``.status``: the inverse of `to_status` (to the second)."""
    started, finished = data.get("startedAt"), data.get("finishedAt")
    return CheckRecord(
        name=data["name"],
        hook=Hook(data["hook"]),
        revision=data["revision"],
        state=CheckState(data["state"]),
        attempts=int(data.get("attempts", 0)),
        started_at=parse_timestamp(started) if started else None,
        finished_at=parse_timestamp(finished) if finished else None,
        message=data.get("message", ""),
        step=data.get("step"),
    )
