"""The sample app: a small real HTTP service whose behaviour comes from its environment,
so that one image can play a healthy primary, a failing canary or a slow shadow.

    BIND_ADDRESS=127.0.0.1 PORT=9898 VERSION=v2 ERROR_RATE=0.1 python server.py

Environment (all optional):

    BIND_ADDRESS       address to listen on (default 127.0.0.1; the test kubelet sets the pod IP)
    PORT               port to listen on (default 9898; 0 picks a free one). Not 8080:
                       Envoy Gateway binds 8080 on every address.
    VERSION            the version's name (default v1): the X-Version header of every
                       response, and "version" in the JSON body
    ERROR_RATE         share of requests answered 500, 0..1 (default 0). Deterministic:
                       of the first n requests on ERROR_PATHS exactly floor(n * rate) fail,
                       spread evenly (0.1 fails the 10th, 20th, ...; 0.5 every 2nd)
    ERROR_PATHS        comma-separated path prefixes where errors are injected (default: all)
    LATENCY_MS         mean added latency in milliseconds (default 0)
    LATENCY_JITTER_MS  each request waits uniformly within LATENCY_MS +/- this (default 0;
                       at most LATENCY_MS, so the mean stays LATENCY_MS)
    SEED               seed of the jitter's random numbers (default: unseeded)
    BODY_FIELDS        a JSON object merged into every body, e.g. {"price": 12}; it may not
                       replace the fields below
    HEALTHZ_FAIL       1: /healthz answers 503 (not ready)

Endpoints:

    /healthz  200 "ok" (503 with HEALTHZ_FAIL=1)
    /metrics  Prometheus text: http_requests_total{code,method} and the histogram
              http_request_duration_seconds{method} (default buckets), as Prometheus
              client libraries export them; these two endpoints are not counted
    anything else: after the latency, 200 (or the injected 500) with the JSON body
              {"version", "path", "method", "requestId", "time", **BODY_FIELDS}; requestId
              (random) and time (ISO 8601, UTC) differ on every request, on purpose: the
              noise a shadow comparison has to subtract. An injected 500 also says
              "error". A request's X-Request-Id header is echoed back.

It prints one line when it listens ("listening on http://ADDRESS:PORT") and stops within
a second of SIGTERM or SIGINT. Bad settings exit with status 2 and say which.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

DEFAULT_PORT = 9898
SHUTDOWN_GRACE_SECONDS = 0.5  # in-flight requests get this long after SIGTERM
BUILT_IN_FIELDS = frozenset({"version", "path", "method", "requestId", "time", "error"})


class SettingError(ValueError):
    """An environment variable the app cannot use."""


@dataclass(frozen=True)
class Config:
    """The app's behaviour, read once from the environment."""

    bind_address: str
    port: int
    version: str
    error_rate: Fraction
    error_paths: tuple[str, ...]
    latency_ms: float
    latency_jitter_ms: float
    seed: int | None
    body_fields: dict[str, Any]
    healthz_fail: bool
    diff_rate: Fraction = Fraction(0)
    diff_paths: tuple[str, ...] = ()
    diff_fields: dict[str, Any] = field(default_factory=dict)
    fresh_request_id: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        latency = _number(env, "LATENCY_MS", 0)
        rate = _number(env, "ERROR_RATE", 0, high=1)
        port = _integer(env, "PORT", DEFAULT_PORT)
        if not 0 <= port <= 65535:
            raise SettingError(f"PORT={port} is outside 0..65535")
        return cls(
            bind_address=env.get("BIND_ADDRESS", "127.0.0.1"),
            port=port,
            version=env.get("VERSION", "v1"),
            # Exact arithmetic: 0.29 fails 29 of every 100, not 28 after rounding.
            error_rate=Fraction(str(rate)),
            error_paths=tuple(p.strip() for p in env.get("ERROR_PATHS", "").split(",") if p),
            latency_ms=latency,
            latency_jitter_ms=_number(env, "LATENCY_JITTER_MS", 0, high=latency),
            seed=_integer(env, "SEED", 0) if "SEED" in env else None,
            body_fields=_body_fields(env.get("BODY_FIELDS", "{}")),
            healthz_fail=env.get("HEALTHZ_FAIL", "0") == "1",
            diff_rate=Fraction(str(_number(env, "DIFF_RATE", 0, high=1))),
            diff_paths=tuple(p.strip() for p in env.get("DIFF_PATHS", "").split(",") if p),
            diff_fields=_body_fields(env.get("DIFF_FIELDS", "{}"), "DIFF_FIELDS"),
            fresh_request_id=env.get("FRESH_REQUEST_ID", "0") == "1",
        )


def _number(env: Mapping[str, str], name: str, default: float, high: float = math.inf) -> float:
    raw = env.get(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a number") from None
    if not 0 <= value <= high:
        raise SettingError(f"{name}={raw!r} is outside 0..{high:g}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not an integer") from None


def _body_fields(raw: str, name: str = "BODY_FIELDS") -> dict[str, Any]:
    try:
        fields = json.loads(raw)
    except json.JSONDecodeError as error:
        raise SettingError(f"{name} is not JSON: {error}") from None
    if not isinstance(fields, dict):
        raise SettingError(f"{name} must be a JSON object")
    if clash := sorted(BUILT_IN_FIELDS & fields.keys()):
        raise SettingError(f"{name} may not replace the built-in fields {clash}")
    return fields


class ErrorSchedule:
    """Fails exactly floor(n * rate) of the first n requests it is asked about, evenly."""

    def __init__(self, rate: Fraction) -> None:
        self._rate = rate
        self._seen = 0

    def next_fails(self) -> bool:
        before = self._seen * self._rate.numerator // self._rate.denominator
        self._seen += 1
        return self._seen * self._rate.numerator // self._rate.denominator > before


def build_app(config: Config) -> web.Application:
    """The aiohttp application; its metrics live in their own registry."""
    registry = CollectorRegistry()
    requests_total = Counter(
        "http_requests_total", "HTTP requests served.", ["code", "method"], registry=registry
    )
    duration = Histogram(
        "http_request_duration_seconds",
        "Time to answer an HTTP request.",
        ["method"],
        registry=registry,
    )
    errors = ErrorSchedule(config.error_rate)
    diffs = ErrorSchedule(config.diff_rate)
    jitter = random.Random(config.seed)

    def injects_error(path: str) -> bool:
        on_error_path = not config.error_paths or path.startswith(config.error_paths)
        return on_error_path and errors.next_fails()

    def answers_differently(path: str) -> bool:
        on_diff_path = not config.diff_paths or path.startswith(config.diff_paths)
        return bool(config.diff_fields) and on_diff_path and diffs.next_fails()

    async def healthz(_: web.Request) -> web.Response:
        if config.healthz_fail:
            return web.Response(status=503, text="not ready (HEALTHZ_FAIL=1)\n")
        return web.Response(text="ok\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def answer(request: web.Request) -> web.Response:
        started = time.perf_counter()
        fails = injects_error(request.path)
        delay_ms = config.latency_ms + jitter.uniform(
            -config.latency_jitter_ms, config.latency_jitter_ms
        )
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        body = {
            "version": config.version,
            "path": request.path,
            "method": request.method,
            "requestId": uuid.uuid4().hex,
            "time": datetime.now(UTC).isoformat(timespec="microseconds"),
            **config.body_fields,
        }
        if answers_differently(request.path):
            body.update(config.diff_fields)
        if fails:
            body["error"] = "injected (ERROR_RATE)"
        status = 500 if fails else 200
        response = web.json_response(body, status=status)
        if config.fresh_request_id:
            response.headers["X-Request-Id"] = uuid.uuid4().hex
        elif request_id := request.headers.get("X-Request-Id"):
            response.headers["X-Request-Id"] = request_id
        requests_total.labels(code=str(status), method=request.method).inc()
        duration.labels(method=request.method).observe(time.perf_counter() - started)
        return response

    async def add_version(_: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Version"] = config.version

    app = web.Application()
    app.on_response_prepare.append(add_version)
    app.router.add_route("*", "/healthz", healthz)
    app.router.add_route("*", "/metrics", metrics)
    app.router.add_route("*", "/{path:.*}", answer)
    return app


async def serve(config: Config) -> None:
    """Listen until SIGTERM or SIGINT, then give in-flight requests a short grace."""
    runner = web.AppRunner(
        build_app(config), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_SECONDS
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = web.TCPSite(runner, config.bind_address, config.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        print(f"sample-app {config.version} listening on http://{authority}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> int:
    try:
        config = Config.from_env(os.environ)
    except SettingError as error:
        print(f"sample-app: {error}", file=sys.stderr)
        return 2
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
