"""Queries per tick of the batched analysis client, and what batching costs in time.

    python bench/promql_batch.py [--routes 1000,5000,10000] [--ticks 3] [-o text|json]

N routes ask their three preset queries (error rate, its request count, p95: what
`preset: error-rate` with minRequests and `preset: latency-p95` ask) at each tick of a
shared interval, through one `shadowroute.analysis.prometheus.Client`, against a local
aiohttp server on loopback that answers like Prometheus' query API (one series per
member selected) and counts the HTTP requests it gets. Per N it prints the queries sent
per tick (tick 0, cold: members collected for the 20 ms batch window; later ticks: the
last tick's members asked at once) and the time from the first ask to the last answer.
That time is this one process doing all of it (3 x N asks in one event loop, the
batched queries built and split, and the stand-in server parsing them): it measures
the client's cost, not Prometheus' evaluation, and is no latency any one route sees.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import time

import aiohttp
from aiohttp import web
from shadowroute.analysis.presets import family_of, preset_queries
from shadowroute.analysis.prometheus import Ask, Client, Endpoint
from shadowroute.analysis.templates import Context, render
from shadowroute.api.models import MetricConvention, MetricPreset

INTERVAL = 10.0
CHECKS = [(MetricPreset.ERROR_RATE, False), (MetricPreset.ERROR_RATE, True)]
CHECKS += [(MetricPreset.LATENCY_P95, False)]


def asks_of(n: int) -> list[Ask]:
    out = []
    for i in range(n):
        name = f"route{i}"
        ctx = Context(
            namespace="bench", name=name, primary=f"{name}-primary", canary=f"{name}-canary",
            shadow=f"{name}-shadow", target=f"{name}-canary", revision="r1",
            stable_revision="r0", canary_revision="r1", interval=INTERVAL, window=60.0,
        )  # fmt: skip
        for preset, requests in CHECKS:
            q = preset_queries(preset, MetricConvention.HTTP)
            own = render(q.requests if requests else q.value, ctx)
            family, key = family_of(preset, MetricConvention.HTTP, requests, ctx)
            out.append(Ask(own, family, key, INTERVAL))
    return out


async def serve(counter: list[int]) -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        counter[0] += 1
        q = str(form["query"])
        services = re.findall(r'service=~"([^"]*)"', q)
        names = services[0].split("|") if services else []
        result = [
            {"metric": {"namespace": "bench", "service": s}, "value": [0, "0.01"]} for s in names
        ]
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/api/v1/query", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def one(n: int, ticks: int) -> dict[str, object]:
    counter = [0]
    runner, url = await serve(counter)
    session = aiohttp.ClientSession()
    client = Client(session=lambda: session)
    where = Endpoint(url, timeout=30.0)
    asks = asks_of(n)
    t0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    rows = []
    try:
        for k in range(ticks):
            at = t0 + dt.timedelta(seconds=INTERVAL * k)
            before = counter[0]
            start = time.monotonic()
            await asyncio.gather(*(client.ask(where, a, at) for a in asks))
            rows.append(
                {
                    "tick": k,
                    "queries": counter[0] - before,
                    "all_answered_s": round(time.monotonic() - start, 3),
                }
            )
    finally:
        await session.close()
        await runner.cleanup()
    return {"routes": n, "asks_per_tick": len(asks), "ticks": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--routes", default="1000,5000,10000")
    p.add_argument("--ticks", type=int, default=3)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = p.parse_args()
    results = [asyncio.run(one(int(n), args.ticks)) for n in args.routes.split(",")]
    if args.output == "json":
        print(json.dumps(results, indent=2))
        return
    print(f"{'routes':>7} {'asks/tick':>9} {'tick':>4} {'queries':>7} {'all answered s':>14}")
    for r in results:
        for t in r["ticks"]:  # type: ignore[union-attr]
            print(f"{r['routes']:>7} {r['asks_per_tick']:>9} {t['tick']:>4} {t['queries']:>7} "
                  f"{t['all_answered_s']:>14}")  # fmt: skip


if __name__ == "__main__":
    main()
