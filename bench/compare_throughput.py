"""The comparator's in-process floor (a skeleton): mirrored copies per second it takes
and comparisons per second it finishes, against three loopback upstreams answering a
small JSON body, with no data plane in between. The figure through the real gateway
(Envoy's RequestMirror) is measured elsewhere. Everything (load, comparator, upstreams)
shares one event loop here, so the figure is pessimistic: a skeleton to grow (upstreams
and load in their own processes), not a number to quote.

    .venv/bin/python bench/compare_throughput.py [copies] [concurrency]
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
from aiohttp import web
from shadowroute.compare.config import Config
from shadowroute.compare.server import Comparator

LOOPBACK = "127.0.0.1"


async def upstream() -> tuple[web.AppRunner, int]:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"id": request.query.get("i"), "price": 10, "tags": ["a", "b"]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    return runner, runner.addresses[0][1]


async def main(copies: int, concurrency: int) -> None:
    (c_runner, c_port), (b_runner, b_port) = await upstream(), await upstream()
    config = Config(
        candidate=f"http://{LOOPBACK}:{c_port}",
        baseline=f"http://{LOOPBACK}:{b_port}",
        route="bench",
        revision="r1",
        listen_port=0,
        admin_port=0,
        listen_address=LOOPBACK,
        max_in_flight=256,
    )
    comparator = Comparator(config, {})
    await comparator.start()
    url = f"http://{LOOPBACK}:{comparator.listen_port}/items"
    queue = iter(range(copies))
    start = time.perf_counter()
    async with aiohttp.ClientSession() as client:

        async def sender() -> None:
            for i in queue:
                async with client.get(url, params={"i": str(i)}) as response:
                    await response.read()

        await asyncio.gather(*(sender() for _ in range(concurrency)))
        sent = time.perf_counter() - start
    await comparator.stop(grace=60)  # waits for the comparisons in progress
    done = time.perf_counter() - start
    k = comparator.comparison
    print(f"copies sent: {copies} at concurrency {concurrency}")
    print(f"  taken: {copies / sent:.0f}/s; compared: {k.tally.compared / done:.0f}/s")
    print(f"  compared {k.tally.compared}, mismatched {k.tally.mismatched}, dropped {k.dropped}")
    lat = k.summary()["latency"]
    print(f"  upstream p50/p95 s: candidate {lat['candidate']}, baseline {lat['baseline']}")
    for runner in (c_runner, b_runner):
        await runner.cleanup()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [5000, 32][len(args) :])))
