"""One comparator's state and decisions: what a mirrored request's three answers count
as, and the summary. Pure and synchronous (no I/O, no clock): the server does the asks
and hands the answers here; the metrics collector and /summary read the same state.

Decisions, per mirrored request (candidate once, baseline twice):
- a body past ``--max-body-bytes`` (the request's or any answer's): skipped, ``too-large``;
- a baseline ask without an answer (timeout, connection error): skipped,
  ``baseline-failed`` — without two old answers there is no noise estimate, and an old
  version that fails says nothing about the new one;
- a candidate ask without an answer while both baselines answered: compared, and a
  difference on the one field ``status`` (shown as "no answer" and the error in the
  samples): a new version that times out or refuses connections where the old one
  answers is exactly what a user wants to hear about (Diffy, too, treats an exception
  as an answer);
- otherwise compared: `differ` gives raw (baseline#1 vs candidate) and noise
  (baseline#1 vs baseline#2), `Tally.record` counts them.
Dropped (the comparator could not compare, whatever the request): ``busy`` (max
in-flight reached: never queued) and ``error`` (a bug of ours, logged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import Config
from .differ import STATUS, Response
from .latency import Reservoir
from .samples import Sample, Samples, Shown
from .tally import Tally

CANDIDATE = "candidate"
BASELINE = "baseline"
SIDES = (CANDIDATE, BASELINE)

SKIP_METHOD = "method"
SKIP_TOO_LARGE = "too-large"
SKIP_BASELINE_FAILED = "baseline-failed"
SKIP_REASONS = (SKIP_METHOD, SKIP_TOO_LARGE, SKIP_BASELINE_FAILED)
DROP_BUSY = "busy"
DROP_ERROR = "error"
DROP_STALLED = "stalled"
"""The mirrored request's body did not arrive within the ask timeout."""
DROP_REASONS = (DROP_BUSY, DROP_ERROR, DROP_STALLED)

# What an ask without an answer was.
TIMEOUT = "timeout"
CONNECT = "connect"
FAILED = "error"
TOO_LARGE = "too-large"

COMPARED = "compared"
MAX_NAMES = 100
TOP_FIELDS = 20


@dataclass(frozen=True)
class Request:
    """The mirrored request as it is asked again: target still percent-encoded, headers
    as sent upstream (original Host)."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def response(self) -> Response:
        return Response(self.status, self.headers, self.body)


@dataclass(frozen=True)
class NoAnswer:
    """An ask that gave nothing to compare: `reason` is TIMEOUT, CONNECT, FAILED or
    TOO_LARGE (an answer whose body was past the limit)."""

    reason: str


Outcome = Answer | NoAnswer


class Comparison:
    """Counts of one comparator, for one route and revision."""

    def __init__(self, config: Config, *, max_names: int = MAX_NAMES) -> None:
        self.config = config
        self.tally = Tally(max_names=max_names)
        self.samples = Samples(per_field=config.samples)
        self.skipped: dict[str, int] = dict.fromkeys(SKIP_REASONS, 0)
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.latency: dict[str, Reservoir] = {side: Reservoir() for side in SIDES}
        self.no_answers: dict[str, dict[str, int]] = {side: {} for side in SIDES}

    def skip(self, reason: str) -> str:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        return reason

    def drop(self, reason: str) -> str:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return reason

    def timed(self, side: str, seconds: float) -> None:
        """One answer's time (asks without an answer are not timed)."""
        self.latency[side].add(seconds)

    def observe(self, request: Request, candidate: Outcome, first: Outcome, second: Outcome) -> str:
        """Count one mirrored request's answers (see the module); COMPARED or the reason
        it was skipped."""
        for side, outcome in ((CANDIDATE, candidate), (BASELINE, first), (BASELINE, second)):
            if isinstance(outcome, NoAnswer):
                counts = self.no_answers[side]
                counts[outcome.reason] = counts.get(outcome.reason, 0) + 1
        outcomes = (candidate, first, second)
        if any(isinstance(o, NoAnswer) and o.reason == TOO_LARGE for o in outcomes):
            return self.skip(SKIP_TOO_LARGE)
        if not isinstance(first, Answer) or not isinstance(second, Answer):
            return self.skip(SKIP_BASELINE_FAILED)
        rules = self.config.rules
        if isinstance(candidate, Answer):
            raw, noise = rules.observe(first.response(), candidate.response(), second.response())
        else:
            raw, noise = frozenset({STATUS}), rules.differences(first.response(), second.response())
        self.tally.record(raw, noise)
        if raw:
            self.samples.offer(raw, lambda: self._sample(request, candidate, first), self._gap)
        return COMPARED

    def _gap(self, name: str) -> int:
        return self.tally.count(name).gap

    def _sample(self, request: Request, candidate: Outcome, baseline: Answer) -> Sample:
        bodies = self.config.compare_bodies
        if isinstance(candidate, Answer):
            shown = Shown.answer(candidate.status, candidate.headers, candidate.body, bodies=bodies)
        else:
            shown = Shown.no_answer(candidate.reason)
        return Sample.of(
            request.method,
            request.path,
            request.headers,
            shown,
            Shown.answer(baseline.status, baseline.headers, baseline.body, bodies=bodies),
        )

    def summary(self) -> dict[str, Any]:
        """What GET /summary answers (and ``kubectl shadowroute diff`` shows)."""
        config, tally = self.config, self.tally
        verdict = tally.verdict(config.max_mismatch_rate, config.min_compared)
        return {
            "route": config.route,
            "revision": config.revision,
            "compared": verdict.compared,
            "mismatched": verdict.mismatched,
            "exact": verdict.exact,
            "mismatchRate": verdict.mismatch_rate,
            "verdict": {"judgement": str(verdict.judgement), "message": verdict.message},
            "fields": [
                {"name": f.name, "raw": f.raw, "noise": f.noise, "real": f.real}
                for f in tally.fields[:TOP_FIELDS]
            ],
            "skipped": dict(self.skipped),
            "dropped": dict(self.dropped),
            "noAnswer": {side: dict(counts) for side, counts in self.no_answers.items()},
            "latency": {side: r.as_dict() for side, r in self.latency.items()},
            "samples": self.samples.listed(lambda name: (-self._gap(name), name)),
        }
