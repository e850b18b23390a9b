"""Notifications end to end: the real operator, on the host, tells a real receiver (an
aiohttp server on 127.0.0.1 in this test) of a rollout's events in the words of the
webhooks' templates, while a real rollout runs on the local cluster: each canary step,
a pause and a resume, an acceptance check (a real Job) failing, and the rollback."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from aiohttp import web

from .conftest import KubectlFn, OperatorProcess, wait_for
from .test_acceptance_checks import python_job
from .test_rollout import Route, route, stable

pytestmark = pytest.mark.e2e


class Receiver:
    """An aiohttp server on loopback, in a thread of its own, that keeps every request."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, dict[str, str], Any]] = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True).start()
        assert started.wait(10), "the receiver did not start"

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def keep(request: web.Request) -> web.Response:
            body = await request.read()
            self.got.append((request.method, request.path, dict(request.headers), json.loads(body)))
            return web.Response(status=200)

        app = web.Application()
        app.router.add_route("*", "/{hook}", keep)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        started.set()
        self.loop.run_forever()

    def bodies(self, path: str) -> list[Any]:
        return [body for _, p, _, body in list(self.got) if p == path]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


EVENTS = ["RolloutStarted", "StepAdvanced", "Paused", "Resumed", "CheckFailed", "RolledBack"]


def test_a_rollout_is_told_step_by_step_in_the_templates_words(
    kubectl: KubectlFn, namespace: str, operator: OperatorProcess, receiver: Receiver
) -> None:
    steps = [
        {"weight": 10, "pause": {"duration": "2s"}},
        {"weight": 50, "pause": {"duration": "2s"}},
    ]
    body = route("told", steps=steps)
    # The second version's last gate: a Job that exits 1 before the switch.
    body["spec"]["checks"] = [python_job("smoke", "BeforePromotion", "raise SystemExit(1)")]
    body["spec"]["notifications"] = {
        "cooldown": "0s",
        "webhooks": [
            {
                "name": "ops",
                "type": "generic",
                "urlSecretRef": {"name": "hooks", "key": "ops"},
                "method": "PUT",
                "headersSecretRef": {"name": "hook-headers"},
                "events": EVENTS,
                "template": "$event: $namespace/$name $revision at ${weight}% (step $step)",
                "templates": [
                    {"event": "CheckFailed", "template": "check $check failed: $message"},
                    {"event": "RolledBack", "template": "rolled back $revision: $reason"},
                ],
                "body": '{"event": "$event", "text": "$text", "weight": $weight, '
                '"images": "$images"}',
            },
            {
                "name": "chat",
                "type": "teams",
                "url": f"{receiver.url}/teams",
                "events": ["RolledBack"],
            },
        ],
    }
    kubectl(
        "create", "secret", "generic", "hooks", "-n", namespace,
        f"--from-literal=ops={receiver.url}/ops",
    )  # fmt: skip
    kubectl(
        "create", "secret", "generic", "hook-headers", "-n", namespace,
        "--from-literal=Authorization=Bearer e2e-token-123",
    )  # fmt: skip
    r = Route(kubectl, namespace, body)
    r.apply()
    r.wait("Stable", stable)
    assert receiver.got == [], "the first version is no rollout: nothing to tell"

    def told(event: str, at_least: int = 1) -> list[Any]:
        def found() -> list[Any] | None:
            hits = [b for b in receiver.bodies("/ops") if b["event"] == event]
            return hits if len(hits) >= at_least else None

        return wait_for(found, 90, 0.3, f"{event} told")

    r.set_image("registry.example/app:2")
    revision = r.wait("rolling out", lambda s: s.get("canaryWeight") == 10)["canaryRevision"]
    [started] = told("RolloutStarted")
    assert started["images"] == "registry.example/app:2"
    step = told("StepAdvanced")[0]
    assert step["text"] == f"StepAdvanced: {namespace}/told {revision} at 10% (step 0)"
    assert step["weight"] == 10
    r.gate("pause")
    r.wait("paused", lambda s: s.get("phase") == "Paused")
    assert told("Paused")[0]["text"].startswith(f"Paused: {namespace}/told {revision}")
    r.gate("resume")
    told("Resumed")
    fifty = told("StepAdvanced", 2)[1]
    assert fifty["text"] == f"StepAdvanced: {namespace}/told {revision} at 50% (step 1)"
    s = r.wait("rolled back", lambda s: s.get("phase") == "RolledBack", timeout=120)
    assert s["rollbackReason"] == "CheckFailed"
    failed = told("CheckFailed")[0]
    assert failed["text"].startswith("check smoke failed: "), failed
    rolled = told("RolledBack")[0]
    assert rolled["text"] == f"rolled back {revision}: CheckFailed"
    assert rolled["images"] == "registry.example/app:2"

    methods = {(m, h.get("Authorization")) for m, p, h, _ in receiver.got if p == "/ops"}
    assert methods == {("PUT", "Bearer e2e-token-123")}
    order = [b["event"] for b in receiver.bodies("/ops")]
    assert order.index("StepAdvanced") < order.index("Paused") < order.index("Resumed")
    assert order.index("CheckFailed") < order.index("RolledBack"), order
    card = wait_for(lambda: receiver.bodies("/teams"), 30, 0.3, "the Teams card")[0]
    content = card["attachments"][0]["content"]
    assert content["type"] == "AdaptiveCard"
    assert content["body"][0]["text"] == f"{namespace}/told: RolledBack"
    wait_for(lambda: not r.status().get("pendingNotifications"), 30, 0.3, "the outbox emptied")
    assert "e2e-token-123" not in json.dumps(r.get()), "no header value in the resource"
    log = operator.log.read_text()
    assert "e2e-token-123" not in log and f"{receiver.url}/ops" not in log, "nor in the log"


@pytest.mark.parametrize(
    "hook, refusal",
    [
        ({"template": "$name at ${wieght}%"}, "unknown variable or stray $"),
        (
            {"templates": [{"event": "Paused", "template": "cost: 5$"}]},
            "unknown variable or stray $",
        ),
        ({"type": "generic"}, "body is set for a generic webhook"),
        ({"method": "PUT"}, "method and headersSecretRef are for a generic webhook"),
        ({"events": ["Exploded"]}, "Unsupported value"),
    ],
)
def test_the_api_server_refuses_a_bad_webhook_at_apply(
    kubectl: KubectlFn, namespace: str, crds_installed: None, hook: dict[str, Any], refusal: str
) -> None:
    body = route("refused")
    body["spec"]["notifications"] = {"webhooks": [{"name": "a", "url": "http://hook", **hook}]}
    res = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input=yaml.safe_dump(body), check=False,
    )  # fmt: skip
    assert res.returncode != 0 and refusal in res.stderr, res.stderr


def test_the_api_server_refuses_both_spellings_at_once(
    kubectl: KubectlFn, namespace: str, crds_installed: None
) -> None:
    body = route("both")
    hooks = {"webhooks": [{"name": "a", "url": "http://hook"}]}
    body["spec"]["notifications"] = hooks
    body["spec"]["analysis"] = {"notifications": hooks}
    res = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input=yaml.safe_dump(body), check=False,
    )  # fmt: skip
    assert res.returncode != 0 and "not both" in res.stderr, res.stderr
