"""The operator-wide services: built once at startup into kopf's memo, shared by the
analysis and the notifications, stopped and closed at cleanup in the order shutdown
needs; and no module of the operator keeps one as a global."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil

import aiohttp
import kopf
import pytest
import shadowroute
from shadowroute import handlers
from shadowroute.analysis.prometheus import Client
from shadowroute.http import Http
from shadowroute.kube.client import Kube
from shadowroute.notify import Notifier
from shadowroute.scheduler import Scheduler
from shadowroute.secrets import Secrets
from shadowroute.services import Services


class FakeKube:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    async def close(self) -> None:
        self.calls.append("kube closed")

    async def list_kind_pages(self, kind: str, namespace: str | None, selector: str = ""):
        yield [], "1"

    def watch(self, kind: str, path: str, sink, **options):
        return Listed(sink)


class Listed:
    """A watch whose LIST finds nothing."""

    def __init__(self, sink) -> None:
        self.sink = sink

    def start(self) -> None:
        self.sink("listed", (set(), "1", True))

    def stop(self) -> None:
        pass


async def started(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> kopf.Memo:
    monkeypatch.setattr(handlers, "Kube", lambda: FakeKube(calls))
    memo = kopf.Memo()
    await handlers.startup(settings=kopf.OperatorSettings(), memo=memo)
    return memo


async def test_startup_builds_one_set_of_services_that_share_the_session_and_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    memo = await started(monkeypatch, [])
    services = memo[handlers.SERVICES]
    assert isinstance(services, Services)
    assert isinstance(services.scheduler, Scheduler)
    assert services.prometheus.session.__self__ is services.http
    assert services.notifier._session.__self__ is services.http
    assert services.notifier._secrets is services.secrets
    session = services.http.session()
    assert services.prometheus.session() is session is services.notifier._session()
    await services.http.close()
    assert session.closed


async def test_the_event_handlers_use_the_scheduler_in_the_memo() -> None:
    seen: list[tuple[str, str, str]] = []

    class Recording:
        def seen(self, namespace: str, name: str) -> None:
            seen.append(("seen", namespace, name))

        def trigger(self, namespace: str, name: str) -> None:
            seen.append(("trigger", namespace, name))

        def forget(self, namespace: str, name: str) -> None:
            seen.append(("forget", namespace, name))

    class Index:
        def observe(self, kind: str, type_: str | None, body: dict) -> None:
            seen.append(("index", kind, type_))

    memo = kopf.Memo()
    memo[handlers.SERVICES] = type("S", (), {"scheduler": Recording(), "feed": Index()})()
    route = {"kind": "ShadowRoute", "metadata": {"name": "web", "namespace": "shop"}}
    await handlers.shadowroute_event(event={"type": "MODIFIED", "object": route}, name="web",
                                     namespace="shop", memo=memo)  # fmt: skip
    await handlers.shadowroute_event(event={"type": "DELETED", "object": route}, name="web",
                                     namespace="shop", memo=memo)  # fmt: skip
    assert seen == [
        ("index", "ShadowRoute", "MODIFIED"),
        ("seen", "shop", "web"),
        ("trigger", "shop", "web"),
        ("index", "ShadowRoute", "DELETED"),
        ("forget", "shop", "web"),
    ]


async def test_cleanup_stops_hands_over_then_gives_deliveries_a_bounded_moment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    memo = await started(monkeypatch, calls)
    services: Services = memo[handlers.SERVICES]

    async def stop() -> None:
        calls.append("reconciles stopped")

    async def hand_over() -> None:
        calls.append("lease handed over")

    monkeypatch.setattr(services.scheduler, "stop", stop)
    memo["hand_over"] = hand_over
    services.http.session()  # a session is open
    finished: list[str] = []

    async def quick() -> None:
        await asyncio.sleep(0.01)
        finished.append("quick")

    async def hung() -> None:
        await asyncio.sleep(3600)

    for work in (quick, hung):
        task = asyncio.get_running_loop().create_task(work())
        services.notifier._tasks.add(task)
        task.add_done_callback(services.notifier._tasks.discard)
    real_close = services.http.close

    async def close() -> None:
        calls.append("session closed")
        await real_close()

    monkeypatch.setattr(services.http, "close", close)
    monkeypatch.setattr(handlers, "DELIVERY_GRACE_SECONDS", 0.2)
    await asyncio.wait_for(handlers.cleanup(memo=memo), 5)
    assert calls == ["reconciles stopped", "lease handed over", "kube closed", "session closed"]
    assert services.feed.synced("ShadowRoute"), "the index listed every kind at start"
    assert finished == ["quick"], "a delivery under way had its moment"
    for task in list(services.notifier._tasks):
        task.cancel()


async def test_cleanup_before_startup_finished_does_nothing() -> None:
    await handlers.cleanup(memo=kopf.Memo())


SERVICE_TYPES = (Client, Http, Kube, Notifier, Scheduler, Secrets, Services, aiohttp.ClientSession)


def test_no_module_keeps_an_operator_wide_service_as_a_global() -> None:
    """They live in the memo (handlers.startup), passed down from there."""
    found = []
    for info in pkgutil.walk_packages(shadowroute.__path__, "shadowroute."):
        if info.name.startswith("shadowroute.cli"):
            continue
        module = importlib.import_module(info.name)
        for attr, value in vars(module).items():
            if isinstance(value, SERVICE_TYPES):
                found.append(f"{info.name}.{attr}")
    assert found == []


def test_the_analysis_and_the_notifications_do_not_import_each_other() -> None:
    import ast
    from pathlib import Path

    root = Path(shadowroute.__file__).parent
    for path in (root / "analysis").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "notify" not in (node.module or ""), path
                assert not any(a.name == "notify" for a in node.names), path
