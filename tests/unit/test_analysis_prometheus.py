"""The Prometheus client against a local HTTP server that answers like the Prometheus
API (or fails like a broken one): retries on transient errors only, bounded time,
credentials sent but never shown."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from shadowroute.analysis.prometheus import Client, Endpoint, InvalidQuery, Unavailable

NOW = dt.datetime(2026, 11, 25, 5, 0, tzinfo=dt.UTC)


def vector(*values: str, labels: list[dict[str, str]] | None = None) -> dict[str, Any]:
    labels = labels or [{} for _ in values]
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": m, "value": [1795587019.1, v]}
                for m, v in zip(labels, values, strict=True)
            ],
        },
    }


class FakeApi:
    """Scripted answers, one per request, and what each request carried."""

    def __init__(self, answers: list[Callable[[], Any]]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        self.requests.append({"form": dict(form), "headers": dict(request.headers)})
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        result = answer()
        if asyncio.iscoroutine(result):
            result = await result
        return result


async def serve(
    handle: Callable[[web.Request], Any], runners: list[web.AppRunner], prefix: str = ""
) -> str:
    """An HTTP server on loopback answering the query API with `handle`: its base URL."""
    app = web.Application()
    app.router.add_post(f"{prefix}/api/v1/query", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    runners.append(runner)
    port = site._server.sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}{prefix}"


@pytest.fixture
async def server() -> AsyncIterator[Callable[[list[Callable[[], Any]]], Any]]:
    runners: list[web.AppRunner] = []

    async def start(answers: list[Callable[[], Any]]) -> tuple[str, FakeApi]:
        api = FakeApi(answers)
        return await serve(api.handle, runners, "/prom"), api

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    session = aiohttp.ClientSession()
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    c = Client(session=lambda: session, sleep=sleep, jitter=lambda: 1.0)
    c.delays = delays  # type: ignore[attr-defined]
    yield c
    await session.close()


def json_answer(doc: dict[str, Any], status: int = 200) -> Callable[[], web.Response]:
    return lambda: web.json_response(doc, status=status)


async def test_a_vector_answer_is_its_samples(server, client) -> None:
    address, api = await server(
        [json_answer(vector("0.25", "NaN", "+Inf", labels=[{"a": "1"}, {"a": "2"}, {"a": "3"}]))]
    )
    samples = await client.query(Endpoint(address), 'sum(x{a="b"})', NOW)
    assert [s.labels for s in samples] == [(("a", "1"),), (("a", "2"),), (("a", "3"),)]
    assert (
        samples[0].value == 0.25 and math.isnan(samples[1].value) and samples[2].value == math.inf
    )
    assert api.requests[0]["form"] == {"query": 'sum(x{a="b"})', "time": f"{NOW.timestamp():.3f}"}


async def test_a_scalar_answer_is_one_sample(server, client) -> None:
    address, _ = await server(
        [json_answer({"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}})]
    )
    samples = await client.query(Endpoint(address), "scalar(x)", NOW)
    assert [(s.labels, s.value) for s in samples] == [((), 3.0)]


async def test_an_empty_vector_is_no_samples(server, client) -> None:
    address, _ = await server([json_answer(vector())])
    assert await client.query(Endpoint(address), "x", NOW) == ()


async def test_transient_errors_are_retried_with_growing_jittered_delays(server, client) -> None:
    address, api = await server(
        [
            json_answer({"status": "error", "errorType": "timeout", "error": "slow"}, 503),
            lambda: web.Response(status=502, text="bad gateway"),
            json_answer(vector("1")),
        ]
    )
    samples = await client.query(Endpoint(address), "x", NOW)
    assert samples[0].value == 1.0 and len(api.requests) == 3
    assert client.delays == [0.2, 0.4]  # base * 2**attempt, times the jitter (1.0 here)


async def test_retries_stop_after_the_attempts_with_the_last_reason(server, client) -> None:
    address, api = await server([lambda: web.Response(status=500, text="boom")])
    with pytest.raises(Unavailable, match="HTTP 500") as caught:
        await client.query(Endpoint(address), "x", NOW)
    assert len(api.requests) == 3 and caught.value.reason == "HTTP500"


@pytest.mark.parametrize(
    "status,error",
    [(400, "bad_data: parse error at char 3"), (422, "execution: many-to-many matching")],
)
async def test_a_refused_query_is_not_retried(server, client, status, error) -> None:
    kind, text = error.split(": ", 1)
    address, api = await server(
        [json_answer({"status": "error", "errorType": kind, "error": text}, status)]
    )
    with pytest.raises(InvalidQuery, match=error):
        await client.query(Endpoint(address), "x{", NOW)
    assert len(api.requests) == 1


async def test_a_range_vector_is_an_invalid_query(server, client) -> None:
    address, _ = await server(
        [json_answer({"status": "success", "data": {"resultType": "matrix", "result": []}})]
    )
    with pytest.raises(InvalidQuery, match="range vector"):
        await client.query(Endpoint(address), "x[5m]", NOW)


@pytest.mark.parametrize(
    "answer,match",
    [
        (lambda: web.Response(status=401), "refused the credentials"),
        (lambda: web.Response(status=403), "refused the credentials"),
        (lambda: web.Response(status=404, text="404 page not found"), "no Prometheus query API"),
        (lambda: web.Response(status=200, text="<html>login</html>"), "not the Prometheus API"),
    ],
)
async def test_wrong_address_or_credentials_are_unavailable_at_once(
    server, client, answer, match
) -> None:
    address, api = await server([answer])
    with pytest.raises(Unavailable, match=match):
        await client.query(Endpoint(address), "x", NOW)
    assert len(api.requests) == 1, "asking again would get the same answer"


async def test_a_hanging_prometheus_costs_at_most_twice_the_timeout(server) -> None:
    async def hang() -> web.Response:
        await asyncio.sleep(1.5)
        return web.Response()

    address, api = await server([hang])
    async with aiohttp.ClientSession() as session:
        c = Client(session=lambda: session)
        started = time.monotonic()
        with pytest.raises(Unavailable, match="no answer within") as caught:
            await c.query(Endpoint(address, timeout=0.3), "x", NOW)
    assert time.monotonic() - started < 0.3 * 2 + 0.3
    assert caught.value.reason == "Timeout" and 1 <= len(api.requests) <= 2


async def test_nobody_listening_is_unavailable_after_retries(client) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(Unavailable, match=r"ConnectionError|Cannot connect") as caught:
        await client.query(Endpoint(f"http://127.0.0.1:{port}"), "x", NOW)
    assert caught.value.reason == "ConnectionError" and len(client.delays) == 2


async def test_credentials_are_sent_and_never_shown(server, client) -> None:
    address, api = await server([lambda: web.Response(status=401)])
    endpoint = Endpoint(address, headers={"Authorization": "Bearer s3cret-token"})
    with pytest.raises(Unavailable) as caught:
        await client.query(endpoint, "x", NOW)
    assert api.requests[0]["headers"]["Authorization"] == "Bearer s3cret-token"
    assert "s3cret" not in str(caught.value) and "s3cret" not in repr(endpoint)
