"""The Prometheus client: one instant query at a time, with timeouts, and retries with
backoff and jitter on transient errors only.

Transient: no connection, a timeout, HTTP 429 and 5xx (Prometheus answers 503 when a
query times out on its side). Not retried: a query Prometheus refuses (400 bad_data,
422 execution error) — asking again gives the same answer — and answers that show the
address or the credentials are wrong (401, 403, 404, anything that is not the API's
JSON). Every attempt is bounded by the endpoint's timeout, and all attempts together by
twice that, so a Prometheus that hangs delays a reconcile by a bounded time.

Credentials live in `Endpoint.headers`; nothing here puts them in a message or a log
line, and the endpoint's repr leaves them out.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from ..http import Http
from ..observability.metrics import observe_query
from .judge import Sample

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ERROR_TEXT = 300


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
        return (Sample((), _value(result[1])),)
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
