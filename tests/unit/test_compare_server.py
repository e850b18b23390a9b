"""The comparator end to end, in process: real aiohttp servers on 127.0.0.1 as the
candidate and two baseline instances (behind a per-connection round-robin balancer,
as kube-proxy spreads connections, reached through service-link variables), mirrored
copies sent to its mirror port, its counts read on the admin port."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client.parser import text_string_to_metric_families
from shadowroute.compare.config import Config
from shadowroute.compare.server import Comparator
from yarl import URL

LOOPBACK = "127.0.0.1"
MIRRORED_HOST = "shop.example-shadow"
Answerer = Callable[["Upstream", web.Request], Awaitable[web.StreamResponse] | web.StreamResponse]


async def until(condition: Callable[[], bool], polls: int = 2000) -> None:
    """Wait for a condition, polled every 5 ms, failing after `polls` polls (~10 s)."""
    for _ in range(polls):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def same(upstream: Upstream, request: web.Request) -> web.StreamResponse:
    return web.json_response({"price": 10, "path": request.path_qs}, headers={"ETag": '"1"'})


@dataclass
class Upstream:
    """One instance of a service: answers with `answer`, records every ask."""

    name: str
    answer: Answerer = same
    asks: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.asks.append(
            {
                "method": request.method,
                "path": request.raw_path,
                "headers": list(request.headers.items()),
                "body": body,
            }
        )
        result = self.answer(self, request)
        return await result if inspect.isawaitable(result) else result


class RoundRobin:
    """A TCP balancer that sends each new connection to the next backend."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, LOOPBACK, 0)
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = self.ports[self.connections % len(self.ports)]
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(LOOPBACK, port)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def stop(self) -> None:
        self.server.close()
        for w in self._writers:
            w.close()
        await self.server.wait_closed()


@dataclass
class World:
    candidate: Upstream
    baselines: tuple[Upstream, Upstream]
    balancer_port: int
    release: asyncio.Event
    client: aiohttp.ClientSession
    comparators: list[Comparator] = field(default_factory=list)

    async def comparator(self, **changes: Any) -> Comparator:
        settings: dict[str, Any] = {
            "candidate": f"http://{LOOPBACK}:{self.candidate.port}",
            "baseline": f"http://web-baseline:{self.balancer_port}",
            "route": "web",
            "revision": "abc123",
            "listen_port": 0,
            "admin_port": 0,
            "listen_address": LOOPBACK,
            "max_in_flight": 1000,
            "min_compared": 10,
        }
        env = {"WEB_BASELINE_SERVICE_HOST": LOOPBACK, "WEB_BASELINE_SERVICE_PORT": "80"}
        c = Comparator(Config(**{**settings, **changes}), env)
        await c.start()
        self.comparators.append(c)
        return c

    def answer_all(self, answer: Answerer) -> None:
        for u in (self.candidate, *self.baselines):
            u.answer = answer

    async def mirror(
        self, c: Comparator, path: str, method: str = "GET", **kwargs: Any
    ) -> aiohttp.ClientResponse:
        headers = {"Host": MIRRORED_HOST, **kwargs.pop("headers", {})}
        url = URL(f"http://{LOOPBACK}:{c.listen_port}{path}", encoded=True)  # sent as written
        async with self.client.request(method, url, headers=headers, **kwargs) as response:
            await response.read()
            return response

    async def admin(self, c: Comparator, path: str) -> tuple[int, str]:
        async with self.client.get(f"http://{LOOPBACK}:{c.admin_port}{path}") as response:
            return response.status, await response.text()


def accounted(c: Comparator) -> int:
    k = c.comparison
    return k.tally.compared + sum(k.skipped.values()) + sum(k.dropped.values())


@pytest.fixture
async def world() -> AsyncIterator[World]:
    runners = []
    upstreams = [Upstream("candidate"), Upstream("baseline-a"), Upstream("baseline-b")]
    for u in upstreams:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", u.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, LOOPBACK, 0).start()
        u.port = runner.addresses[0][1]
        runners.append(runner)
    balancer = RoundRobin([upstreams[1].port, upstreams[2].port])
    balancer_port = await balancer.start()
    release = asyncio.Event()
    async with aiohttp.ClientSession() as client:
        w = World(upstreams[0], (upstreams[1], upstreams[2]), balancer_port, release, client)
        yield w
        release.set()
        for c in w.comparators:
            await c.stop(grace=5)
    await balancer.stop()
    for runner in runners:
        await runner.cleanup()


async def test_identical_answers_are_compared_and_match(world: World) -> None:
    c = await world.comparator()
    status, _ = await world.admin(c, "/healthz")
    assert status == 200
    for i in range(20):
        response = await world.mirror(
            c,
            f"/items?i={i}&q=a%2Fb",
            headers={"X-Request-Id": "r"},
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
        )
        assert response.status == 204
    await world.mirror(c, "/items", method="HEAD")
    await until(lambda: c.comparison.tally.compared == 21)
    assert c.comparison.tally.mismatched == 0 and not c.comparison.tally.names
    # the candidate got the request as the client sent it: original host, path, query
    ask = world.candidate.asks[0]
    assert (ask["method"], ask["path"]) == ("GET", "/items?i=0&q=a%2Fb")
    headers = CIMultiDict(ask["headers"])
    assert headers["Host"] == "shop.example" and headers["X-Request-Id"] == "r"
    assert not {"User-Agent", "Accept-Encoding", "Accept"} & set(headers)  # none of aiohttp's
    # twice to the baseline, through the balancer, on two pools: both instances asked
    a, b = world.baselines
    assert len(a.asks) + len(b.asks) == 42 and a.asks and b.asks
    assert len(world.candidate.asks) == 21


async def test_a_field_differing_on_5_percent_of_requests_is_real(world: World) -> None:
    def candidate(u: Upstream, request: web.Request) -> web.StreamResponse:
        i = int(request.query["i"])
        return web.json_response({"price": 11 if i % 20 == 0 else 10, "name": "tea"})

    world.answer_all(lambda u, r: web.json_response({"price": 10, "name": "tea"}))
    world.candidate.answer = candidate
    c = await world.comparator(max_mismatch_rate=0.01)
    for i in range(100):
        await world.mirror(c, f"/items?i={i}")
    await until(lambda: c.comparison.tally.compared == 100)
    assert c.comparison.tally.real == {"body.price"}
    assert c.comparison.tally.mismatched == 5
    _, text = await world.admin(c, "/summary")
    summary = json.loads(text)
    assert summary["mismatched"] == 5 and summary["mismatchRate"] == 0.05
    assert summary["verdict"]["judgement"] == "Fail"
    assert summary["fields"] == [{"name": "body.price", "raw": 5, "noise": 0, "real": True}]
    assert len(summary["samples"]) == 3  # --samples 3 per field
    sample = summary["samples"][0]
    assert sample["field"] == "body.price" and sample["request"]["path"] == "/items?i=0"
    assert json.loads(sample["candidate"]["body"])["price"] == 11
    assert json.loads(sample["baseline"]["body"])["price"] == 10


async def test_fields_that_differ_in_every_answer_are_noise(world: World) -> None:
    def noisy(u: Upstream, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"price": 10, "ts": uuid.uuid4().hex}, headers={"X-Request-Id": uuid.uuid4().hex}
        )

    world.answer_all(noisy)
    c = await world.comparator()
    for i in range(50):
        await world.mirror(c, f"/items?i={i}")
    await until(lambda: c.comparison.tally.compared == 50)
    tally = c.comparison.tally
    assert tally.count("body.ts").raw == tally.count("body.ts").noise == 50
    assert tally.count("header:x-request-id").noise == 50
    assert not tally.real and tally.mismatched == 0
    _, text = await world.admin(c, "/summary")
    assert json.loads(text)["verdict"]["judgement"] == "Pass"


async def test_unsafe_methods_are_skipped_unasked(world: World) -> None:
    c = await world.comparator()
    response = await world.mirror(c, "/orders", method="POST", data=b'{"n": 1}')
    assert response.status == 204
    await until(lambda: c.comparison.skipped["method"] == 1)
    assert not world.candidate.asks and not any(b.asks for b in world.baselines)
    assert c.comparison.tally.compared == 0


async def test_a_copy_arriving_when_full_is_dropped_not_queued(world: World) -> None:
    async def held(u: Upstream, request: web.Request) -> web.StreamResponse:
        await world.release.wait()
        return web.json_response({})

    world.candidate.answer = held
    c = await world.comparator(max_in_flight=2)
    for i in range(2):
        await world.mirror(c, f"/slow?i={i}")
    await until(lambda: len(world.candidate.asks) == 2)
    for i in range(3):  # answered at once, not compared
        assert (await world.mirror(c, f"/more?i={i}")).status == 204
    assert c.comparison.dropped["busy"] == 3 and c.in_flight == 2
    world.release.set()
    await until(lambda: c.comparison.tally.compared == 2 and c.in_flight == 0)
    assert len(world.candidate.asks) == 2


async def test_too_large_bodies_are_skipped(world: World) -> None:
    c = await world.comparator(max_body_bytes=100)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * 50

    await world.mirror(c, "/upload", data=b"y" * 200)  # Content-Length: not even read
    await world.mirror(c, "/upload", data=chunks())  # chunked: cut once past the limit
    await until(lambda: c.comparison.skipped["too-large"] == 2)
    assert not world.candidate.asks
    world.candidate.answer = lambda u, r: web.Response(body=b"z" * 1000)
    await world.mirror(c, "/big")
    await until(lambda: c.comparison.skipped["too-large"] == 3)
    assert c.comparison.tally.compared == 0
    world.candidate.answer = same
    await world.mirror(c, "/small", data=b"ok")  # a small body is forwarded
    await until(lambda: c.comparison.tally.compared == 1)
    assert world.candidate.asks[-1]["body"] == b"ok"


async def test_a_body_that_stalls_is_dropped_within_the_timeout(world: World) -> None:
    c = await world.comparator(timeout=0.2)
    reader, writer = await asyncio.open_connection(LOOPBACK, c.listen_port)
    writer.write(
        f"GET /slow HTTP/1.1\r\nHost: {MIRRORED_HOST}\r\nContent-Length: 10\r\n\r\nabc".encode()
    )
    await writer.drain()  # 3 bytes of 10, then nothing
    head = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert b" 204 " in head
    assert c.comparison.dropped["stalled"] == 1 and c._in_flight == 0
    assert not world.candidate.asks


async def test_a_candidate_that_times_out_differs_on_status(world: World) -> None:
    async def hangs(u: Upstream, request: web.Request) -> web.StreamResponse:
        await world.release.wait()
        return web.json_response({})

    world.candidate.answer = hangs
    c = await world.comparator(timeout=0.2)
    await world.mirror(c, "/items")
    await until(lambda: c.comparison.tally.compared == 1)
    assert c.comparison.tally.count("status").raw == 1
    _, text = await world.admin(c, "/summary")
    summary = json.loads(text)
    assert summary["mismatched"] == 1 and summary["noAnswer"]["candidate"] == {"timeout": 1}
    [sample] = summary["samples"]
    assert sample["candidate"]["status"] == "no answer"
    assert sample["candidate"]["error"] == "timeout"
    assert sample["baseline"]["status"] == 200
    assert summary["latency"]["candidate"]["count"] == 0
    assert summary["latency"]["baseline"]["count"] == 2


async def test_a_baseline_that_fails_skips_the_request(world: World) -> None:
    async def hangs(u: Upstream, request: web.Request) -> web.StreamResponse:
        await world.release.wait()
        return web.json_response({})

    for b in world.baselines:
        b.answer = hangs
    c = await world.comparator(timeout=0.2)
    await world.mirror(c, "/items")
    await until(lambda: c.comparison.skipped["baseline-failed"] == 1)
    assert c.comparison.tally.compared == 0


async def test_an_unreachable_candidate_is_no_answer(world: World) -> None:
    with __import__("socket").socket() as s:  # a port nobody listens on
        s.bind((LOOPBACK, 0))
        closed = s.getsockname()[1]
    c = await world.comparator(candidate=f"http://{LOOPBACK}:{closed}")
    await world.mirror(c, "/items")
    await until(lambda: c.comparison.tally.compared == 1)
    assert c.comparison.no_answers["candidate"] == {"connect": 1}


async def test_metrics_exposition(world: World) -> None:
    world.candidate.answer = lambda u, r: web.json_response({"price": 11})
    world.baselines[0].answer = world.baselines[1].answer = lambda u, r: web.json_response(
        {"price": 10}
    )
    c = await world.comparator()
    for i in range(3):
        await world.mirror(c, f"/items?i={i}")
    await world.mirror(c, "/items", method="DELETE")
    await until(lambda: c.comparison.tally.compared == 3)
    status, text = await world.admin(c, "/metrics")
    assert status == 200
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    names = {s.name for s in samples}
    assert {
        "shadowroute_compare_requests_total",
        "shadowroute_compare_mismatched_requests",
        "shadowroute_compare_matched_requests",
        "shadowroute_compare_field_differences_total",
        "shadowroute_compare_field_noise_total",
        "shadowroute_compare_skipped_total",
        "shadowroute_compare_dropped_total",
        "shadowroute_compare_upstream_duration_seconds_bucket",
        "shadowroute_compare_upstream_duration_seconds_count",
    } <= names
    ours = [s for s in samples if s.name.startswith("shadowroute_compare_")]
    assert all(s.labels["route"] == "web" and s.labels["revision"] == "abc123" for s in ours)
    assert "process_resident_memory_bytes" in names  # its memory, watched over a run

    def value(name: str, **labels: str) -> float:
        [v] = [
            s.value
            for s in samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        return v

    assert value("shadowroute_compare_requests_total") == 3
    assert value("shadowroute_compare_mismatched_requests") == 3
    assert value("shadowroute_compare_matched_requests") == 0
    assert value("shadowroute_compare_field_differences_total", field="body.price") == 3
    assert value("shadowroute_compare_field_noise_total", field="body.price") == 0
    assert value("shadowroute_compare_skipped_total", reason="method") == 1
    assert value("shadowroute_compare_dropped_total", reason="busy") == 0
    assert value("shadowroute_compare_upstream_duration_seconds_count", side="baseline") == 6
    assert value("shadowroute_compare_upstream_duration_seconds_count", side="candidate") == 3
    buckets = {
        s.labels["le"]
        for s in samples
        if s.name.endswith("_bucket") and s.labels["side"] == "candidate"
    }
    assert {"0.001", "0.00125", "+Inf"} <= buckets and len(buckets) == 48


async def test_credentials_never_reach_the_summary_nor_the_logs(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    def candidate(u: Upstream, request: web.Request) -> web.StreamResponse:
        response = web.json_response({"v": 2}, headers={"X-Auth-Token": "SECRET-D"})
        response.headers.add("Set-Cookie", "id=SECRET-C")
        return response

    world.candidate.answer = candidate
    world.baselines[0].answer = world.baselines[1].answer = lambda u, r: web.json_response(
        {"v": 1}, headers={"Set-Cookie": "id=SECRET-E"}
    )
    c = await world.comparator()
    secret = {"Authorization": "Bearer SECRET-A", "Cookie": "session=SECRET-B"}
    await world.mirror(c, "/me?token=SECRET-F&x=1", headers=secret)
    await world.mirror(c, "/me")  # no cookie of the first answer comes back
    await until(lambda: c.comparison.tally.compared == 2)
    # the services got the credentials (they must answer as for the client) ...
    first, second = world.candidate.asks
    assert CIMultiDict(first["headers"])["Authorization"] == "Bearer SECRET-A"
    assert "Cookie" not in CIMultiDict(second["headers"])
    # ... the summary and the logs never show them
    _, text = await world.admin(c, "/summary")
    for leaked in ("SECRET-A", "SECRET-B", "SECRET-C", "SECRET-D", "SECRET-E", "SECRET-F"):
        assert leaked not in text and leaked not in caplog.text
    sample = json.loads(text)["samples"][0]
    assert sample["request"]["headers"]["authorization"] == "<redacted>"
    assert sample["request"]["headers"]["cookie"] == "<redacted>"
    assert sample["request"]["path"] == "/me?token=<redacted>&x=1"
    assert sample["candidate"]["headers"]["set-cookie"] == "<redacted>"
    assert sample["candidate"]["headers"]["x-auth-token"] == "<redacted>"
    assert sample["baseline"]["headers"]["set-cookie"] == "<redacted>"


async def test_stop_waits_for_comparisons_in_progress(world: World) -> None:
    async def held(u: Upstream, request: web.Request) -> web.StreamResponse:
        await world.release.wait()
        return web.json_response({})

    world.candidate.answer = held
    c = await world.comparator()
    await world.mirror(c, "/items")
    await until(lambda: len(world.candidate.asks) == 1)
    stopping = asyncio.create_task(c.stop(grace=5))
    world.release.set()
    await stopping
    assert c.comparison.tally.compared == 1 and c.in_flight == 0
    world.comparators.remove(c)
