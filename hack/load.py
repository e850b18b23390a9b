"""Load generator for the local test world: a bounded, open-loop request rate at the
gateway (or any loopback URL), and what came back, per version.

    python hack/load.py [URL] [--host checkout.example.test] [--rate 50] [--duration 10]
                        [--requests N] [--path /cart] [--method GET] [--header K:V ...]
                        [--clients 1] [--cookies] [--timeout 5] [--max-in-flight 200]
                        [-o text|json]

URL defaults to the `gateway` of the local cluster's state file
($SHADOWROUTE_CLUSTER_DIR/state.json, by default <repo>/.cluster/state.json). Only
loopback hosts (127.0.0.0/8) are accepted and redirects are never followed: the test
world's gateway listens on host loopback, and this tool must never load anything else.
`--host` sets the Host header the gateway routes by.

Pacing is open-loop: request i starts at i / rate seconds whatever happened to the
earlier ones; when `--max-in-flight` requests are still waiting, a due request is
skipped and counted, not delayed. The run stops by itself: after `--duration` seconds
(at most 900) or `--requests` requests, at `--rate` (at most 1000 per second).

`--clients N` spreads the requests round-robin over N virtual clients; with `--cookies`
each keeps its own cookie jar, the way N browsers would (stickiness tests).

It reports per-version counts (the X-Version response header; "none" when absent),
status codes, requests that got no response (timeouts, connection errors: counted
apart, never as a status), latency percentiles of the responses and the achieved rate;
`-o json` prints the same as one JSON document.

As a library (tests, the demo):

    load = Load("http://127.0.0.1:9898", rate=200, duration=5, record=True).start()
    load.snapshot().versions        # counts so far, from any thread
    report = load.stop()            # or load.run() to block until the end
    last_canary = max(r.sent_at for r in load.records() if r.version == "v2")
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import math
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
MAX_RATE = 1000.0
MAX_DURATION = 900.0
MAX_CLIENTS = 1000
MAX_IN_FLIGHT = 1000
MAX_TIMEOUT = 60.0
DEFAULT_DURATION = 10.0
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def loopback_url(url: str, path: str | None = None) -> str:
    """`url` (with `path` instead of its own path and query, if given), or ValueError
    when its host is not an IPv4 address in 127.0.0.0/8."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r}: only http and https URLs")
    try:
        loopback = ipaddress.ip_address(parts.hostname or "") in LOOPBACK
    except ValueError:  # a name, not an address
        loopback = False
    if not loopback:
        raise ValueError(
            f"{url!r}: refusing host {parts.hostname!r}: load.py sends only to loopback "
            "addresses (127.0.0.0/8); set the Host header with --host"
        )
    if path is None:
        return urlunsplit(parts)
    if not path.startswith("/"):
        raise ValueError(f"path {path!r} must start with /")
    route, _, query = path.partition("?")
    return urlunsplit((parts.scheme, parts.netloc, route, query, ""))


def gateway_url() -> str:
    """The local cluster's gateway, from its state file, or ValueError saying why not."""
    cluster_dir = Path(os.environ.get("SHADOWROUTE_CLUSTER_DIR", ROOT / ".cluster"))
    state_file = cluster_dir / "state.json"
    try:
        gateway = json.loads(state_file.read_text()).get("gateway")
    except FileNotFoundError:
        raise ValueError(f"no URL given and no {state_file}: is the cluster up?") from None
    if not isinstance(gateway, str):
        raise ValueError(f"no URL given and {state_file} has no gateway URL")
    return gateway


@dataclass(frozen=True)
class Record:
    """One request, when asked for with record=True."""

    sent_at: float  # Unix time the request started
    latency: float  # seconds until the whole response (or the error)
    client: int  # the virtual client, 0..clients-1
    status: int  # 0: no response
    version: str | None  # the X-Version header, "none" when absent; None: no response
    error: str | None  # "timeout" or "connection" when there was no response


@dataclass(frozen=True)
class Report:
    """Counts so far, or of the whole run."""

    url: str
    host: str | None
    sent: int
    skipped: int  # due while max_in_flight requests were waiting: never sent
    in_flight: int
    elapsed: float  # seconds since the first request (until the last answer, once done)
    versions: dict[str, int]
    statuses: dict[int, int]
    errors: dict[str, int]
    latency: dict[str, float]  # p50, p90, p99, max of the responses, in seconds

    @property
    def responses(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        """Requests sent per second."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "host": self.host,
            "sent": self.sent,
            "responses": self.responses,
            "skipped": self.skipped,
            "inFlight": self.in_flight,
            "elapsedSeconds": round(self.elapsed, 3),
            "rate": round(self.rate, 1),
            "versions": self.versions,
            "statuses": {str(code): n for code, n in self.statuses.items()},
            "errors": self.errors,
            "latencySeconds": {k: round(v, 6) for k, v in self.latency.items()},
        }

    def to_text(self) -> str:
        def counts(items: Mapping[Any, int], total: int) -> str:
            return "  ".join(f"{k} {n} ({100 * n / total:.1f}%)" for k, n in items.items())

        host = f" (Host: {self.host})" if self.host else ""
        lines = [
            f"{self.url}{host}: {self.sent} requests in {self.elapsed:.2f} s, "
            f"{self.rate:.1f} req/s",
            f"versions  {counts(self.versions, self.responses) or '-'}",
            f"status    {counts(self.statuses, self.responses) or '-'}",
            f"errors    {counts(self.errors, self.sent) or '-'}",
            "latency   "
            + ("  ".join(f"{k} {v * 1000:.1f} ms" for k, v in self.latency.items()) or "-"),
        ]
        if self.skipped:
            lines.append(f"skipped   {self.skipped} (too many requests in flight)")
        return "\n".join(lines)


def percentiles(latencies: list[float]) -> dict[str, float]:
    """Nearest-rank percentiles and the maximum; empty when there is nothing to rank."""
    if not latencies:
        return {}
    ranked = sorted(latencies)
    out = {k: ranked[max(0, math.ceil(q * len(ranked)) - 1)] for k, q in PERCENTILES.items()}
    return {**out, "max": ranked[-1]}


class Load:
    """A bounded open-loop run in its own thread and event loop; see the module's doc."""

    def __init__(
        self,
        url: str,
        *,
        rate: float = 20.0,
        duration: float | None = None,
        requests: int | None = None,
        host: str | None = None,
        path: str | None = None,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        clients: int = 1,
        cookies: bool = False,
        timeout: float = 5.0,
        max_in_flight: int = 200,
        record: bool = False,
    ) -> None:
        self.url = loopback_url(url, path)
        if not 0 < rate <= MAX_RATE:
            raise ValueError(f"rate {rate}/s is outside (0, {MAX_RATE:g}]")
        if duration is not None and requests is not None:
            raise ValueError("give a duration or a number of requests, not both")
        if requests is None:
            duration = DEFAULT_DURATION if duration is None else duration
            if not 0 < duration <= MAX_DURATION:
                raise ValueError(f"duration {duration} s is outside (0, {MAX_DURATION:g}]")
            requests = max(1, round(rate * duration))
        elif requests < 1:
            raise ValueError(f"requests {requests} is less than 1")
        elif requests / rate > MAX_DURATION:
            raise ValueError(
                f"{requests} requests at {rate}/s take {requests / rate:g} s, "
                f"more than {MAX_DURATION:g}"
            )
        if not 1 <= clients <= MAX_CLIENTS:
            raise ValueError(f"clients {clients} is outside 1..{MAX_CLIENTS}")
        if not 0 < timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout {timeout} s is outside (0, {MAX_TIMEOUT:g}]")
        if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
            raise ValueError(f"max_in_flight {max_in_flight} is outside 1..{MAX_IN_FLIGHT}")
        self.rate, self.total, self.host, self.method = rate, requests, host, method
        self.headers = {**(headers or {}), **({"Host": host} if host else {})}
        self.clients, self.cookies, self.timeout = clients, cookies, timeout
        self.max_in_flight, self.record = max_in_flight, record

        self._lock = threading.Lock()
        self._sent = self._skipped = self._in_flight = 0
        self._versions: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()
        self._errors: Counter[str] = Counter()
        self._latencies: list[float] = []
        self._records: list[Record] = []
        self._started_at: float | None = None  # perf_counter of the first request
        self._ended_at: float | None = None
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._pending: set[asyncio.Task[None]] = set()  # requests in flight, loop-only
        self._ready = threading.Event()

    # ---------------------------------------------------------------- control

    def start(self) -> Load:
        """Begin sending, in a background thread; returns at once."""
        if self._thread is not None:
            raise RuntimeError("a Load runs once")
        self._thread = threading.Thread(target=self._run_loop, name="load", daemon=True)
        self._thread.start()
        self._ready.wait()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends by itself (True) or `timeout` passes (False)."""
        if self._thread is None:
            raise RuntimeError("not started")
        self._thread.join(timeout)
        if self._failure is not None:
            raise self._failure
        return not self._thread.is_alive()

    def stop(self) -> Report:
        """Send nothing more, wait for the requests in flight, and report."""
        if self._thread is None:
            raise RuntimeError("not started")
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stopping.set)
        self.wait()
        return self.snapshot()

    def run(self) -> Report:
        """The whole run, blocking; Ctrl-C ends it early with what came back so far."""
        self.start()
        with contextlib.suppress(KeyboardInterrupt):
            self.wait()
        return self.stop()

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- results

    def snapshot(self) -> Report:
        """The counts so far; safe from any thread, during and after the run."""
        with self._lock:
            started, ended = self._started_at, self._ended_at
            elapsed = 0.0 if started is None else (ended or time.perf_counter()) - started
            counts = Report(
                url=self.url,
                host=self.host,
                sent=self._sent,
                skipped=self._skipped,
                in_flight=self._in_flight,
                elapsed=elapsed,
                versions=dict(self._versions.most_common()),
                statuses=dict(sorted(self._statuses.items())),
                errors=dict(self._errors.most_common()),
                latency={},
            )
            latencies = list(self._latencies)
        # Ranked outside the lock: the requests in flight need not wait for a sort.
        return dataclasses.replace(counts, latency=percentiles(latencies))

    def records(self) -> list[Record]:
        """Every request so far, in the order they ended (empty unless record=True)."""
        with self._lock:
            return list(self._records)

    # ---------------------------------------------------------------- the loop

    def _run_loop(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # handed to the thread that waits
            self._failure = error
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._ready.set()
        connector = aiohttp.TCPConnector(limit=self.max_in_flight)
        sessions = [
            aiohttp.ClientSession(
                connector=connector,
                connector_owner=False,
                # unsafe: keep cookies of IP-address hosts, which the gateway is
                cookie_jar=aiohttp.CookieJar(unsafe=True)
                if self.cookies
                else aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
            for _ in range(self.clients)
        ]
        try:
            await self._send_on_schedule(sessions)
        finally:
            for session in sessions:
                await session.close()
            await connector.close()

    async def _send_on_schedule(self, sessions: list[aiohttp.ClientSession]) -> None:
        assert self._stopping is not None
        start = time.perf_counter()
        with self._lock:
            self._started_at = start
        index = 0
        while index < self.total and not self._stopping.is_set():
            # Every request due by now, so that a late wake-up catches up on schedule.
            due = min(self.total, math.floor((time.perf_counter() - start) * self.rate) + 1)
            while index < due:
                client = index % self.clients
                index += 1
                with self._lock:
                    if self._in_flight >= self.max_in_flight:
                        self._skipped += 1
                        continue
                    self._sent += 1
                    self._in_flight += 1
                task = asyncio.create_task(self._request(sessions[client], client))
                self._pending.add(task)
                task.add_done_callback(self._forget)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(start + index / self.rate - time.perf_counter()):
                    await self._stopping.wait()
        if self._pending:
            await asyncio.wait(self._pending)
        with self._lock:
            self._ended_at = time.perf_counter()

    def _forget(self, task: asyncio.Task[None]) -> None:
        """Drops a finished request; one that raised is a bug here: it ends the run."""
        self._pending.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._failure = error
            assert self._stopping is not None
            self._stopping.set()

    async def _request(self, session: aiohttp.ClientSession, client: int) -> None:
        sent_at, began = time.time(), time.perf_counter()
        try:
            async with session.request(
                self.method, self.url, headers=self.headers, allow_redirects=False
            ) as response:
                await response.read()
            version = response.headers.get("X-Version", "none")
            outcome = Record(sent_at, 0.0, client, response.status, version, None)
        except (TimeoutError, aiohttp.ClientError) as error:
            kind = "timeout" if isinstance(error, TimeoutError) else "connection"
            outcome = Record(sent_at, 0.0, client, 0, None, kind)
        record = dataclasses.replace(outcome, latency=time.perf_counter() - began)
        with self._lock:
            self._in_flight -= 1
            if record.error is not None:
                self._errors[record.error] += 1
            else:
                self._statuses[record.status] += 1
                self._versions[str(record.version)] += 1
                self._latencies.append(record.latency)
            if self.record:
                self._records.append(record)


def parse_args(argv: list[str] | None) -> tuple[Load, str]:
    parser = argparse.ArgumentParser(
        description="Bounded open-loop HTTP load at a loopback URL; per-version counts.",
    )
    parser.add_argument("url", nargs="?", help="default: the gateway in .cluster/state.json")
    parser.add_argument("--host", help="the Host header, e.g. checkout.example.test")
    parser.add_argument("--path", help="request path (and query) instead of the URL's")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--rate", type=float, default=20.0, help=f"req/s, ≤ {MAX_RATE:g}")
    how_long = parser.add_mutually_exclusive_group()
    how_long.add_argument(
        "--duration", type=float, help=f"seconds, ≤ {MAX_DURATION:g} (default 10)"
    )
    how_long.add_argument("--requests", type=int, help="send this many requests instead")
    parser.add_argument("--header", action="append", default=[], metavar="K:V", help="repeatable")
    parser.add_argument("--clients", type=int, default=1, help="virtual clients")
    parser.add_argument("--cookies", action="store_true", help="a cookie jar per client")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    parser.add_argument("--max-in-flight", type=int, default=200)
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    headers = {}
    for header in args.header:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            parser.error(f"--header {header!r} is not K:V")
        headers[name.strip()] = value.strip()
    try:
        load = Load(
            args.url or gateway_url(),
            rate=args.rate,
            duration=args.duration,
            requests=args.requests,
            host=args.host,
            path=args.path,
            method=args.method,
            headers=headers,
            clients=args.clients,
            cookies=args.cookies,
            timeout=args.timeout,
            max_in_flight=args.max_in_flight,
        )
    except ValueError as error:
        parser.error(str(error))
    return load, args.output


def main(argv: list[str] | None = None) -> int:
    load, output = parse_args(argv)
    report = load.run()
    print(json.dumps(report.to_json()) if output == "json" else report.to_text())
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop early, still report
    sys.exit(main())
