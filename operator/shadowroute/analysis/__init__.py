"""Analysis: ask Prometheus whether the new version is healthy.

The reconciler calls `evaluate` before the state machine decides; it returns the
signal the machine acts on (Healthy: may advance; Pending: hold; Failed: roll back in
this very reconcile) and the analysis part of the status. The reconciler asks the
`notifier` which webhook notices a decision sends, and has them delivered once they
are written into status.

Whatever fails inside `evaluate` — a value the models let through that the arithmetic
cannot take, a library refusing a request, a bug — becomes a hold (reason
AnalysisError), never an exception: the state machine still runs after it, so the
gates (abort, pause, promote) act whatever the analysis does.

A run happens every `interval` (scheduled with requeue_after), or at once when what it
looks at changes; between runs the last run's verdict, kept in status, stands. All the
state is in status (consecutive failures, since when Prometheus is unreachable, the
time of the last run), so a restarted operator carries on where it was.

The parts: `scope` (what to look at, when; pure), `templates` and `presets` (the
queries; pure), `prometheus` (the client: the only network I/O to Prometheus),
`secrets` (credentials), `judge` (verdicts; pure), `notify` (webhooks).
"""

from __future__ import annotations

import asyncio
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
    MetricResult,
    ShadowRouteSpec,
    ShadowRouteStatus,
    UnreachablePolicy,
    Verdict,
    format_timestamp,
    parse_timestamp,
)
from ..observability.metrics import ANALYSIS_RUNS
from ..rollout.observe import AnalysisSignal, Health
from . import http
from .judge import Answer, MetricJudgement, RunJudgement, judge_metric, judge_run
from .notify import Notifier
from .presets import preset_queries
from .prometheus import Client, Endpoint, InvalidQuery, Unavailable
from .scope import (
    PENDING,
    Scope,
    context,
    due,
    next_run,
    partial_window,
    run_time,
    scope_of,
    standing_signal,
    traffic_start,
    window,
)
from .secrets import CredentialsError, InvalidCredentials, endpoint, redact
from .templates import Context, TemplateError, render

log = logging.getLogger(__name__)

UNAVAILABLE = "PrometheusUnavailable"
CREDENTIALS_INVALID = InvalidCredentials.reason
ERROR = "AnalysisError"
IDLE = "AnalysisIdle"
ERROR_RETRY_SECONDS = 30.0
"""After an evaluation failed: try again this much later (an event comes sooner)."""
MAX_ERROR_MESSAGE = 1000

_client = Client()
_notifier = Notifier()


@dataclass(frozen=True)
class Evaluation:
    status: AnalysisStatus
    signal: AnalysisSignal | None
    requeue_after: float | None = None


async def evaluate(
    spec: ShadowRouteSpec,
    status: ShadowRouteStatus,
    namespace: str,
    name: str,
    now: dt.datetime,
    kube: Any = None,
    client: Client | None = None,
) -> Evaluation:
    """The analysis status and signal for this reconcile; queries Prometheus when a
    run is due. `kube` reads Secrets (credentials); `client` is a test seam.

    Never raises (but for cancellation): any failure is a held signal with reason
    AnalysisError and what failed in status.analysis, so the gates still act."""
    try:
        return await _evaluate(spec, status, namespace, name, now, kube, client)
    except Exception as exc:
        return _failed(status, namespace, name, exc)


def _failed(status: ShadowRouteStatus, namespace: str, name: str, exc: Exception) -> Evaluation:
    """Hold, keeping the last run's record (its failure count, its time) and saying what
    failed. The same failure again leaves the status as it was (no write) and is logged
    once, with its traceback; credentials are redacted from both."""
    last = status.analysis
    what = redact(f"{type(exc).__name__}: {exc}")
    if len(what) > MAX_ERROR_MESSAGE:
        what = what[:MAX_ERROR_MESSAGE] + "…"
    message = (
        f"the analysis could not run ({what}); holding: nothing advances until it runs, "
        "the gates (abort, pause, promote) still act"
    )
    ANALYSIS_RUNS.labels("Error").inc()
    if (last.reason, last.message) != (ERROR, message):
        trace = redact("".join(traceback.format_exception(exc)))
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
    kube: Any,
    client: Client | None,
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
    evaluation = await _run(a, status, scope, last, namespace, name, now, kube, client or _client)
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


async def _run(
    a: AnalysisSpec,
    status: ShadowRouteStatus,
    scope: Scope,
    last: AnalysisStatus,
    namespace: str,
    name: str,
    now: dt.datetime,
    kube: Any,
    client: Client,
) -> Evaluation:
    interval = parse_duration(a.interval)
    ts = run_time(now)
    if not a.metrics:
        run = judge_run([], last.consecutive_failures, a.failure_limit)
        return _judged(scope, last, ts, now, [], [], run, interval)
    since = last.traffic_since or run_time(traffic_start(status, now))
    last = last.model_copy(update={"traffic_since": since})
    try:
        where = await endpoint(a, namespace, kube)
    except CredentialsError as exc:  # refused before any request is made
        return _unavailable(a, scope, last, ts, now, str(exc), exc.reason)
    span = window(a, parse_timestamp(since), now)
    partial = partial_window(a, status, parse_timestamp(since), now, span)
    opened = run_time(now - dt.timedelta(seconds=span))
    ctx = context(a, status, scope, namespace, name, span)
    plans = [_plan(check, a, ctx) for check in a.metrics]
    asks = [q for value, count in plans for q in (value, count) if isinstance(q, str)]
    answers = await asyncio.gather(*(_ask(client, where, q, now) for q in dict.fromkeys(asks)))
    by_query = dict(zip(dict.fromkeys(asks), answers, strict=True))
    down = [x for x in answers if isinstance(x, Unavailable)]
    if down:
        return _unavailable(a, scope, last, ts, now, str(down[0]))
    judgements = []
    for check, (value, count) in zip(a.metrics, plans, strict=True):
        judgements.append(
            judge_metric(
                check,
                _answer(value, by_query),
                _answer(count, by_query) if check.min_requests is not None else None,
                value if isinstance(value, str) else "",
            )
        )
    run = judge_run(judgements, last.consecutive_failures, a.failure_limit, partial)
    queries = [
        v if isinstance(v, str) else (c.query or "")
        for c, (v, _) in zip(a.metrics, plans, strict=True)
    ]
    return _judged(scope, last, ts, now, judgements, queries, run, interval, opened)


def _plan(
    check: MetricCheck, a: AnalysisSpec, ctx: Context
) -> tuple[str | Answer, str | Answer | None]:
    """The check's value query and request-count query as sent, or why they cannot be."""
    if check.preset is not None:
        templates = preset_queries(check.preset, check.convention or a.convention)
        value_t, count_t = templates.value, templates.requests
    else:
        value_t, count_t = check.query or "", check.request_count_query
    if check.min_requests is None:
        count_t = None
    return _render(value_t, ctx), (_render(count_t, ctx) if count_t else None)


def _render(template: str, ctx: Context) -> str | Answer:
    try:
        return render(template, ctx)
    except TemplateError as exc:
        return Answer(error=f"cannot render the query template: {exc}")


async def _ask(
    client: Client, where: Endpoint, query: str, now: dt.datetime
) -> Answer | Unavailable:
    try:
        return Answer(samples=await client.query(where, query, now))
    except InvalidQuery as exc:
        return Answer(error=f"Prometheus refused the query: {exc}")
    except Unavailable as exc:
        return exc


def _answer(planned: str | Answer | None, by_query: dict[str, Any]) -> Answer:
    if planned is None:
        return Answer()
    if isinstance(planned, Answer):
        return planned
    return by_query[planned]


def _judged(
    scope: Scope,
    last: AnalysisStatus,
    ts: str,
    now: dt.datetime,
    judgements: list[MetricJudgement],
    queries: list[str],
    run: RunJudgement,
    interval: float,
    window_start: str | None = None,
) -> Evaluation:
    checked = format_timestamp(now)
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
        consecutive_failures=run.consecutive_failures,
        last_run_at=ts,
        verdict=run.verdict,
        reason=run.reason,
        message=run.message,
        revision=scope.revision,
        target=scope.target,
        traffic_since=last.traffic_since,
        window_start=window_start,
        metrics=results,
    )
    if run.rollback:
        signal = AnalysisSignal(Health.FAILED, run.reason, run.message)
    elif run.verdict == Verdict.PASS:
        signal = AnalysisSignal(Health.HEALTHY, run.reason, run.message, parse_timestamp(ts))
    else:
        signal = AnalysisSignal(Health.PENDING, run.reason, run.message)
    return Evaluation(new, signal, interval)


def _unavailable(
    a: AnalysisSpec,
    scope: Scope,
    last: AnalysisStatus,
    ts: str,
    now: dt.datetime,
    error: str,
    reason: str = UNAVAILABLE,
) -> Evaluation:
    """Prometheus could not be asked (no answer, or reason CredentialsInvalid: the
    Secret's credentials cannot be sent): hold; past unreachable.timeout the policy
    decides. The failure count stays: no answer is not a failed check."""
    since = last.unreachable_since or ts
    down_for = max((now - parse_timestamp(since)).total_seconds(), 0.0)
    limit = parse_duration(a.unreachable.timeout)
    interval = parse_duration(a.interval)
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
            "revision": scope.revision,
            "target": scope.target,
            "unreachable_since": since,
        }
    )
    return Evaluation(new, AnalysisSignal(health, reason, message), wait)


def notifier() -> Notifier:
    """The operator's notifier: its cooldown memory and the deliveries under way."""
    return _notifier


async def close(grace: float = 5.0) -> None:
    """At shutdown: let deliveries under way finish (bounded), close the session."""
    try:
        await asyncio.wait_for(_notifier.drain(), grace)
    except TimeoutError:
        log.warning("notifications still under way at shutdown are left to the next leader")
    await http.close()
