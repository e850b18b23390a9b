"""The comparator's I/O: the mirror port, the admin port and the upstream asks.

The mirror port answers every copy at once (204, empty) once its body is read (bounded)
and compares in a background task, at most ``--max-in-flight`` at a time: a copy that
arrives when all are taken is dropped (``busy``), never queued, so the data plane's
fire-and-forget mirror never waits on us. Each comparison asks the candidate once and
the baseline twice, all three at once, each on its own connection pool: a kube-proxy
picks a backend per connection, so the two baseline asks reach two pods when there
are two. Sessions keep no cookies and add no headers of their own.

Nothing here logs a body or a header value; aiohttp's access log is off (its lines
carry the request target and the User-Agent and Referer values).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import traceback
from collections.abc import Callable, Mapping

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from yarl import URL

from .comparison import (
    BASELINE,
    CANDIDATE,
    CONNECT,
    DROP_BUSY,
    DROP_ERROR,
    DROP_STALLED,
    FAILED,
    SKIP_METHOD,
    SKIP_TOO_LARGE,
    TIMEOUT,
    TOO_LARGE,
    Answer,
    Comparison,
    NoAnswer,
    Outcome,
    Request,
)
from .config import Config
from .metrics import Metrics
from .resolve import Target, resolve, upstream_headers

log = logging.getLogger(__name__)
CHUNK = 64 * 1024
# Headers aiohttp would add on its own: the asks carry the mirrored request's only.
NO_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


async def read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole stream, or None as soon as it is longer than `limit` bytes."""
    chunks, size = [], 0
    async for chunk in stream.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class Comparator:
    """The mirror target of one shadowing revision (see the module)."""

    def __init__(
        self,
        config: Config,
        environ: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.comparison = Comparison(config)
        self.metrics = Metrics(self.comparison)
        self.candidate = resolve(config.candidate, environ)
        self.baseline = resolve(config.baseline, environ)
        self._clock = clock
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sessions: list[aiohttp.ClientSession] = []
        self._runners: list[web.AppRunner] = []
        self.listen_port = 0
        self.admin_port = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open the three pools, then the mirror port, then the admin port (readiness:
        once the admin port answers, mirrored copies are taken)."""
        for _ in range(3):  # candidate, baseline #1, baseline #2
            self._sessions.append(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(
                        limit=self.config.max_in_flight, ttl_dns_cache=30
                    ),
                    timeout=aiohttp.ClientTimeout(total=None),  # ours is per ask
                    cookie_jar=aiohttp.DummyCookieJar(),
                    skip_auto_headers=NO_AUTO_HEADERS,
                    trust_env=False,
                )
            )
        address = self.config.listen_address
        self.listen_port = await self._serve(self.mirror_app(), address, self.config.listen_port)
        self.admin_port = await self._serve(self.admin_app(), address, self.config.admin_port)
        log.info(
            "comparing %s (at %s:%d) with %s (at %s:%d), mirror port %d, admin port %d",
            self.config.candidate,
            self.candidate.address,
            self.candidate.port,
            self.config.baseline,
            self.baseline.address,
            self.baseline.port,
            self.listen_port,
            self.admin_port,
        )

    async def _serve(self, app: web.Application, address: str, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, address, port).start()
        return int(runner.addresses[-1][1])

    async def stop(self, grace: float | None = None) -> None:
        """Close the ports, let running comparisons end (up to `grace`, the ask timeout
        by default), then close the pools."""
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self._tasks:
            _, pending = await asyncio.wait(
                set(self._tasks), timeout=self.config.timeout if grace is None else grace
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for session in self._sessions:
            await session.close()
        self._sessions.clear()

    # -- the mirror port ---------------------------------------------------------

    def mirror_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.mirrored)
        return app

    async def mirrored(self, request: web.Request) -> web.StreamResponse:
        """Take one mirrored copy: answered at once, compared in the background."""
        config, comparison = self.config, self.comparison
        if request.method.upper() not in config.methods:
            comparison.skip(SKIP_METHOD)
            return web.Response(status=204)
        if self._in_flight >= config.max_in_flight:
            comparison.drop(DROP_BUSY)
            return web.Response(status=204)
        length = request.content_length
        if length is not None and length > config.max_body_bytes:
            comparison.skip(SKIP_TOO_LARGE)
            return web.Response(status=204)
        self._in_flight += 1  # taken now: the body's read may let other copies in
        try:
            # A body that stalls must not hold its slot: at most the ask timeout.
            async with asyncio.timeout(config.timeout):
                body = await read_bounded(request.content, config.max_body_bytes)
            if body is None:
                comparison.skip(SKIP_TOO_LARGE)
                self._in_flight -= 1
                return web.Response(status=204)
        except TimeoutError:
            comparison.drop(DROP_STALLED)
            self._in_flight -= 1
            return web.Response(status=204)
        except BaseException:
            self._in_flight -= 1
            raise
        asked = Request(
            method=request.method,
            path=request.raw_path,
            headers=tuple(
                upstream_headers(request.headers.items(), request.headers.get("Host", ""))
            ),
            body=body,
        )
        task = asyncio.create_task(self._compare(asked))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.Response(status=204)

    async def _compare(self, request: Request) -> None:
        try:
            candidate, first, second = await asyncio.gather(
                self._ask(CANDIDATE, self._sessions[0], self.candidate, request),
                self._ask(BASELINE, self._sessions[1], self.baseline, request),
                self._ask(BASELINE, self._sessions[2], self.baseline, request),
            )
            self.comparison.observe(request, candidate, first, second)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug of ours: counted, logged without its message
            self.comparison.drop(DROP_ERROR)
            log.error(
                "comparison failed with %s (message left out: it may quote the request)\n%s",
                type(e).__name__,
                "".join(traceback.format_tb(e.__traceback__)),
            )
        finally:
            self._in_flight -= 1

    async def _ask(
        self, side: str, session: aiohttp.ClientSession, target: Target, request: Request
    ) -> Outcome:
        config = self.config
        start = self._clock()
        try:
            async with (
                asyncio.timeout(config.timeout),
                session.request(
                    request.method,
                    URL(target.url(request.path), encoded=True),
                    headers=list(request.headers),
                    data=request.body or None,
                    allow_redirects=False,
                ) as response,
            ):
                # Read even when bodies are not compared: a drained answer keeps its
                # connection in the pool.
                body = await read_bounded(response.content, config.max_body_bytes)
                status, headers = response.status, tuple(response.headers.items())
        except TimeoutError:
            return NoAnswer(TIMEOUT)
        except aiohttp.ClientConnectorError:
            return NoAnswer(CONNECT)
        except (aiohttp.ClientError, OSError, ValueError):
            return NoAnswer(FAILED)
        seconds = self._clock() - start
        self.comparison.timed(side, seconds)
        self.metrics.timed(side, seconds)
        if not config.compare_bodies:
            body = b""
        elif body is None:
            return NoAnswer(TOO_LARGE)
        return Answer(status, headers, body)

    # -- the admin port ----------------------------------------------------------

    def admin_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self.scrape)
        app.router.add_get("/summary", self.summary)
        app.router.add_get("/healthz", self.healthz)
        return app

    async def scrape(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def summary(self, request: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps(self.comparison.summary(), ensure_ascii=False),
            content_type="application/json",
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")


async def run(config: Config, environ: Mapping[str, str], stopping: asyncio.Event) -> None:
    """Serve until `stopping` is set, then stop gracefully."""
    comparator = Comparator(config, environ)
    try:
        await comparator.start()  # a port in use fails here: close what was opened
        await stopping.wait()
    finally:
        with contextlib.suppress(Exception):
            await comparator.stop()
