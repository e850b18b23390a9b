"""Notifications: every event read off two statuses (and off a simulated rollout);
templates and each webhook kind's request; delivery to a local receiver, retries, the
cooldown, headers from a Secret, and the words kept through a restart."""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from shadowroute.api.models import (
    MESSAGE_VARIABLES,
    ConditionStatus,
    HistoryEntry,
    MetricResult,
    NotificationEvent,
    NotificationSpec,
    ShadowRouteStatus,
    Webhook,
)
from shadowroute.notify import Notice, Notifier, transitions
from shadowroute.notify.targets import request
from shadowroute.notify.template import message, variables

from .sim import Sim, spec_dict

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
    nodata = with_analysis(status(), "Unknown", "NoData")
    assert [n.reason for n in transitions(down, nodata, "shop", "web")] == ["NoData"]
    idle = with_analysis(status("Stable"), "Unknown", "NoData")
    assert transitions(passing, idle, "shop", "web") == [], "nothing is held when no rollout runs"


def test_a_hold_is_told_once_it_has_lasted_hold_after() -> None:
    passing = with_analysis(status(), "True", "AnalysisPassed")
    runs = [f"2026-11-25T05:0{sec // 60}:{sec % 60:02d}.500Z" for sec in (0, 20, 40, 59, 61, 80)]
    statuses = [passing] + [with_analysis(status(), "Unknown", "NoData", T, run) for run in runs]
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
            return {"data": {"slack": base64.b64encode(url.encode()).decode()}}

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


# --------------------------------------------------------------------------- every event


def watched(sim: Sim, steps: int = 1, seconds: float = 1) -> list[Notice]:
    """Tick the simulated operator; every notice its status changes make."""
    out = []
    for _ in range(steps):
        before = sim.status
        sim.tick(seconds)
        out += transitions(before, sim.status, "shop", "web")
    return out


def kinds(notices: list[Notice]) -> list[str]:
    return [n.kind.value for n in notices]


def test_a_canary_rollout_tells_start_each_step_pause_resume_and_promotion() -> None:
    steps = [
        {"weight": 20, "pause": {"duration": "5s"}},
        {"weight": 60, "pause": {"duration": "2s"}},
        {"weight": 100},
    ]
    sim = Sim(spec_dict(steps=steps, keepWarm="1m")).stable()
    sim.set_image("web:2")
    seen = watched(sim, 3)
    assert kinds(seen)[:2] == ["RolloutStarted", "StepAdvanced"], kinds(seen)
    step0 = seen[1]
    assert (step0.revision, step0.weight, step0.step, step0.stage) == (
        sim.desired, 20, 0, "Progressing"
    )  # fmt: skip
    sim.gate("pause")
    paused = watched(sim)
    assert kinds(paused) == ["Paused"] and paused[0].reason == "Paused"
    assert watched(sim, 10) == [], "held: nothing new to tell"
    sim.gate("resume")
    resumed = watched(sim)
    assert kinds(resumed)[0] == "Resumed" and resumed[0].revision == sim.desired
    rest = resumed[1:] + watched(sim, 20)
    assert "StepAdvanced" in kinds(rest) and "Promoted" in kinds(rest), kinds(rest)
    advanced = next(n for n in rest if n.kind is NotificationEvent.STEP_ADVANCED)
    assert (advanced.weight, advanced.step) == (60, 1)
    assert kinds(rest).index("StepAdvanced") < kinds(rest).index("Promoted")
    assert watched(sim, 5) == [], "at rest: nothing"


def test_waiting_for_the_promote_gate_is_a_pause() -> None:
    sim = Sim(spec_dict(steps=[{"weight": 30, "pause": {}}, {"weight": 100}])).stable()
    sim.set_image("web:2")
    seen = watched(sim, 6)
    paused = [n for n in seen if n.kind is NotificationEvent.PAUSED]
    assert [n.reason for n in paused] == ["WaitingForPromotion"], kinds(seen)


def test_a_failed_check_tells_the_check_then_the_rollback() -> None:
    from .test_machine_checks import answer, http, sim_with

    sim = sim_with([http("smoke", "BeforeTraffic")])
    sim.set_image("web:2")
    sim.run_until(lambda s: bool(s.status.checks))
    answer(sim, "smoke", False, "GET '/healthz': status 503 is not 2xx")
    failed, rolled = watched(sim)
    assert (failed.kind, failed.check, failed.reason) == (
        NotificationEvent.CHECK_FAILED, "smoke", "CheckFailed"
    )  # fmt: skip
    assert "status 503" in failed.message
    assert (rolled.kind, rolled.reason) == (NotificationEvent.ROLLED_BACK, "CheckFailed")
    assert watched(sim, 3) == [], "told once"


def test_a_first_version_never_available_is_a_progress_deadline() -> None:
    sim = Sim(spec_dict(progressDeadline="5s"))
    sim.broken.add(sim.desired)
    sim.reconcile()
    seen = watched(sim, 10)
    assert kinds(seen) == ["ProgressDeadlineExceeded"]
    assert seen[0].revision == sim.desired and "not available within 5s" in seen[0].message


def test_a_canary_past_its_deadline_is_a_deadline_and_a_rollback() -> None:
    sim = Sim(spec_dict(progressDeadline="5s", steps=[{"weight": 50}])).stable()
    sim.set_image("web:2")
    sim.broken.add(sim.desired)
    seen = watched(sim, 12)
    assert kinds(seen)[-2:] == ["ProgressDeadlineExceeded", "RolledBack"], kinds(seen)
    assert {n.reason for n in seen[-2:]} == {"ProgressDeadlineExceeded"}


def test_a_shadow_comparison_failing_is_a_mismatch_once() -> None:
    from shadowroute.api.models import ComparisonStatus

    old = status("Shadowing")
    new = status("Shadowing")
    new.comparison = ComparisonStatus(
        revision="rev2", verdict="Fail", reason="ShadowMismatch", message="12 % differ"
    )
    [n] = transitions(old, new, "shop", "web")
    assert (n.kind, n.revision, n.message) == (
        NotificationEvent.SHADOW_MISMATCH, "rev2", "12 % differ"
    )  # fmt: skip
    assert transitions(new, new, "shop", "web") == []


# --------------------------------------------------------------------------- words


def notice(kind: NotificationEvent = NotificationEvent.STEP_ADVANCED, **kw: Any) -> Notice:
    kw = {
        "revision": "rev2", "reason": "", "message": 'said "hi"\nthen', "at": T,
        "stage": "Progressing", "weight": 20, "step": 1, "images": ("web:2",),
        "stable_revision": "rev1", **kw,
    }  # fmt: skip
    return Notice(kind, "shop", "web", status=status(), **kw)


def hook(**kw: Any) -> Webhook:
    return Webhook.model_validate({"name": "h", "url": "http://127.0.0.1:9/x", **kw})


def test_every_variable_has_a_value_and_templates_substitute_only() -> None:
    values = variables(notice())
    assert set(values) == set(MESSAGE_VARIABLES)
    assert (
        values["weight"] == "20"
        and values["images"] == "web:2"
        and values["event"] == ("StepAdvanced")
    )
    h = hook(template="$event $namespace/${name} ${weight}% of $revision ($images) costs $$5")
    assert message(h, notice()) == "StepAdvanced shop/web 20% of rev2 (web:2) costs $5"
    per_event = hook(
        template="$summary",
        templates=[{"event": "RolledBack", "template": "ROLLBACK $revision: $reason"}],
    )
    assert message(per_event, notice()) == "shop/web: revision rev2 at step 1: 20% of traffic"
    rolled = notice(NotificationEvent.ROLLED_BACK, reason="CheckFailed")
    assert message(per_event, rolled) == "ROLLBACK rev2: CheckFailed"


@pytest.mark.parametrize(
    "bad", ["$foo", "${name", "$namex", "50 $", "${weight}$$$", "$text", "$__class__"]
)
def test_a_template_naming_no_known_variable_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown variable or stray"):
        hook(template=bad)


def test_the_crd_rule_and_the_models_agree_on_templates() -> None:
    from shadowroute.api.crd import build_crd

    crd = build_crd()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    tmpl = schema["properties"]["spec"]["properties"]["notifications"]["properties"]["webhooks"]
    rule = tmpl["items"]["properties"]["template"]["x-kubernetes-validations"][0]["rule"]
    pattern = re.fullmatch(r"self\.matches\('(.*)'\)", rule).group(1)
    for text in ["$name$weight", "a $$b", "${step}x", "$stage.", "$foo", "$", "$namex", "${at"]:
        try:
            hook(template=text)
            accepted = True
        except ValueError:
            accepted = False
        assert bool(re.search(pattern, text)) == accepted, text


def test_json_slack_and_teams_bodies() -> None:
    n = notice(NotificationEvent.ROLLED_BACK, reason="AnalysisFailed", check="")
    doc = json.loads(request(hook(), n).body)
    assert doc["kind"] == "RolledBack" and doc["images"] == ["web:2"]
    assert (doc["canaryWeight"], doc["step"], doc["stage"]) == (20, 1, "Progressing")
    assert doc["text"].startswith("shop/web: revision rev2 rolled back (AnalysisFailed)")
    slack = json.loads(request(hook(type="slack"), n).body)
    assert list(slack) == ["text"] and slack["text"].startswith(":rotating_light: shop/web")
    templated = json.loads(request(hook(type="slack", template="$reason"), n).body)
    assert templated == {"text": "AnalysisFailed"}, "a template is the whole text"
    teams = json.loads(request(hook(type="teams", template="*$name* $event"), n).body)
    assert teams["type"] == "message"
    [attachment] = teams["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    title, text, facts = card["body"]
    assert title["text"] == "shop/web: RolledBack" and title["color"] == "Attention"
    assert text == {"type": "TextBlock", "text": "*web* RolledBack", "wrap": True}
    assert {"title": "Images", "value": "web:2"} in facts["facts"]


def test_a_generic_body_escapes_every_value() -> None:
    h = hook(
        type="generic", method="PUT", template="$message",
        body='{"msg": "$text", "w": $weight, "who": "${namespace}/${name}"}',
    )  # fmt: skip
    req = request(h, notice(message='"}, "evil": true, "x": {"'))
    assert req.method == "PUT"
    assert json.loads(req.body) == {
        "msg": '"}, "evil": true, "x": {"', "w": 20, "who": "shop/web"
    }  # fmt: skip


@pytest.mark.parametrize(
    "bad, why",
    [
        ({"type": "generic", "body": '{"w": $message}'}, "not JSON once its variables"),
        ({"type": "generic"}, "body is set for a generic webhook"),
        ({"body": '{"a": 1}'}, "body is set for a generic webhook"),
        ({"method": "PUT"}, "method and headersSecretRef are for a generic"),
    ],
)
def test_generic_fields_belong_to_generic_webhooks(bad: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        hook(**bad)


def test_spec_notifications_or_its_deprecated_spelling_not_both() -> None:
    from shadowroute.api.models import ShadowRouteSpec
    from shadowroute.notify import notification_spec

    hooks = {"webhooks": [{"name": "a", "url": "http://127.0.0.1:9/x"}]}
    old = ShadowRouteSpec.model_validate(spec_dict(analysis={"notifications": hooks}))
    new = ShadowRouteSpec.model_validate(spec_dict(notifications=hooks))
    assert notification_spec(old) == notification_spec(new) is not None
    with pytest.raises(ValueError, match="not both"):
        ShadowRouteSpec.model_validate(
            spec_dict(notifications=hooks, analysis={"notifications": hooks})
        )


# --------------------------------------------------------------------------- delivery


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    got: list[tuple[str, dict[str, str], bytes]] = []

    async def hook_(request: web.Request) -> web.Response:
        got.append((request.method, dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/hook", hook_)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/hook", got
    await runner.cleanup()


async def test_a_generic_webhook_sends_its_method_body_and_secret_headers(
    recorder, caplog: pytest.LogCaptureFixture
) -> None:
    url, got = recorder

    class Kube:
        async def read_secret(self, namespace: str, name: str) -> Any:
            data = {"Authorization": "Bearer s3cr3t-token", "X-Team": "shop"}
            return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}

    spec = spec_with([{
        "name": "g", "type": "generic", "url": url, "method": "PATCH",
        "headersSecretRef": {"name": "hook-headers"}, "events": ["Promoted"],
        "body": '{"event": "$event", "revision": "$revision", "images": "$images"}',
    }])  # fmt: skip
    caplog.set_level("DEBUG")
    await sent(
        spec, status(), with_history(status("Succeeded"), "Promoted", "Promoted"), kube=Kube()
    )
    [(method, headers, body)] = got
    assert method == "PATCH" and headers["Authorization"] == "Bearer s3cr3t-token"
    assert headers["X-Team"] == "shop" and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"event": "Promoted", "revision": "rev2", "images": ""}
    assert "s3cr3t" not in caplog.text and url not in caplog.text


async def test_a_restarted_operator_sends_the_words_decided_before_the_kill(recorder) -> None:
    """The notice is in status with what status said then (weight, step, images); a
    new process (no memory) delivers it with those words, whatever status says now."""
    url, got = recorder
    spec = spec_with([{
        "name": "t", "url": url, "type": "slack", "events": ["StepAdvanced"],
        "template": "$name: $revision at ${weight}% (step $step) running $images",
    }])  # fmt: skip
    old, new = status(), status()
    new.canary_weight, new.current_step = 20, 1
    pending = Notifier(clock=lambda: 0.0).decide(spec, old, new, "shop", "web", ("rev2", ["web:2"]))
    assert [(p.kind, p.weight, p.step, p.images) for p in pending] == [
        ("StepAdvanced", 20, 1, ["web:2"])
    ]
    later = new.model_copy(update={"canary_weight": 60, "pending_notifications": pending})
    async with aiohttp.ClientSession() as session:
        restarted = Notifier(session=lambda: session)
        restarted.deliver(spec, later, "shop", "web", None)
        await restarted.drain()
        assert restarted.settled("shop", "web") == {pending[0].id}
        restarted.deliver(spec, later, "shop", "web", None)
        await restarted.drain()
    [(_, _, body)] = got
    assert json.loads(body) == {"text": "web: rev2 at 20% (step 1) running web:2"}


def test_only_the_events_some_webhook_wants_are_kept_in_status() -> None:
    spec = spec_with([{"name": "a", "url": "http://127.0.0.1:9/x", "events": ["Promoted"]}])
    new = status()
    new.canary_weight = 20
    assert Notifier().decide(spec, status(), new, "shop", "web") == []


async def test_a_template_the_crd_did_not_check_is_invalid_spec_not_a_crash() -> None:
    """A template stored past the CRD (an older CRD, say) is refused by the models:
    Degraded InvalidSpec naming the field, and an Event; no traceback."""
    from shadowroute.reconciler import reconcile

    from .test_traffic_reconcile import NAME, NS, FakeKube

    hooks = {"webhooks": [{"name": "a", "url": "http://127.0.0.1:9/x", "template": "$nmae"}]}
    kube = FakeKube(spec_dict(notifications=hooks))
    await reconcile(kube, NS, NAME)
    degraded = kube.degraded()
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert "notifications.webhooks.0.template" in degraded["message"]
    assert "unknown variable" in degraded["message"]
    assert [c[2] for c in kube.writes("event")] == ["InvalidSpec"]


def test_plan_says_what_is_wrong_with_a_template_before_it_is_applied() -> None:
    from shadowroute.cli.plan import PlanError, parse_spec

    hooks = {"webhooks": [{"name": "a", "url": "http://127.0.0.1:9/x", "template": "${wieght}%"}]}
    body = {
        "apiVersion": "shadowroute.io/v1alpha1",
        "kind": "ShadowRoute",
        "metadata": {"name": "web"},
        "spec": spec_dict(notifications=hooks),
    }
    with pytest.raises(PlanError, match=r"spec\.notifications\.webhooks\[0\]\.template: unknown"):
        parse_spec(body)


def test_an_unknown_analysis_that_is_no_news_is_not_a_hold() -> None:
    """Pending (no run yet) and a partial window are Unknown and say nothing is wrong;
    NoData is Unknown too, but it holds the rollout, so it is told."""
    passing = with_analysis(status(), "True", "AnalysisPassed")
    for reason in ("AnalysisPending", "PartialWindow"):
        assert transitions(passing, with_analysis(status(), "Unknown", reason), "s", "w") == []
    nodata = with_analysis(status(), "Unknown", "NoData")
    assert [n.reason for n in transitions(passing, nodata, "s", "w")] == ["NoData"]


def test_a_no_data_hold_counts_from_the_step_not_from_the_route_creation() -> None:
    """NoData is Unknown like AnalysisPending, so the condition's lastTransitionTime may
    be the route's creation: the first no-data run of a new step is no hold yet (the
    reviewer saw a Held, and the Warning Event, at the first run of a first rollout)."""
    created = "2026-11-25T04:00:00.000Z"
    step = status(stage_ready_at="2026-11-25T05:00:00.000Z")
    pending = with_analysis(step, "Unknown", "AnalysisPending", created, created)
    first = with_analysis(step, "Unknown", "NoData", created, "2026-11-25T05:00:10.000Z")
    assert transitions(pending, first, "shop", "web", hold_after=60) == []
    later = with_analysis(step, "Unknown", "NoData", created, "2026-11-25T05:01:05.000Z")
    [n] = transitions(first, later, "shop", "web", hold_after=60)
    assert n.kind is NotificationEvent.HELD and n.reason == "NoData"


def test_the_cooldown_tells_a_new_revision_held_for_the_same_reason() -> None:
    from shadowroute.notify.events import Notice

    held = [Notice(NotificationEvent.HELD, "shop", "web", rev, "NoData") for rev in ("r1", "r2")]
    assert held[0].key != held[1].key
    assert held[0].key == Notice(NotificationEvent.HELD, "shop", "web", "r1", "NoData").key
