"""One evaluation: the analysis status and signal of a reconcile, querying Prometheus
when a run is due.

`evaluate` is the guard: whatever fails inside — a value the models let through that the
arithmetic cannot take, a library refusing a request, a bug — becomes a hold (reason
AnalysisError), never an exception, so the state machine still runs after it and the
gates (abort, pause, promote) act whatever the analysis does.

A run works with one `Run` (what it looks at and the services it asks); each check's
queries are `Planned`: the query to send, or the answer known without sending one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import traceback
from dataclasses import dataclass
from typing import Any

from ..api.duration import format_duration, parse_duration
from ..api.models import (
    AnalysisSpec,
    AnalysisStatus,
    MetricCheck,
    MetricConvention,
    MetricPreset,
    MetricResult,
    ShadowRouteSpec,
    ShadowRouteStatus,
    UnreachablePolicy,
    Verdict,
    format_timestamp,
    parse_timestamp,
)
from ..observability.metrics import ANALYSIS_RUNS
from ..reasons import Reason
from ..rollout.observe import AnalysisSignal, Health
from ..secrets import CredentialsError, InvalidCredentials, Secrets
from .judge import Answer, MetricJudgement, RunJudgement, judge_metric, judge_run
from .presets import family_of, preset_queries
from .prometheus import Ask, Batchable, Client, Endpoint, InvalidQuery, Unavailable
from .scope import (
    PENDING,
    Scope,
    context,
    due,
    evaluation_time,
    next_run,
    next_tick,
    partial_window,
    run_time,
    scope_of,
    standing_signal,
    traffic_start,
    window,
)
from .secrets import endpoint
from .templates import Context, TemplateError, render
from .union import UNION, key_of

log = logging.getLogger("shadowroute.analysis")

UNAVAILABLE = Reason.PROMETHEUS_UNAVAILABLE
CREDENTIALS_INVALID = InvalidCredentials.reason
ERROR = Reason.ANALYSIS_ERROR
IDLE = Reason.ANALYSIS_IDLE
ERROR_RETRY_SECONDS = 30.0
"""After an evaluation failed: try again this much later (an event comes sooner)."""
MAX_ERROR_MESSAGE = 1000


@dataclass(frozen=True)
class Evaluation:
    status: AnalysisStatus
    signal: AnalysisSignal | None
    requeue_after: float | None = None


@dataclass(frozen=True)
class Run:
    """What one analysis run looks at, and what it asks."""

    spec: AnalysisSpec
    status: ShadowRouteStatus
    scope: Scope
    last: AnalysisStatus
    """The analysis record this run starts from (the last run's, or a fresh one)."""
    namespace: str
    name: str
    now: dt.datetime
    kube: Any
    """Reads Secrets (credentials)."""
    client: Client
    secrets: Secrets
    clock: dt.datetime
    """The time the run happens; `now` is the time it evaluates at (its tick)."""
    period: float | None = None
    """The interval when `now` is a tick (evaluation_time)."""

    @property
    def interval(self) -> float:
        return parse_duration(self.spec.interval)

    def until_next(self, ts: str) -> float:
        """Seconds from the run's clock to the next tick after its time `ts`."""
        when = next_tick(parse_timestamp(ts), self.interval)
        return max((when - self.clock).total_seconds(), 0.05)


@dataclass(frozen=True)
class Planned:
    """A check's query as it will be sent, or the answer known without sending one (a
    template that cannot be rendered); neither: nothing to ask."""

    query: str | None = None
    answer: Answer | None = None
    family: Batchable | None = None
    """The family its query is batched in (a preset's, or the custom queries' union),
    and its key there."""
    key: tuple[str, ...] = ()

    def answered(self, by_query: dict[str, Any]) -> Answer:
        if self.query is not None:
            return by_query[self.query]
        return self.answer if self.answer is not None else Answer()


async def evaluate(
    spec: ShadowRouteSpec,
    status: ShadowRouteStatus,
    namespace: str,
    name: str,
    now: dt.datetime,
    kube: Any = None,
    client: Client | None = None,
    secrets: Secrets | None = None,
) -> Evaluation:
    """The analysis status and signal for this reconcile; queries Prometheus when a
    run is due. `kube` reads Secrets (credentials); `client` and `secrets` are the
    operator's (services.py); without them (tools, tests) a run makes its own.

    Never raises (but for cancellation): any failure is a held signal with reason
    AnalysisError and what failed in status.analysis, so the gates still act."""
    secrets = secrets if secrets is not None else Secrets()
    try:
        return await _evaluate(
            spec, status, namespace, name, now, kube=kube, client=client, secrets=secrets
        )
    except Exception as exc:
        return _failed(status, namespace, name, exc, secrets)


def _failed(
    status: ShadowRouteStatus, namespace: str, name: str, exc: Exception, secrets: Secrets
) -> Evaluation:
    """Hold, keeping the last run's record (its failure count, its time) and saying what
    failed. The same failure again leaves the status as it was (no write) and is logged
    once, with its traceback; credentials are redacted from both."""
    last = status.analysis
    what = secrets.redact(f"{type(exc).__name__}: {exc}")
    if len(what) > MAX_ERROR_MESSAGE:
        what = what[:MAX_ERROR_MESSAGE] + "…"
    message = (
        f"the analysis could not run ({what}); holding: nothing advances until it runs, "
        "the gates (abort, pause, promote) still act"
    )
    ANALYSIS_RUNS.labels("Error").inc()
    if (last.reason, last.message) != (ERROR, message):
        trace = secrets.redact("".join(traceback.format_exception(exc)))
        log.error("%s/%s: %s\n%s", namespace, name, message, trace.rstrip())
    new = last.model_copy(
        update={"verdict": Verdict.INCONCLUSIVE, "reason": ERROR, "message": message}
    )
    return Evaluation(new, AnalysisSignal(Health.PENDING, ERROR, message), ERROR_RETRY_SECONDS)


async def _evaluate(
    spec: ShadowRouteSpec,
    status: ShadowRouteStatus,
    namespace: str,
    name: str,
    now: dt.datetime,
    *,
    kube: Any,
    client: Client | None,
    secrets: Secrets,
) -> Evaluation:
    a = spec.analysis
    if a is None:
        return Evaluation(status.analysis, None)  # readiness alone gates progress
    last = status.analysis
    scope = scope_of(status, name)
    if scope is None:
        return Evaluation(last, AnalysisSignal(Health.PENDING, IDLE, "no new revision on trial"))
    interval = parse_duration(a.interval)
    if last.revision != scope.revision:
        # The last verdict was about another revision: start this one's record afresh.
        last = AnalysisStatus(
            consecutive_failures=last.consecutive_failures,
            reason=PENDING,
            message=f"no analysis run yet for revision {scope.revision}",
            revision=scope.revision,
            target=scope.target,
        )
    elif last.target != scope.target:
        # From the shadow to the canary: that Service's traffic starts now; run at once.
        update = {"target": scope.target, "traffic_since": None, "last_run_at": None}
        last = last.model_copy(update=update)
    if not scope.receiving_traffic:
        message = f"waiting for revision {scope.revision} to receive traffic"
        return Evaluation(last, AnalysisSignal(Health.PENDING, PENDING, message), interval)
    if not due(a, last, scope, now):
        when = next_run(a, last)
        wait = (when - now).total_seconds() if when else interval
        return Evaluation(last, standing_signal(last, scope), max(wait, 0.05))
    at, period = evaluation_time(a, last, now)
    run = Run(
        spec=a,
        status=status,
        scope=scope,
        last=last,
        namespace=namespace,
        name=name,
        now=at,
        kube=kube,
        client=client or Client(),
        secrets=secrets,
        clock=now,
        period=period,
    )
    evaluation = await _run(run)
    unavailable = evaluation.status.reason in (UNAVAILABLE, CREDENTIALS_INVALID)
    ANALYSIS_RUNS.labels("Unavailable" if unavailable else evaluation.status.verdict).inc()
    if (evaluation.status.verdict, evaluation.status.reason) != (last.verdict, last.reason):
        log.info(
            "%s/%s analysis of %s: %s %s: %s",
            namespace,
            name,
            scope.revision,
            evaluation.status.verdict,
            evaluation.status.reason,
            evaluation.status.message,
        )
    return evaluation


async def _run(run: Run) -> Evaluation:
    a, status, now = run.spec, run.status, run.now
    ts = run_time(now)
    if not a.metrics:
        judged = judge_run([], run.last.consecutive_failures, a.failure_limit)
        return _judged(run, ts, [], [], judged)
    since = run.last.traffic_since or run_time(traffic_start(status, now))
    run = dataclasses.replace(run, last=run.last.model_copy(update={"traffic_since": since}))
    try:
        where = await endpoint(a, run.namespace, run.kube, run.secrets)
    except CredentialsError as exc:  # refused before any request is made
        return _unavailable(run, ts, str(exc), exc.reason)
    span = window(a, parse_timestamp(since), now)
    partial = partial_window(a, status, parse_timestamp(since), now, span)
    opened = run_time(now - dt.timedelta(seconds=span))
    ctx = context(a, status, run.scope, run.namespace, run.name, span)
    plans = [_plan(check, a, ctx) for check in a.metrics]
    asks = list({p.query: p for pair in plans for p in pair if p.query is not None}.values())
    answers = await asyncio.gather(*(_ask(run, where, p) for p in asks))
    by_query = dict(zip((p.query for p in asks), answers, strict=True))
    down = [x for x in answers if isinstance(x, Unavailable)]
    if down:
        return _unavailable(run, ts, str(down[0]))
    judgements = [
        judge_metric(
            check,
            value.answered(by_query),
            count.answered(by_query) if check.min_requests is not None else None,
            value.query or "",
        )
        for check, (value, count) in zip(a.metrics, plans, strict=True)
    ]
    judged = judge_run(judgements, run.last.consecutive_failures, a.failure_limit, partial)
    queries = [
        value.query if value.query is not None else (check.query or "")
        for check, (value, _) in zip(a.metrics, plans, strict=True)
    ]
    return _judged(run, ts, judgements, queries, judged, opened)


def _plan(check: MetricCheck, a: AnalysisSpec, ctx: Context) -> tuple[Planned, Planned]:
    """The check's value query and request-count query as sent, or why they cannot be."""
    if check.preset is not None:
        convention = check.convention or a.convention
        templates = preset_queries(check.preset, convention)
        value = _batched(_render(templates.value, ctx), check.preset, convention, False, ctx)
        count = _batched(_render(templates.requests, ctx), check.preset, convention, True, ctx)
    else:
        value = _united(_render(check.query or "", ctx))
        count = (
            _united(_render(check.request_count_query, ctx))
            if check.request_count_query
            else Planned()
        )
    return value, (count if check.min_requests is not None else Planned())


def _batched(
    planned: Planned,
    preset: MetricPreset,
    convention: MetricConvention,
    requests: bool,
    ctx: Context,
) -> Planned:
    """A preset's query, with the family it is batched in (presets.Family)."""
    family, key = family_of(preset, convention, requests, ctx)
    return dataclasses.replace(planned, family=family, key=key)


def _united(planned: Planned) -> Planned:
    """A custom query, batched with the others of its tick as their union (union.py)."""
    if planned.query is None:
        return planned
    return dataclasses.replace(planned, family=UNION, key=key_of(planned.query))


def _render(template: str, ctx: Context) -> Planned:
    try:
        return Planned(query=render(template, ctx))
    except TemplateError as exc:
        return Planned(answer=Answer(error=f"cannot render the query template: {exc}"))


async def _ask(run: Run, where: Endpoint, planned: Planned) -> Answer | Unavailable:
    assert planned.query is not None
    ask = Ask(planned.query, planned.family, planned.key, run.period)
    try:
        return Answer(samples=await run.client.ask(where, ask, run.now))
    except InvalidQuery as exc:
        return Answer(error=f"Prometheus refused the query: {exc}")
    except Unavailable as exc:
        return exc


def _judged(
    run: Run,
    ts: str,
    judgements: list[MetricJudgement],
    queries: list[str],
    judged: RunJudgement,
    window_start: str | None = None,
) -> Evaluation:
    checked = format_timestamp(run.now)
    results = [
        MetricResult(
            name=j.name,
            value=j.value,
            verdict=j.verdict,
            reason=j.reason,
            requests=j.requests,
            query=query,
            checked_at=checked,
            message=j.message,
        )
        for j, query in zip(judgements, queries, strict=True)
    ]
    new = AnalysisStatus(
        consecutive_failures=judged.consecutive_failures,
        last_run_at=ts,
        verdict=judged.verdict,
        reason=judged.reason,
        message=judged.message,
        revision=run.scope.revision,
        target=run.scope.target,
        traffic_since=run.last.traffic_since,
        window_start=window_start,
        metrics=results,
    )
    if judged.rollback:
        signal = AnalysisSignal(Health.FAILED, judged.reason, judged.message)
    elif judged.verdict == Verdict.PASS:
        signal = AnalysisSignal(Health.HEALTHY, judged.reason, judged.message, parse_timestamp(ts))
    else:
        signal = AnalysisSignal(Health.PENDING, judged.reason, judged.message)
    return Evaluation(new, signal, run.until_next(ts))


def _unavailable(run: Run, ts: str, error: str, reason: str = UNAVAILABLE) -> Evaluation:
    """Prometheus could not be asked (no answer, or reason CredentialsInvalid: the
    Secret's credentials cannot be sent): hold; past unreachable.timeout the policy
    decides. The failure count stays: no answer is not a failed check."""
    a, last = run.spec, run.last
    since = last.unreachable_since or ts
    down_for = max((run.now - parse_timestamp(since)).total_seconds(), 0.0)
    limit = parse_duration(a.unreachable.timeout)
    interval = run.until_next(ts)
    rollback = a.unreachable.policy is UnreachablePolicy.ROLLBACK
    if reason == CREDENTIALS_INVALID:
        message, until = f"{error} (Prometheus not asked since {since})", "the Secret is fixed"
    else:
        message, until = f"{error} (unreachable since {since})", "it answers"
    if rollback and down_for >= limit:
        health, wait = Health.FAILED, interval
        message += (
            f"; unreachable for {format_duration(down_for)}, past unreachable.timeout "
            f"{a.unreachable.timeout} with policy rollback"
        )
    elif rollback:
        health, wait = Health.PENDING, min(interval, max(limit - down_for, 0.05))
        message += f"; holding, rolled back if still unreachable after {a.unreachable.timeout}"
    else:
        health, wait = Health.PENDING, interval
        message += f"; holding until {until} (unreachable.policy hold)"
    new = last.model_copy(
        update={
            "last_run_at": ts,
            "verdict": Verdict.INCONCLUSIVE,
            "reason": reason,
            "message": message,
            "revision": run.scope.revision,
            "target": run.scope.target,
            "unreachable_since": since,
        }
    )
    return Evaluation(new, AnalysisSignal(health, reason, message), wait)
