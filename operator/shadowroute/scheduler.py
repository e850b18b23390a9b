"""When to reconcile which ShadowRoute: on every watch event of it or its children,
and again when the state machine's timers say so. One reconcile per object at a time;
triggers that arrive meanwhile coalesce into one more run.

The schedule itself is only a cache: everything it would need after a restart is in
the ShadowRoutes' status, and a restart reconciles every object once anyway.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping

from .kube import dispatch
from .observability.metrics import RECONCILE_ERRORS, RECONCILE_SECONDS, RouteMetrics, route_metrics
from .reconciler import Outcome

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
RESYNC_SECONDS = 300.0  # a safety net; events and timers do the real work
RESYNC_ENV = "SHADOWROUTE_RESYNC_SECONDS"
"""Overrides RESYNC_SECONDS (`--resync-seconds`); tests shorten it to watch a resync."""
ERROR_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


def resync_seconds(environ: Mapping[str, str]) -> float:
    """Seconds between two reconciles of a route nothing happened to: $SHADOWROUTE_RESYNC_SECONDS
    (a number, at least 1), else RESYNC_SECONDS. ValueError names a bad value."""
    value = environ.get(RESYNC_ENV, "").strip()
    if not value:
        return RESYNC_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 1):
        raise ValueError(f"{RESYNC_ENV}={value!r}: expected a number of seconds, at least 1")
    return seconds


class Scheduler:
    def __init__(
        self,
        reconcile: Callable[[str, str], Awaitable[Outcome]],
        metrics: RouteMetrics = route_metrics,
        resync: float | None = None,
        owns: Callable[[str, str], bool] | None = None,
    ) -> None:
        self._reconcile = reconcile
        self._metrics = metrics
        self._resync = resync_seconds(os.environ) if resync is None else resync
        # Sharding: act only on the routes of the shards this replica holds, but keep
        # every key seen, to reconcile them at once when their shard comes to us.
        self._owns = owns or (lambda namespace, name: True)
        self._known: set[Key] = set()
        self._stopped = False
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._errors: dict[Key, int] = {}
        self._gone: set[Key] = set()  # deleted while a reconcile of it was in flight
        self._first_seen: dict[Key, float] = {}  # its API calls' priority: oldest first

    def seen(self, namespace: str, name: str) -> None:
        """A watch event of the ShadowRoute itself: a route that exists, kept to be
        woken when its shard comes to this replica (children's events, which go on
        after the route's DELETED, never add one: `forget` is final)."""
        self._known.add((namespace, name))

    def trigger(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if self._stopped or not self._owns(namespace, name):
            return
        self._first_seen.setdefault(key, time.monotonic())
        if key in self._running:
            self._dirty.add(key)
            return
        # A context of its own: created inside kopf's event handler, the task would
        # copy kopf's context variables, the event's cause with the route's whole body
        # among them, and hand them on to its timer and the next run, for good.
        self._running[key] = asyncio.get_running_loop().create_task(
            self._run(key), context=contextvars.Context()
        )

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._known.discard(key)
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
                    if isinstance(exc, ConnectionError):  # no answer: one line, no traceback
                        log.warning(
                            "reconcile of %s/%s got no answer from the API server (%s); "
                            "retrying in %.1fs", *key, exc, delay,
                        )  # fmt: skip
                    else:
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
                    log.debug("reconciled %s/%s; next in %.1fs unless an event comes", *key, delay)
                if key not in self._dirty or not self._owns(*key):
                    return
        finally:
            self._running.pop(key, None)
            self._gone.discard(key)

    def wake(self, which: Callable[[str, str], bool]) -> int:
        """Reconcile now every route seen whose key `which` accepts (a shard just
        acquired); returns how many."""
        keys = [key for key in self._known if which(*key)]
        for key in keys:
            self.trigger(*key)
        return len(keys)

    async def drop(self, which: Callable[[str, str], bool]) -> None:
        """Stop acting on the routes `which` accepts (a shard lost or handed over): their
        timers, backoff and gauges go, their reconciles under way are cancelled and
        waited for. The keys stay known. Call it once `owns` refuses them."""
        tasks = []
        for key in [k for k in (*self._timers, *self._running, *self._errors) if which(*k)]:
            timer = self._timers.pop(key, None)
            if timer:
                timer.cancel()
            self._errors.pop(key, None)
            self._dirty.discard(key)
            self._first_seen.pop(key, None)
            self._metrics.forget(*key)
            task = self._running.get(key)
            if task is not None:
                task.cancel()
                tasks.append(task)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        self._stopped = True  # a shard acquired during the shutdown starts nothing
        for timer in self._timers.values():
            timer.cancel()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
