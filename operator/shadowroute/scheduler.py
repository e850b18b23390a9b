"""When to reconcile which ShadowRoute: on every watch event of it or its children,
and again when the state machine's timers say so. One reconcile per object at a time;
triggers that arrive meanwhile coalesce into one more run.

The schedule itself is only a cache: everything it would need after a restart is in
the ShadowRoutes' status, and a restart reconciles every object once anyway.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from .kube import dispatch
from .observability.metrics import RECONCILE_ERRORS, RECONCILE_SECONDS, RouteMetrics, route_metrics
from .reconciler import Outcome

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
RESYNC_SECONDS = 300.0  # a safety net; events and timers do the real work
RESYNC_ENV = "SHADOWROUTE_RESYNC_SECONDS"
"""Overrides RESYNC_SECONDS (`--resync-seconds`); tests shorten it to watch a resync."""
ERROR_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class Scheduler:
    def __init__(
        self,
        reconcile: Callable[[str, str], Awaitable[Outcome]],
        metrics: RouteMetrics = route_metrics,
        resync: float = RESYNC_SECONDS,
    ) -> None:
        self._reconcile = reconcile
        self._resync = resync
        self._metrics = metrics
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._errors: dict[Key, int] = {}
        self._gone: set[Key] = set()  # deleted while a reconcile of it was in flight
        self._first_seen: dict[Key, float] = {}  # its API calls' priority: oldest first

    def trigger(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._first_seen.setdefault(key, time.monotonic())
        if key in self._running:
            self._dirty.add(key)
            return
        self._running[key] = asyncio.get_running_loop().create_task(self._run(key))

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        timer = self._timers.pop(key, None)
        if timer:
            timer.cancel()
        self._errors.pop(key, None)
        self._first_seen.pop(key, None)
        if key in self._running:
            self._gone.add(key)
        self._metrics.forget(namespace, name)

    def _schedule(self, key: Key, delay: float) -> None:
        old = self._timers.pop(key, None)
        if old:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(max(delay, 0.05), self.trigger, *key)

    async def _run(self, key: Key) -> None:
        # This task's own context: every API call of this reconcile waits its turn
        # behind those of routes seen earlier, ahead of those seen later.
        dispatch.priority.set(self._first_seen.get(key, 0.0))
        try:
            while True:
                self._dirty.discard(key)
                try:
                    with RECONCILE_SECONDS.time():
                        outcome = await self._reconcile(*key)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    RECONCILE_ERRORS.labels(type(exc).__name__).inc()
                    n = self._errors.get(key, 0)
                    self._errors[key] = n + 1
                    delay = ERROR_BACKOFF[min(n, len(ERROR_BACKOFF) - 1)] * random.uniform(0.8, 1.2)
                    log.exception("reconcile of %s/%s failed; retrying in %.1fs", *key, delay)
                    self._schedule(key, delay)
                else:
                    self._errors.pop(key, None)
                    # A run that started before the route was deleted reports a status
                    # that no longer exists; later runs see the deletion themselves.
                    stale = key in self._gone
                    self._gone.discard(key)
                    if outcome.status is not None and not stale:
                        # Gauges and outcome counters from what was decided: no read-back.
                        self._metrics.observe(*key, outcome.status)
                    delay = self._resync
                    if outcome.requeue_after is not None:
                        delay = min(delay, outcome.requeue_after + 0.05)
                    self._schedule(key, delay)
                if key not in self._dirty:
                    return
        finally:
            self._running.pop(key, None)
            self._gone.discard(key)

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
