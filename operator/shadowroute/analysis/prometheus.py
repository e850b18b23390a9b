"""The Prometheus client: one instant query at a time, with timeouts, and retries with
backoff and jitter on transient errors only.

Transient: no connection, a timeout, HTTP 429 and 5xx (Prometheus answers 503 when a
query times out on its side). Not retried: a query Prometheus refuses (400 bad_data,
422 execution error) — asking again gives the same answer — and answers that show the
address or the credentials are wrong (401, 403, 404, anything that is not the API's
JSON). Every attempt is bounded by the endpoint's timeout, and all attempts together by
twice that, so a Prometheus that hangs delays a reconcile by a bounded time.

Batching (`Client.ask`): the checks of one evaluation time against one endpoint (the
same address, credentials and TLS trust) that belong to one batchable family are
answered by one query and split back per route: a preset with one convention and window
(`presets.Family`) by one query grouped by the family's key labels; custom queries
(`union.Union`) by their union, each tagged; identical queries are asked once. The
routes that asked at the previous tick of a family are included in the first query of
the next, so that query goes out at once, and the routes of that tick that come later
find their answer made; a tick without that knowledge collects its members for
`batch_window` (20 ms) first. A batched query Prometheus refuses is asked again per
route, so each gets its own answer (one refused alone too, or answering a scalar, is
asked alone from then on); an unreachable Prometheus is reported to each.

Credentials live in `Endpoint.headers`; nothing here puts them in a message or a log
line, and the endpoint's repr leaves them out.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import aiohttp

from ..http import Http
from ..observability.metrics import ASKS, QUERIES, observe_query
from .judge import Sample

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ERROR_TEXT = 300
BATCH_WINDOW = 0.02
"""Seconds a tick's first batch of a family, when no members are known from the last
tick, waits for the others before it is sent."""
MAX_BATCH = 1000
"""Members of one batched query at most; more are asked in several."""
KEEP_TICKS = 600.0
"""Seconds a family's last tick is remembered (its members, its answers)."""

Key = tuple[str, ...]


class Unavailable(Exception):
    """Prometheus did not answer usably: down, too slow, refusing us, or not Prometheus."""

    def __init__(self, message: str, reason: str = "Unavailable") -> None:
        super().__init__(message)
        self.reason = reason


class InvalidQuery(Exception):
    """Prometheus answered that the query itself is wrong (or returns a range)."""


class _Transient(Exception):
    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Endpoint:
    """Where to ask, and how: base URL, per-attempt timeout, auth headers, TLS."""

    address: str
    timeout: float = 5.0
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def query_url(self) -> str:
        return self.address.rstrip("/") + "/api/v1/query"


class Batchable(Protocol):
    """A family of queries that one query answers for many members (presets.Family,
    union.Union)."""

    @property
    def labels(self) -> tuple[str, ...]: ...

    def query(self, members: Iterable[Key]) -> str: ...

    def split(
        self, samples: Iterable[Sample], members: list[Key]
    ) -> dict[Key, tuple[Sample, ...]]: ...


@dataclass(frozen=True)
class Ask:
    """What a check asks: its own query as it would be sent alone, and, when it has
    one, the batchable family it belongs to and its key there."""

    query: str
    family: Batchable | None = None
    key: Key = ()
    period: float | None = None
    """The interval of the route when `at` is one of its ticks (a multiple of it since
    the epoch): the asks of the last tick are then known to come again."""


@dataclass(frozen=True)
class _Alone:
    """A query that is its own family: identical asks share one answer."""

    text: str
    labels: tuple[str, ...] = ()

    def query(self, members: Iterable[Key]) -> str:
        return self.text

    def split(self, samples: Iterable[Sample], members: list[Key]) -> dict[Key, tuple[Sample, ...]]:
        return {(): tuple(samples)}


@dataclass
class _Tick:
    """A family's asks at one evaluation time on one endpoint."""

    at: datetime
    created: float
    period: float | None
    asked: set[Key] = field(default_factory=set)
    answers: dict[Key, asyncio.Task[dict[Key, tuple[Sample, ...]]]] = field(default_factory=dict)
    collecting: list[Key] | None = None


class _BatchRefused(InvalidQuery):
    """Prometheus refused a batched query: each member asks its own."""


_FORM: contextvars.ContextVar[str] = contextvars.ContextVar("form", default="alone")


def _task(coro: Awaitable[dict[Key, tuple[Sample, ...]]]) -> asyncio.Task:
    """A batch's task; its error is taken by whoever awaits it, or dropped (a member of
    the last tick that no longer asks), never logged as unretrieved."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


def _endpoint_key(endpoint: Endpoint) -> tuple[Hashable, ...]:
    """Batches stay within one endpoint: address, timeout, credentials and TLS trust."""
    headers = tuple(sorted(endpoint.headers.items()))
    return (endpoint.address, endpoint.timeout, headers, endpoint.ssl_context)


def _member(endpoint: Endpoint, family: Batchable | None, key: Key) -> tuple[Hashable, ...]:
    """A member of a family on an endpoint, as `Client._refused` knows it."""
    return (_endpoint_key(endpoint), family, key)


@dataclass
class Client:
    """Instant queries against one Prometheus API. `sleep` and `jitter` are seams for
    tests. The operator builds one at startup with its shared session (services.py);
    without one given (tools, tests) a client has a session of its own."""

    attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 2.0
    session: Callable[[], aiohttp.ClientSession] = field(default_factory=lambda: Http().session)
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    jitter: Callable[[], float] = random.random
    batch_window: float = BATCH_WINDOW
    max_batch: int = MAX_BATCH
    _ticks: dict[tuple[Hashable, ...], dict[datetime, _Tick]] = field(
        default_factory=dict, init=False, repr=False
    )
    _swept: float = field(default=0.0, init=False, repr=False)
    _refused: dict[tuple[Hashable, ...], float] = field(
        default_factory=dict, init=False, repr=False
    )
    """(endpoint, family, key) of the members that cannot be batched (refused alone, or
    a scalar): asked alone from then on, for KEEP_TICKS."""

    async def ask(self, endpoint: Endpoint, ask: Ask, at: datetime) -> tuple[Sample, ...]:
        """The samples `ask.query` has at `at`, from a query shared with the other asks
        of this endpoint, time and family when there are any (see the module's doc);
        raises Unavailable or InvalidQuery as `query` does."""
        refused = _member(endpoint, ask.family, ask.key)
        batched = ask.family is not None and refused not in self._refused
        family: Batchable = ask.family if batched else _Alone(ask.query)  # type: ignore[assignment]
        key = ask.key if batched else ()
        ASKS.inc()
        tick = self._tick(endpoint, family, ask, key, at)
        tick.asked.add(key)
        task = tick.answers.get(key)
        if task is None:
            task = self._collect(endpoint, family, tick, key, ask.query)
        try:
            answers = await asyncio.shield(task)
        except _BatchRefused:
            # Refused as a batch: asked alone, the route gets its own answer or error;
            # one refused alone too, or answering a scalar, stays out of the family's
            # later batches, so one such query does not make every member ask alone
            # at every tick.
            try:
                alone = await self.query(endpoint, ask.query, at)
            except InvalidQuery:
                self._refused[refused] = time.monotonic()
                raise
            if isinstance(alone, _Scalar):
                self._refused[refused] = time.monotonic()
            return alone
        return answers.get(key, ())

    def _tick(
        self, endpoint: Endpoint, family: Batchable, ask: Ask, key: Key, at: datetime
    ) -> _Tick:
        """This time's asks of the family, started (when new) with the query for the
        members of its last tick."""
        lineage = (_endpoint_key(endpoint), family, ask.period)
        tick = self._ticks.get(lineage, {}).get(at)
        if tick is None:
            now = time.monotonic()
            self._sweep(now)
            ticks = self._ticks.setdefault(lineage, {})
            tick = ticks[at] = _Tick(at, now, ask.period)
            earlier = [t for t in ticks.values() if t.at < at]
            if earlier and ask.period is not None:
                asked = max(earlier, key=lambda t: t.at).asked
                members = sorted(
                    k for k in asked if _member(endpoint, family, k) not in self._refused
                )
                if members == [key]:  # alone again: its own query, at once
                    tick.answers[key] = _task(
                        self._later(endpoint, family, tick, members, 0, ask.query)
                    )
                else:
                    self._send(endpoint, family, tick, members)
            for old in sorted(ticks)[:-2]:  # this tick and the one before it
                del ticks[old]
        return tick

    def _limit(self, family: Batchable) -> int:
        """Members of one query at most: the client's, or less where the family says."""
        return min(self.max_batch, getattr(family, "max_members", self.max_batch))

    def _sweep(self, now: float) -> None:
        """Forget the families not asked for KEEP_TICKS (at most once a minute)."""
        if now - self._swept < 60:
            return
        self._swept = now
        for lineage, ticks in list(self._ticks.items()):
            if all(now - t.created > KEEP_TICKS for t in ticks.values()):
                del self._ticks[lineage]
        for refused, since in list(self._refused.items()):
            if now - since > KEEP_TICKS:
                del self._refused[refused]

    def _collect(
        self, endpoint: Endpoint, family: Batchable, tick: _Tick, key: Key, query: str
    ) -> asyncio.Task:
        """Add `key` to the batch being collected, or start one: sent after the batch
        window on a tick, at once otherwise (no other route asks at that time)."""
        if tick.collecting is None or len(tick.collecting) >= self._limit(family):
            members: list[Key] = [key]
            tick.collecting = members
            wait = self.batch_window if tick.period is not None else 0.0
            task = _task(self._later(endpoint, family, tick, members, wait, query))
        else:
            members = tick.collecting
            members.append(key)
            task = tick.answers[members[0]]
        tick.answers[key] = task
        return task

    def _send(self, endpoint: Endpoint, family: Batchable, tick: _Tick, members: list[Key]) -> None:
        """Send at once the query for `members` (the last tick's), _limit a query."""
        limit = self._limit(family)
        for i in range(0, len(members), limit):
            chunk = members[i : i + limit]
            task = _task(self._batch(endpoint, family, tick, chunk))
            for key in chunk:
                tick.answers[key] = task

    async def _later(
        self,
        endpoint: Endpoint,
        family: Batchable,
        tick: _Tick,
        members: list[Key],
        wait: float,
        query: str,
    ) -> dict[Key, tuple[Sample, ...]]:
        """The batch `members` starts, `query` the first member's own query."""
        if wait > 0:
            await asyncio.sleep(wait)
        if tick.collecting is members:
            tick.collecting = None
        if len(members) == 1:  # alone: its own query, as it would be sent without batching
            return {members[0]: await self.query(endpoint, query, tick.at)}
        return await self._batch(endpoint, family, tick, members)

    async def _batch(
        self, endpoint: Endpoint, family: Batchable, tick: _Tick, members: list[Key]
    ) -> dict[Key, tuple[Sample, ...]]:
        _FORM.set("batched")
        try:
            samples = await self.query(endpoint, family.query(members), tick.at)
        except InvalidQuery as exc:
            raise _BatchRefused(str(exc)) from None
        return family.split(samples, members)

    async def query(self, endpoint: Endpoint, promql: str, at: datetime) -> tuple[Sample, ...]:
        """The samples of `promql` evaluated at `at`; raises Unavailable or InvalidQuery."""
        budget = 2 * endpoint.timeout
        deadline = time.monotonic() + budget
        last: _Transient | None = None
        for attempt in range(self.attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            started = time.monotonic()
            try:
                samples = await self._once(endpoint, promql, at, min(endpoint.timeout, remaining))
            except _Transient as exc:
                observe_query(time.monotonic() - started, False, exc.reason)
                last = exc
            except (Unavailable, InvalidQuery) as exc:
                reason = exc.reason if isinstance(exc, Unavailable) else "InvalidQuery"
                observe_query(time.monotonic() - started, False, reason)
                raise
            else:
                observe_query(time.monotonic() - started, True)
                return samples
            if attempt + 1 < self.attempts:
                # Full jitter: many routes retrying after one outage do not march in step.
                delay = self.jitter() * min(self.max_delay, self.base_delay * 2**attempt)
                if time.monotonic() + delay >= deadline:
                    break
                await self.sleep(delay)
        assert last is not None or budget <= 0
        reason = last.reason if last else "Timeout"
        message = str(last) if last else "no time left to ask"
        raise Unavailable(
            f"Prometheus at {endpoint.address} did not answer: {message}", reason
        ) from None

    async def _once(
        self, endpoint: Endpoint, promql: str, at: datetime, seconds: float
    ) -> tuple[Sample, ...]:
        form = {"query": promql, "time": f"{at.timestamp():.3f}"}
        QUERIES.labels(_FORM.get()).inc()
        try:
            async with self.session().post(
                endpoint.query_url,
                data=form,
                headers={"Accept": "application/json", **endpoint.headers},
                ssl=endpoint.ssl_context if endpoint.ssl_context is not None else True,
                timeout=aiohttp.ClientTimeout(total=seconds),
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            raise _Transient(f"no answer within {seconds:g}s", "Timeout") from None
        except aiohttp.ClientSSLError as exc:
            raise Unavailable(f"TLS: {_short(exc)}", "TLSError") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _Transient(_short(exc), "ConnectionError") from None
        return _parse(status, body)


class _Scalar(tuple):
    """The answer of a query that returns a scalar: label_replace cannot tag it, so it
    cannot be a member of a union (union.py)."""


def _parse(status: int, body: bytes) -> tuple[Sample, ...]:
    """Samples from the answer's body, or the exception its status calls for."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    api_error = ""
    if isinstance(doc, dict) and doc.get("status") == "error":
        api_error = f"{doc.get('errorType', 'error')}: {doc.get('error', '')}"[:MAX_ERROR_TEXT]
    if status in RETRY_STATUSES:
        raise _Transient(f"HTTP {status}{': ' + api_error if api_error else ''}", f"HTTP{status}")
    if status in (400, 422):
        if api_error:
            raise InvalidQuery(api_error)
        raise Unavailable(f"HTTP {status} without a Prometheus error document", f"HTTP{status}")
    if status in (401, 403):
        raise Unavailable(
            f"HTTP {status}: Prometheus refused the credentials (spec.analysis.prometheus."
            "secretRef)",
            f"HTTP{status}",
        )
    if not 200 <= status < 300:
        raise Unavailable(
            f"HTTP {status}: no Prometheus query API at this address", f"HTTP{status}"
        )
    if not isinstance(doc, dict) or doc.get("status") != "success":
        raise Unavailable("the answer is not the Prometheus API's JSON", "BadAnswer")
    data = doc.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _Scalar((Sample((), _value(result[1])),))
    if kind == "vector" and isinstance(result, list):
        samples = []
        for item in result:
            metric = item.get("metric") or {}
            pair = item.get("value") or [0, "NaN"]
            samples.append(Sample(tuple(sorted(metric.items())), _value(pair[1])))
        return tuple(samples)
    if kind in ("matrix", "string"):
        what = "a range vector (matrix)" if kind == "matrix" else "a string"
        raise InvalidQuery(f"the query returns {what}; a check needs an instant value")
    raise Unavailable(f"unexpected resultType {kind!r}", "BadAnswer")


def _value(text: Any) -> float:
    """Prometheus spells values as strings: "0.25", "NaN", "+Inf", "-Inf"."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _short(exc: BaseException) -> str:
    """An exception as one short line, with its type: enough to act on, no headers."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:MAX_ERROR_TEXT]
