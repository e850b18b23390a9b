"""Blocking API calls run on a bounded thread pool, oldest ShadowRoute first.

Why not plain FIFO: when many ShadowRoutes arrive at once (a GitOps sync, an operator
install on a full cluster) every first reconcile queues its requests, and a FIFO
pool interleaves them all: no route becomes Ready until nearly every route has been
through every step, and a rollback of a route that was already running waits behind
the whole burst. Taking calls in the order the routes were first seen lets work in
progress finish first: routes become Ready one after another, and an established
route's rollback goes ahead of the newcomers.

The priority is a context variable, set by the scheduler for each reconcile task, so
the code between the scheduler and the client does not carry it around.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Lower runs first. Calls made outside a reconcile (startup, tools) go first.
priority: contextvars.ContextVar[float] = contextvars.ContextVar("kube_priority", default=0.0)

_Item = tuple[float, int, Callable[[], Any], "asyncio.Future[Any]"]


class Dispatcher:
    """At most `workers` calls in flight; waiting calls leave in priority order, ties
    in arrival order."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, "kube")
        self._queue: asyncio.PriorityQueue[_Item] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._seq = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new loop (tests): fresh workers
            self._loop = loop
            self._queue = asyncio.PriorityQueue()
            self._tasks = [loop.create_task(self._work()) for _ in range(self.workers)]
        assert self._queue is not None
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put_nowait((priority.get(), next(self._seq), call, future))
        return await future

    async def _work(self) -> None:
        assert self._queue is not None and self._loop is not None
        queue, loop = self._queue, self._loop
        while True:
            await self._serve(loop, *(await queue.get())[2:])

    async def _serve(self, loop: asyncio.AbstractEventLoop, call: Any, future: Any) -> None:
        """One call. Its own frame: a worker waiting for the next call must not keep the
        last answer alive (a LIST of every Deployment, held by each of the workers)."""
        if future.done():  # its caller was cancelled while it waited
            return
        try:
            result = await loop.run_in_executor(self._pool, call)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)
        finally:
            if not future.done():  # this worker itself was cancelled (close)
                future.cancel()

    async def close(self) -> None:
        """Stop the workers; calls still waiting are cancelled. Not usable after."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait()[3].cancel()
        self._tasks = []
        self._pool.shutdown(wait=False, cancel_futures=True)
