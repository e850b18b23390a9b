"""hack/load.py against the sample app and small in-process servers: counts, pacing,
percentiles, cookies per virtual client, records, the CLI, and what it refuses."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from . import hack_scripts
from .sample_app import sample_app

load = hack_scripts.load("load")


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    """The sample app as v1, failing every 10th request, 5 ms slow."""
    with sample_app(VERSION="v1", ERROR_RATE="0.1", LATENCY_MS="5") as (url, _):
        yield url


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A server that keeps every request and answers after ?sleep= seconds; a client
    without the `who` cookie gets a new one, and X-Version tells which it sent."""
    seen: list[web.Request] = []
    issued = iter(range(1, 1000))

    async def handle(request: web.Request) -> web.Response:
        seen.append(request)
        await asyncio.sleep(float(request.query.get("sleep", "0")))
        who = request.cookies.get("who")
        response = web.Response(headers={"X-Version": who or "new"})
        if who is None:
            response.set_cookie("who", f"c{next(issued)}")
        return response

    app = web.Application()
    app.router.add_get("/{path:.*}", handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")), seen


def test_counts_versions_statuses_and_percentiles(app_url: str) -> None:
    report = load.Load(app_url, rate=200, requests=200).run()
    assert (report.sent, report.responses, report.skipped, report.in_flight) == (200, 200, 0, 0)
    assert report.versions == {"v1": 200}
    assert report.statuses == {200: 180, 500: 20}
    assert report.errors == {}
    p = report.latency
    assert 0.005 <= p["p50"] <= p["p90"] <= p["p99"] <= p["max"] < 1
    assert 160 <= report.rate <= 205, "about 200 req/s, paced over a second"


def test_json_output_is_one_document(app_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert load.main([app_url, "--requests", "20", "--rate", "500", "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["sent"] == document["responses"] == 20
    assert document["versions"] == {"v1": 20}
    assert document["statuses"] == {"200": 18, "500": 2}
    assert document["errors"] == {}
    assert set(document["latencySeconds"]) == {"p50", "p90", "p99", "max"}
    assert document["rate"] > 0 and document["url"] == app_url


def test_text_output_names_versions_and_statuses(
    app_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load.main([app_url, "--requests", "10", "--rate", "500", "--path", "/pay"]) == 0
    out = capsys.readouterr().out
    assert f"{app_url}/pay: 10 requests" in out
    assert "v1 10 (100.0%)" in out and "200 9 (90.0%)  500 1 (10.0%)" in out


def test_the_default_url_is_the_clusters_gateway(
    app_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"gateway": app_url}))
    monkeypatch.setenv("SHADOWROUTE_CLUSTER_DIR", str(tmp_path))
    assert load.gateway_url() == app_url
    (tmp_path / "state.json").write_text("{}")
    with pytest.raises(ValueError, match="has no gateway URL"):
        load.gateway_url()


async def test_pacing_is_open_loop_with_a_cap_in_flight(echo) -> None:
    url, _ = echo
    # 50 requests of 0.5 s, all due within 0.25 s: a closed loop would need 25 s.
    slow = load.Load(url, path="/?sleep=0.5", rate=200, requests=50, max_in_flight=40)
    report = await asyncio.to_thread(slow.run)
    assert report.sent == 40 and report.skipped == 10, "the cap skips, never delays"
    assert report.elapsed < 1.5 and report.latency["p50"] >= 0.5


async def test_each_virtual_client_keeps_its_cookies(echo) -> None:
    url, _ = echo
    # A client's next request leaves 100 ms after its previous one: time for the cookie.
    sticky = load.Load(url, rate=20, requests=10, clients=2, cookies=True, record=True)
    report = await asyncio.to_thread(sticky.run)
    assert report.versions["new"] == 2, "one new cookie per client, then it is sent back"
    by_client = Counter((r.client, r.version) for r in sticky.records() if r.version != "new")
    assert sorted(by_client.values()) == [4, 4]
    assert len({version for _, version in by_client}) == 2
    cookieless = load.Load(url, rate=500, requests=10, clients=2)
    assert (await asyncio.to_thread(cookieless.run)).versions == {"new": 10}


async def test_host_and_headers_are_sent(echo) -> None:
    url, seen = echo
    run = load.Load(
        url, rate=100, requests=2, host="checkout.example.test", headers={"X-User": "u1"}
    ).run
    await asyncio.to_thread(run)
    assert [(r.host, r.headers["X-User"]) for r in seen] == [("checkout.example.test", "u1")] * 2


async def test_timeouts_and_refused_connections_are_errors_not_statuses(echo) -> None:
    url, _ = echo
    late = load.Load(url, path="/?sleep=1", rate=100, requests=3, timeout=0.05, record=True)
    report = await asyncio.to_thread(late.run)
    assert (report.errors, report.statuses, report.versions) == ({"timeout": 3}, {}, {})
    assert {(r.status, r.version, r.error) for r in late.records()} == {(0, None, "timeout")}
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = load.Load(f"http://127.0.0.1:{port}", rate=100, requests=3).run()
    assert refused.errors == {"connection": 3} and refused.latency == {}


def test_start_snapshot_stop_and_records(app_url: str) -> None:
    running = load.Load(app_url, rate=200, duration=60, clients=2, record=True).start()
    deadline = time.monotonic() + 5
    while running.snapshot().responses < 20:
        assert time.monotonic() < deadline, "no responses"
        assert not running.wait(0.01)
    report = running.stop()
    assert 20 <= report.sent < 1000 and report.in_flight == 0
    records = running.records()
    assert len(records) == report.sent
    assert {r.client for r in records} == {0, 1}
    assert {r.version for r in records} == {"v1"} and all(r.latency > 0 for r in records)
    starts = sorted(r.sent_at for r in records)
    assert starts[-1] - starts[0] >= (len(starts) - 1) / 200 - 0.01, "paced, not a burst"


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://example.com/",
        "http://localhost:8080/",
        "http://[::1]:8080/",
        "http://128.0.0.1/",
        "ftp://127.0.0.1/",
    ],
)
def test_it_sends_only_to_loopback(url: str) -> None:
    with pytest.raises(ValueError, match=r"refusing host|only http"):
        load.Load(url)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"rate": 0}, "rate 0/s is outside"),
        ({"rate": 1001}, "rate 1001/s is outside"),
        ({"duration": 901}, "duration 901 s is outside"),
        ({"rate": 1, "requests": 901}, "901 requests at 1/s take 901 s, more than 900"),
        ({"requests": 0}, "requests 0 is less than 1"),
        ({"duration": 1, "requests": 1}, "not both"),
        ({"clients": 0}, "clients 0 is outside"),
        ({"timeout": 0}, "timeout 0 s is outside"),
        ({"path": "cart"}, "must start with /"),
    ],
)
def test_bounds_are_enforced(options: dict, says: str) -> None:
    with pytest.raises(ValueError) as error:
        load.Load("http://127.0.0.1:1", **options)
    assert says in str(error.value)


def test_the_cli_says_why_it_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        load.main(["http://192.168.1.1", "--rate", "10"])
    assert exit_.value.code == 2
    assert "sends only to loopback addresses (127.0.0.0/8)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load.main(["http://127.0.0.1:1", "--rate", "5000"])
    assert "rate 5000.0/s is outside (0, 1000]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load.main(["http://127.0.0.1:1", "--header", "no-colon"])
    assert "is not K:V" in capsys.readouterr().err
