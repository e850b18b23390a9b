"""What the analysis looks at now, and when it runs next. Pure.

It runs in the stages where a new revision takes (or may take back) real traffic:
Shadowing, Progressing, Promoting, and Succeeded while the previous revision is still
warm — a failure there moves traffic back to it at once. It waits until the new
revision receives traffic (its first step ready, or the mirror on): before that a
"no data" would only be the pods starting, and a `fail` policy would roll them back
for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..api.duration import parse_duration
from ..api.models import (
    AnalysisSpec,
    AnalysisStatus,
    ShadowRouteStatus,
    Verdict,
    parse_timestamp,
)
from ..names import CANARY, PRIMARY, SHADOW, Stage, child_name
from ..rollout.observe import AnalysisSignal, Health
from ..stages import analysis_target, in_rollout
from .templates import Context

PENDING = "AnalysisPending"


@dataclass(frozen=True)
class Scope:
    """The revision under analysis and the Service its traffic reaches."""

    revision: str
    target: str
    baseline: str
    """The revision the primary Deployment runs: what the new one is compared with."""
    receiving_traffic: bool


def scope_of(status: ShadowRouteStatus, name: str) -> Scope | None:
    """What to analyse in this status; None when no new revision is on trial."""
    target = analysis_target(status)
    if target is None:
        return None
    return Scope(
        target.revision, child_name(name, target.role), target.baseline, target.receiving_traffic
    )


def traffic_start(status: ShadowRouteStatus, now: datetime) -> datetime:
    """When the Service under analysis began to carry the new revision's traffic: after
    the second in which its stage became ready (stored to the second), else when the
    rollout began, else now."""
    if status.stage_ready_at:
        return parse_timestamp(status.stage_ready_at) + timedelta(seconds=1)
    if status.rollout_started_at:
        return parse_timestamp(status.rollout_started_at)
    return now


def window(spec: AnalysisSpec, since: datetime, now: datetime) -> float:
    """The rate window: spec.analysis.window, or only the time since the traffic began
    (shorter than two scrapes, a rate has no data yet: the honest answer). Rounded to
    the millisecond, as {{ window }} is written in PromQL."""
    seconds = min(parse_duration(spec.window), (now - since).total_seconds())
    return max(round(seconds, 3), 0.001)


def weight_start(status: ShadowRouteStatus, since: datetime) -> datetime:
    """When the Service under analysis began to carry traffic at its current weight
    (or mirror percent), never before `since` (the analysis' trafficSince): after the
    second of promotedAt in Succeeded (the canary took 100 % then), else after the
    second of stageReadyAt (the step's weight, the mirror, was set then), else since."""
    if status.stage == Stage.SUCCEEDED and status.promoted_at:
        start = parse_timestamp(status.promoted_at) + timedelta(seconds=1)
    elif in_rollout(status.stage) and status.stage_ready_at:
        start = parse_timestamp(status.stage_ready_at) + timedelta(seconds=1)
    else:
        start = since
    return max(start, since)


def settle(spec: AnalysisSpec) -> float:
    """How long after the traffic at a weight began a window may start and still back
    a pass: half of spec.analysis.window, which is at least two scrape intervals — so
    it is at least one scrape, and every series that traffic created has been scraped
    once before the window opens (Prometheus' rate counts nothing of a series before
    its first sample)."""
    return parse_duration(spec.window) / 2


def pass_from(spec: AnalysisSpec, start: datetime) -> datetime:
    """The earliest window start that can back a pass at the weight that began at
    `start`."""
    return start + timedelta(seconds=settle(spec))


def partial_window(
    spec: AnalysisSpec, status: ShadowRouteStatus, since: datetime, now: datetime, span: float
) -> str:
    """Why a run at `now` over a window of `span` seconds cannot back a pass, or ""
    when it can. It can when the window [now - span, now] starts at least settle()
    after the traffic at the current weight began: then it holds only that weight's
    traffic, and no series it reads was born inside it. A failure needs no such
    window: a rate that under-reads and still breaks a bound is a failure anyway."""
    start = weight_start(status, since)
    need = pass_from(spec, start)
    opened = now - timedelta(seconds=span)
    if opened >= need:
        return ""
    counts_at = need + timedelta(seconds=parse_duration(spec.window))
    return (
        f"the window opened at {run_time(opened)}, before {run_time(need)} (half a window "
        f"after the traffic at this weight began, {run_time(start)}): a pass needs a window "
        f"that holds only that traffic, scraped; the first run from {run_time(counts_at)} "
        "can pass"
    )


def context(
    spec: AnalysisSpec,
    status: ShadowRouteStatus,
    scope: Scope,
    namespace: str,
    name: str,
    window_seconds: float,
) -> Context:
    return Context(
        namespace=namespace,
        name=name,
        primary=child_name(name, PRIMARY),
        canary=child_name(name, CANARY),
        shadow=child_name(name, SHADOW),
        target=scope.target,
        revision=scope.revision,
        stable_revision=scope.baseline,
        canary_revision=status.canary_revision or scope.revision,
        interval=parse_duration(spec.interval),
        window=window_seconds,
    )


TICK_SLACK = 5.0
"""Seconds a run may start after its tick and still evaluate at the tick (at most half
an interval); a later one evaluates at its own time."""
EARLY = timedelta(milliseconds=50)
"""A run is due this much before its time (a timer that fires a little early)."""
MIN_GAP = 1.0
"""Seconds from a run to the next tick it may be followed at, at most."""


def next_tick(after: datetime, interval: float) -> datetime:
    """The first tick at least `min_gap` after `after`. Ticks are the multiples of the
    interval since the epoch, so routes with the same interval run at the same
    instants, and their queries can be batched (`prometheus.Client.ask`); runs on time
    are an interval apart, and a run off the ticks (at once, for a change) is followed
    by one at most an interval later (plus the gap), so a breach that shows right after
    a step starts is seen within an interval, as with unaligned runs."""
    k = math.ceil((after.timestamp() + min_gap(interval)) / interval)
    return datetime.fromtimestamp(k * interval, UTC)


def min_gap(interval: float) -> float:
    """Seconds between a run and the next one at least: a tenth of the interval, at
    most MIN_GAP (a run right after another reads the same data)."""
    return min(MIN_GAP, interval / 10)


def next_run(spec: AnalysisSpec, last: AnalysisStatus) -> datetime | None:
    """When the next run is due by the clock (None: never ran, due now): the next tick
    after the last run."""
    if not last.last_run_at:
        return None
    return next_tick(parse_timestamp(last.last_run_at), parse_duration(spec.interval))


def evaluation_time(
    spec: AnalysisSpec, last: AnalysisStatus, now: datetime
) -> tuple[datetime, float | None]:
    """The time a due run evaluates its queries at, and the interval when that is a
    tick: the tick the run is due at when it runs on time (up to 50 ms early, up to
    TICK_SLACK or half an interval late), so that every route of that interval asks
    Prometheus about the same instant; else `now` (a first run, a run for a change, a
    late run), and None."""
    when = next_run(spec, last)
    if when is None or now < when - EARLY:
        return now, None
    interval = parse_duration(spec.interval)
    tick = datetime.fromtimestamp(math.floor((now + EARLY).timestamp() / interval) * interval, UTC)
    if (now - tick).total_seconds() > min(TICK_SLACK, interval / 2):
        return now, None
    return tick, interval


def due(spec: AnalysisSpec, last: AnalysisStatus, scope: Scope, now: datetime) -> bool:
    """A run is due when the interval has passed, or what it would look at changed (a
    new revision, the shadow giving way to the canary, the checks edited)."""
    if last.revision != scope.revision or last.target != scope.target:
        return True
    if [m.name for m in last.metrics] != [m.name for m in spec.metrics]:
        return True
    when = next_run(spec, last)
    return when is None or now >= when - EARLY


def standing_signal(last: AnalysisStatus, scope: Scope) -> AnalysisSignal:
    """The signal between runs: what the last run of this revision said. It never
    says Failed — a rollback happens in the reconcile of the run that decided it."""
    if last.revision == scope.revision and last.verdict == Verdict.PASS and last.last_run_at:
        evidence = parse_timestamp(last.last_run_at)
        return AnalysisSignal(Health.HEALTHY, last.reason, last.message, evidence_at=evidence)
    return AnalysisSignal(Health.PENDING, last.reason or PENDING, last.message)


def run_time(now: datetime) -> str:
    """A run's time, to the millisecond: the next run is scheduled from it, and a
    step advances only on a run after its traffic was set (stored to the second)."""
    return now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
