"""The shadow comparison of a reconcile: the comparator's counters read from Prometheus
when a look is due, judged by `compare.gate`.

It looks while a revision shadows with `spec.strategy.shadow.compare` set and its
mirror is on (the shadow stage is ready), at the analysis interval (30 s without
`spec.analysis`), on the Prometheus of `spec.analysis` (or the operator's
SHADOWROUTE_PROMETHEUS_URL). Never raises but for cancellation: what fails is an
Unknown comparison, which holds the stage — a comparison never passes unread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from ..api.duration import parse_duration
from ..api.models import (
    AnalysisSpec,
    ComparisonStatus,
    ComparisonVerdict,
    ShadowRouteSpec,
    ShadowRouteStatus,
    format_timestamp,
    parse_timestamp,
)
from ..compare import gate
from ..names import Stage
from ..reasons import Reason
from ..rollout.observe import AnalysisSignal, Health
from ..secrets import CredentialsError, Secrets
from .judge import Sample
from .prometheus import Client, InvalidQuery, Unavailable
from .secrets import endpoint

log = logging.getLogger("shadowroute.comparison")


@dataclass(frozen=True)
class Comparison:
    status: ComparisonStatus | None
    """What status.comparison becomes."""
    signal: AnalysisSignal | None
    """None when the stage is not gated by a comparison now."""
    requeue_after: float | None = None


async def compare(
    spec: ShadowRouteSpec,
    status: ShadowRouteStatus,
    namespace: str,
    name: str,
    now: dt.datetime,
    *,
    kube: Any = None,
    client: Client | None = None,
    secrets: Secrets | None = None,
) -> Comparison:
    shadow = spec.strategy.shadow
    if shadow is None or shadow.compare is None:
        return Comparison(None, None)
    last = status.comparison
    if status.stage != Stage.SHADOWING or not status.canary_revision:
        return Comparison(last, None)  # the record of the last comparison stays
    revision = status.canary_revision
    a = spec.analysis or AnalysisSpec()
    interval = parse_duration(a.interval)
    if last is None or last.revision != revision:
        last = ComparisonStatus(
            revision=revision,
            verdict=ComparisonVerdict.NOT_ENOUGH_DATA,
            reason=Reason.COMPARISON_PENDING,
            message=f"no comparison read yet for revision {revision}",
        )
    if not status.stage_ready_at:
        message = f"waiting for the shadow of revision {revision} to receive copies"
        pending = last.model_copy(update={"message": message})
        return Comparison(pending, AnalysisSignal(Health.PENDING, pending.reason, message))
    # A look from before the stage's copies began (the comparator restarted, the stage
    # started over, the same revision retried) says nothing about them: look again.
    since = parse_timestamp(status.stage_ready_at) + dt.timedelta(seconds=1)
    if last.checked_at and parse_timestamp(last.checked_at) >= since:
        due_at = parse_timestamp(last.checked_at) + dt.timedelta(seconds=interval)
        if now < due_at - dt.timedelta(milliseconds=50):
            return Comparison(last, _standing(last), (due_at - now).total_seconds())
    redact = (secrets or Secrets()).redact
    try:
        read = await _read(spec, a, namespace, name, revision, now, kube, client, secrets)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # never a crash: hold, and say what failed
        reason = Reason.COMPARISON_UNAVAILABLE
        text = redact(f"the comparison could not be read ({type(exc).__name__}: {exc}); holding")
        if (last.reason, last.message) != (reason, text):
            log.warning("%s/%s: %s", namespace, name, text)
        held = gate.unknown(revision, reason, text, format_timestamp(now))
        return Comparison(held, AnalysisSignal(Health.PENDING, reason, text), interval)
    judged, health = read
    judged = judged.model_copy(update={"message": redact(judged.message)})
    if (judged.verdict, judged.reason) != (last.verdict, last.reason):
        log.info("%s/%s comparison of %s: %s", namespace, name, revision, judged.message)
    return Comparison(judged, _signal(judged, health), interval)


def _signal(c: ComparisonStatus, health: Health) -> AnalysisSignal:
    evidence = parse_timestamp(c.checked_at) if c.checked_at else None
    return AnalysisSignal(health, c.reason, c.message, evidence_at=evidence)


def _standing(last: ComparisonStatus) -> AnalysisSignal:
    """Between looks: a pass stands; anything else holds (a failure rolls back in the
    reconcile that read it)."""
    health = Health.HEALTHY if last.verdict == ComparisonVerdict.PASS else Health.PENDING
    return _signal(last, health)


async def _read(
    spec: ShadowRouteSpec,
    a: AnalysisSpec,
    namespace: str,
    name: str,
    revision: str,
    now: dt.datetime,
    kube: Any,
    client: Client | None,
    secrets: Secrets | None,
) -> tuple[ComparisonStatus, Health]:
    compare = spec.strategy.shadow.compare  # type: ignore[union-attr]
    assert compare is not None
    checked = format_timestamp(now)
    try:
        where = await endpoint(a, namespace, kube, secrets)
    except CredentialsError as exc:
        status = gate.unknown(revision, Reason.COMPARISON_UNAVAILABLE, f"{exc}; holding", checked)
        return status, Health.PENDING
    client = client or Client()
    q = gate.queries(namespace, name, revision)
    try:
        answers = await asyncio.gather(*(client.query(where, text, now) for text in q.all()))
    except (Unavailable, InvalidQuery) as exc:
        text = f"Prometheus did not answer the comparison's queries ({exc}); holding"
        return gate.unknown(revision, Reason.COMPARISON_UNAVAILABLE, text, checked), Health.PENDING
    compared, mismatched, raw, noise, shadow_p95, baseline_p95 = answers
    counts = gate.Counts(
        compared=_scalar(compared),
        mismatched=_scalar(mismatched),
        raw=_by_field(raw),
        noise=_by_field(noise),
        shadow_p95=_scalar(shadow_p95),
        baseline_p95=_scalar(baseline_p95),
    )
    return gate.judge(compare, revision, counts, checked)


def _scalar(samples: tuple[Sample, ...]) -> float | None:
    values = [s.value for s in samples if s.value == s.value]  # NaN: no value
    return values[0] if len(values) == 1 else None


def _by_field(samples: tuple[Sample, ...]) -> dict[str, float]:
    return {dict(s.labels).get("field", ""): s.value for s in samples if s.value == s.value}
