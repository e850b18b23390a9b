"""Notifications: what counts as a promotion, a rollback or a hold between two statuses;
delivery to a local receiver as JSON and as Slack text, retries, and the cooldown."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from shadowroute.api.models import (
    ConditionStatus,
    NotificationSpec,
    HistoryEntry,
    MetricResult,
    NotificationEvent,
    ShadowRouteStatus,
)
from shadowroute.notify import Notifier, transitions

T = "2026-11-25T05:00:00Z"


def status(stage: str = "Progressing", **kw: Any) -> ShadowRouteStatus:
    s = ShadowRouteStatus(stage=stage, phase=stage, canary_revision="rev2", **kw)
    s.analysis.revision = "rev2"
    return s


def with_history(s: ShadowRouteStatus, outcome: str, reason: str) -> ShadowRouteStatus:
    s = s.model_copy(deep=True)
    s.record(HistoryEntry(revision="rev2", outcome=outcome, reason=reason, message="why", at=T))
    return s


def with_analysis(
    s: ShadowRouteStatus, value: str, reason: str, since: str = T, run: str = T
) -> ShadowRouteStatus:
    s = s.model_copy(deep=True)
    s.set_condition("AnalysisHealthy", ConditionStatus(value), reason, f"{reason} msg", since)
    s.analysis.last_run_at = run
    return s


def test_a_new_history_entry_is_a_promotion_or_a_rollback() -> None:
    old = status()
    promoted = with_history(status("Succeeded"), "Promoted", "Promoted")
    [n] = transitions(old, promoted, "shop", "web")
    assert (n.kind, n.revision, n.at) == (NotificationEvent.PROMOTED, "rev2", T)
    rolled = with_history(status("RolledBack"), "RolledBack", "AnalysisFailed")
    rolled = with_analysis(rolled, "False", "AnalysisFailed")
    [n] = transitions(old, rolled, "shop", "web")
    assert (n.kind, n.reason) == (NotificationEvent.ROLLED_BACK, "AnalysisFailed")
    assert (n.stage, n.weight) == ("RolledBack", 0), "what status said when it was decided"
    assert transitions(rolled, rolled, "shop", "web") == [], "the same status again says nothing"
    superseded = with_history(status(), "Superseded", "NewTemplate")
    assert transitions(old, superseded, "shop", "web") == []


def test_the_analysis_turning_false_mid_rollout_is_a_hold_once_per_reason() -> None:
    passing = with_analysis(status(), "True", "AnalysisPassed")
    down = with_analysis(status(), "False", "PrometheusUnavailable")
    [n] = transitions(passing, down, "shop", "web")
    assert (n.kind, n.reason, n.message) == (
        NotificationEvent.HELD,
        "PrometheusUnavailable",
        "PrometheusUnavailable msg",
    )
    assert transitions(down, down, "shop", "web") == []
    nodata = with_analysis(status(), "False", "NoData")
    assert [n.reason for n in transitions(down, nodata, "shop", "web")] == ["NoData"]
    idle = with_analysis(status("Stable"), "False", "NoData")
    assert transitions(passing, idle, "shop", "web") == [], "nothing is held when no rollout runs"


def test_a_hold_is_told_once_it_has_lasted_hold_after() -> None:
    passing = with_analysis(status(), "True", "AnalysisPassed")
    runs = [f"2026-11-25T05:0{sec // 60}:{sec % 60:02d}.500Z" for sec in (0, 20, 40, 59, 61, 80)]
    statuses = [passing] + [with_analysis(status(), "False", "NoData", T, run) for run in runs]
    told = [
        bool(transitions(a, b, "shop", "web", hold_after=60))
        for a, b in itertools.pairwise(statuses)
    ]
    assert told == [False, False, False, False, True, False]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[Any], list[int]]]:
    got: list[Any] = []
    statuses: list[int] = []  # answered in turn; 200 once they run out

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(status=statuses.pop(0) if statuses else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/hook", got, statuses
    await runner.cleanup()


async def sent(spec: NotificationSpec, old, new, **kw) -> tuple[Notifier, list]:
    async with aiohttp.ClientSession() as session:
        clock = kw.pop("clock", None) or (lambda: 0.0)

        async def no_wait(_: float) -> None:
            return None

        n = Notifier(session=lambda: session, clock=clock, sleep=no_wait)
        notices = n.notify(spec, old, new, "shop", "web", kw.get("kube"))
        await n.drain()
    return n, notices


def spec_with(hooks: list[dict[str, Any]], cooldown: str = "5m") -> NotificationSpec:
    return NotificationSpec.model_validate(
        {"webhooks": hooks, "cooldown": cooldown, "holdAfter": "0s"}
    )


async def test_json_and_slack_bodies(receiver) -> None:
    url, got, _ = receiver
    new = with_history(status("RolledBack"), "RolledBack", "AnalysisFailed")
    new.analysis.metrics = [
        MetricResult(name="errors", value=0.2, verdict="Fail", reason="AboveMax")
    ]
    spec = spec_with([{"name": "a", "url": url}, {"name": "b", "type": "slack", "url": url}])
    await sent(spec, status(), new)
    doc = next(g for g in got if "kind" in g)
    assert doc["kind"] == "RolledBack" and doc["name"] == "web" and doc["revision"] == "rev2"
    assert doc["analysis"]["metrics"][0] == {
        "name": "errors", "value": 0.2, "verdict": "Fail", "reason": "AboveMax", "query": "",
    }  # fmt: skip
    text = next(g for g in got if "text" in g)["text"]
    assert (
        "shop/web" in text and "rolled back (AnalysisFailed)" in text and "errors=0.2 Fail" in text
    )


async def test_only_the_chosen_events_are_sent(receiver) -> None:
    url, got, _ = receiver
    spec = spec_with([{"name": "a", "url": url, "events": ["RolledBack"]}])
    await sent(spec, status(), with_history(status("Succeeded"), "Promoted", "Promoted"))
    assert got == []


async def test_transient_failures_are_retried_and_refusals_are_not(receiver) -> None:
    url, got, statuses = receiver
    statuses += [503, 500]
    spec = spec_with([{"name": "a", "url": url}])
    new = with_history(status("Succeeded"), "Promoted", "Promoted")
    await sent(spec, status(), new)
    assert len(got) == 3
    got.clear()
    statuses += [400]
    new = with_history(status("RolledBack"), "RolledBack", "Aborted")
    await sent(spec, status(), new)
    assert len(got) == 1


async def test_the_cooldown_keeps_an_outage_from_spamming(receiver) -> None:
    url, got, _ = receiver
    spec = spec_with([{"name": "a", "url": url}], cooldown="1m")
    passing = with_analysis(status(), "True", "AnalysisPassed")
    down = with_analysis(status(), "False", "PrometheusUnavailable")
    now = [0.0]
    async with aiohttp.ClientSession() as session:
        n = Notifier(session=lambda: session, clock=lambda: now[0])
        for t in (0, 10, 20, 30, 70):  # Prometheus flaps: down, up, down, up, down
            now[0] = t
            n.notify(spec, passing, down, "shop", "web", None)
        await n.drain()
    assert len(got) == 2  # at 0 s and at 70 s


async def test_what_cooled_down_is_forgotten(receiver) -> None:
    """Over years of rollouts (and routes long deleted) the cooldown's memory holds
    only the notices still cooling down."""
    url, got, _ = receiver
    spec = spec_with([{"name": "a", "url": url, "events": ["Held"]}], cooldown="1m")
    passing = with_analysis(status(), "True", "AnalysisPassed")
    down = with_analysis(status(), "False", "PrometheusUnavailable")
    now = [0.0]
    async with aiohttp.ClientSession() as session:
        n = Notifier(session=lambda: session, clock=lambda: now[0])
        for i in range(50):
            n.notify(spec, passing, down, "shop", f"web-{i}", None)
        assert len(n._sent) == 50
        now[0] = 61
        assert n.notify(spec, passing, down, "shop", "web-0", None), "cooled down: sent"
        assert len(n._sent) == 1
        await n.drain()
    assert len(got) == 51


async def test_a_url_from_a_secret(receiver) -> None:
    url, got, _ = receiver

    class Kube:
        async def read_secret(self, namespace: str, name: str) -> Any:
            assert (name, namespace) == ("hooks", "shop")
            return type("S", (), {"data": {"slack": base64.b64encode(url.encode()).decode()}})()

    spec = spec_with(
        [{"name": "s", "type": "slack", "urlSecretRef": {"name": "hooks", "key": "slack"}}]
    )
    await sent(
        spec, status(), with_history(status("Succeeded"), "Promoted", "Promoted"), kube=Kube()
    )
    assert "revision rev2 promoted" in got[0]["text"]


def test_a_webhook_needs_exactly_one_url() -> None:
    with pytest.raises(ValueError, match="exactly one of url and urlSecretRef"):
        spec_with([{"name": "a"}])
