"""Reading the shadow comparison from Prometheus (analysis/comparison.py): when it
reads, what it makes of the answers, and that it holds, never passes, when it cannot
read. Prometheus is a scripted client here; the real one is in the e2e tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from shadowroute import analysis
from shadowroute.analysis.judge import Sample
from shadowroute.analysis.prometheus import Client, Endpoint, Unavailable
from shadowroute.api import ShadowRouteSpec
from shadowroute.api.models import ComparisonVerdict, ShadowRouteStatus
from shadowroute.names import Stage
from shadowroute.reasons import Reason
from shadowroute.rollout.observe import Health

from .sim import spec_dict

NOW = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)


class Comparator(Client):
    """Answers the gate's queries as a comparator's counters would read."""

    def __init__(self, compared: float = 500, mismatched: float = 0) -> None:
        super().__init__()
        self.compared, self.mismatched = compared, mismatched
        self.raw: dict[str, float] = {}
        self.noise: dict[str, float] = {}
        self.down = False
        self.asked: list[str] = []

    async def query(self, endpoint: Endpoint, promql: str, at: dt.datetime) -> tuple[Sample, ...]:
        self.asked.append(promql)
        if self.down:
            raise Unavailable("connection refused", "ConnectionError")
        if "field_differences" in promql:
            return tuple(Sample((("field", k),), v) for k, v in self.raw.items())
        if "field_noise" in promql:
            return tuple(Sample((("field", k),), v) for k, v in self.noise.items())
        if "histogram_quantile" in promql:
            return (Sample((), 0.05),)
        if "mismatched" in promql:
            return (Sample((), self.mismatched),)
        return (Sample((), self.compared),)


def spec(**compare: Any) -> ShadowRouteSpec:
    raw = spec_dict(shadow={"duration": "1m", "compare": {"minCompared": 100, **compare}})
    raw["analysis"] = {"prometheus": {"address": "http://prometheus.test:9090"}, "interval": "10s"}
    return ShadowRouteSpec.model_validate(raw)


def shadowing(**extra: Any) -> ShadowRouteStatus:
    fields: dict[str, Any] = {
        "stage": Stage.SHADOWING,
        "canary_revision": "rev2",
        "stable_revision": "rev1",
        "stage_ready_at": "2026-12-01T11:59:00Z",
    }
    return ShadowRouteStatus(**{**fields, **extra})


async def look(s: ShadowRouteSpec, status: ShadowRouteStatus, client: Client, now=NOW):
    return await analysis.compare(s, status, "shop", "web", now, client=client)


async def test_a_mismatch_fails_with_the_field_and_the_counts() -> None:
    client = Comparator(compared=400, mismatched=20)
    client.raw = {"body.price": 20, "body.time": 400}
    client.noise = {"body.time": 400}
    got = await look(spec(), shadowing(), client)
    assert got.signal is not None and got.signal.health is Health.FAILED
    assert got.signal.reason == Reason.SHADOW_MISMATCH and "body.price" in got.signal.message
    assert got.status is not None and got.status.verdict == ComparisonVerdict.FAIL
    assert (got.status.compared, got.status.mismatched, got.status.mismatch_rate) == (400, 20, 0.05)
    assert got.status.shadow_p95 == 0.05 and got.requeue_after == 10
    assert all('revision="rev2"' in q and 'namespace="shop"' in q for q in client.asked)


async def test_between_looks_nothing_is_asked_and_a_pass_stands() -> None:
    client = Comparator()
    first = await look(spec(), shadowing(), client)
    assert first.signal is not None and first.signal.health is Health.HEALTHY
    asked = len(client.asked)
    later = await look(
        spec(), shadowing(comparison=first.status), client, NOW + dt.timedelta(seconds=4)
    )
    assert len(client.asked) == asked
    assert later.signal is not None and later.signal.health is Health.HEALTHY
    assert later.requeue_after is not None and 5.9 < later.requeue_after <= 6
    again = await look(
        spec(), shadowing(comparison=first.status), client, NOW + dt.timedelta(seconds=10)
    )
    assert len(client.asked) > asked and again.signal is not None


async def test_prometheus_down_holds_and_never_passes() -> None:
    client = Comparator()
    client.down = True
    got = await look(spec(), shadowing(), client)
    assert got.signal is not None and got.signal.health is Health.PENDING
    assert got.status is not None and got.status.verdict == ComparisonVerdict.UNKNOWN
    assert got.status.reason == Reason.COMPARISON_UNAVAILABLE


async def test_nothing_is_asked_before_the_mirror_is_on_or_outside_the_stage() -> None:
    client = Comparator()
    waiting = await look(spec(), shadowing(stage_ready_at=None), client)
    assert waiting.signal is not None and waiting.signal.health is Health.PENDING
    assert "waiting for the shadow" in waiting.signal.message
    record = waiting.status
    done = await look(spec(), ShadowRouteStatus(stage=Stage.PROGRESSING, comparison=record), client)
    assert done.signal is None and done.status == record  # the record stays, untouched
    assert client.asked == []


async def test_a_new_revision_starts_its_own_record() -> None:
    client = Comparator(compared=10)
    old = (await look(spec(), shadowing(), client)).status
    assert old is not None and old.revision == "rev2"
    got = await look(
        spec(),
        shadowing(canary_revision="rev3", comparison=old),
        client,
        NOW + dt.timedelta(seconds=1),
    )
    assert got.status is not None and got.status.revision == "rev3"
    assert got.signal is not None and got.signal.health is Health.PENDING
    assert "10 requests compared, 100 needed" in got.signal.message


async def test_no_comparison_in_the_spec_clears_the_record() -> None:
    raw = spec_dict(shadow={"duration": "1m"})
    got = await look(ShadowRouteSpec.model_validate(raw), shadowing(), Comparator())
    assert got.status is None and got.signal is None


async def test_a_pass_read_before_the_stage_began_again_is_read_anew() -> None:
    """The comparator restarted (the stage's readiness was lost and regained): a pass
    from before says nothing about the new one's counts."""
    client = Comparator(compared=500)
    first = await look(spec(), shadowing(), client)
    assert first.status is not None and first.status.verdict == ComparisonVerdict.PASS
    client.compared = 3  # the new comparator counts from zero
    restarted = shadowing(stage_ready_at="2026-12-01T12:00:02Z", comparison=first.status)
    got = await look(spec(), restarted, client, NOW + dt.timedelta(seconds=5))
    assert got.signal is not None and got.signal.health is Health.PENDING
    assert got.status is not None and got.status.compared == 3


async def test_a_slow_shadow_is_a_failed_verdict_that_never_stands_as_a_pass() -> None:
    client = Comparator(compared=500)

    async def slow(endpoint: Endpoint, promql: str, at: dt.datetime) -> tuple[Sample, ...]:
        if 'side="candidate"' in promql:
            return (Sample((), 0.5),)
        return await Comparator.query(client, endpoint, promql, at)

    client.query = slow  # type: ignore[method-assign]
    got = await look(spec(maxLatencyRatio=2), shadowing(), client)
    assert got.signal is not None and got.signal.health is Health.FAILED
    assert got.status is not None and got.status.verdict == ComparisonVerdict.FAIL
    assert got.status.reason == Reason.SHADOW_TOO_SLOW
    later = await look(
        spec(maxLatencyRatio=2),
        shadowing(comparison=got.status),
        client,
        NOW + dt.timedelta(seconds=2),
    )
    assert later.signal is not None and later.signal.health is Health.PENDING
