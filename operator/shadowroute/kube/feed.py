"""Keeps the watch index (store.py) complete: what kopf's watches report goes in; one
LIST per kind at start, before any reconcile of a route that needs that kind decides;
and one LIST of a kind again after kopf re-listed it, to drop what was deleted while
its watch was down.

kopf reports the objects it LISTs (at start, and after a watch gap: a 410 Gone) as
events of type None, and never reports a deletion it did not watch. So a burst of
type-None events of a kind, after that kind is synced, means a re-list: once the burst
is quiet for `quiet` seconds, one LIST of the kind (by the watches' own label selector,
in the watched namespaces) says what still exists; what the index holds and the LIST
lacks (and did not arrive by a later watch event) is gone: a child's owner is
reconciled (it re-creates the child), a ShadowRoute is forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

from ..api_errors import ApiError, api_reason
from ..observability.metrics import STORE_PURGED, STORE_RELISTS
from .client import Kube
from .store import Key, Store

log = logging.getLogger(__name__)

SHADOWROUTE = "ShadowRoute"
QUIET_SECONDS = 1.0
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Between LISTs that failed: the API server did not answer, or failed."""

Gone = Callable[[str, Key, str | None], None]
"""Told of each object a LIST after a gap found deleted: (kind, key, owner label)."""


class Feed:
    def __init__(
        self,
        kube: Kube,
        store: Store,
        kinds: Iterable[str],
        selectors: dict[str, str],
        namespaces: Iterable[str] = (),
        watched: Callable[[str], bool] | None = None,
        on_gone: Gone | None = None,
        quiet: float = QUIET_SECONDS,
    ) -> None:
        """`selectors`: the label selector of each kind's watch (none for ShadowRoutes);
        `namespaces`: the exact namespaces watched, or none for all; `watched`: which
        namespaces a cluster-wide LIST keeps (the operator's patterns); `on_gone`: told
        what a LIST after a gap found deleted."""
        self.kube, self.store = kube, store
        self.kinds = tuple(kinds)
        self.selectors = selectors
        self.namespaces = tuple(namespaces)
        self.watched = watched or (lambda _ns: True)
        self.on_gone = on_gone
        self.quiet = quiet
        self._synced = {kind: asyncio.Event() for kind in self.kinds}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._sweeping: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ what reconciles ask

    def synced(self, kind: str) -> bool:
        return kind not in self._synced or self._synced[kind].is_set()

    async def wait(self, kinds: Iterable[str]) -> None:
        """Until every one of these kinds has been listed once."""
        for kind in kinds:
            if kind in self._synced:
                await self._synced[kind].wait()

    async def get_shadowroute(self, namespace: str, name: str) -> dict[str, Any] | None:
        """As Kube.get_shadowroute, from the index (once ShadowRoutes are listed)."""
        await self.wait((SHADOWROUTE,))
        return self.store.get(SHADOWROUTE, namespace, name)

    async def list_children(
        self, namespace: str, name: str, kinds: tuple[str, ...]
    ) -> dict[str, list[dict[str, Any]]]:
        """As Kube.list_children, from the index; a kind not watched is listed."""
        await self.wait(kinds)
        known = [k for k in kinds if k in self._synced]
        found = self.store.children(namespace, name, known)
        others = tuple(k for k in kinds if k not in self._synced)
        if others:
            found.update(await self.kube.list_children(namespace, name, others))
        return {kind: found[kind] for kind in kinds}

    def remember(self, body: dict[str, Any] | None) -> None:
        """Write-through: the API server's answer to our own write of a watched kind."""
        if body and body.get("kind") in self._synced:
            self.store.put(body)

    def deleted(self, body: dict[str, Any]) -> None:
        """We deleted this object (as it was read): gone unless a newer version shows up."""
        if body.get("kind") in self._synced:
            self.store.kind(body["kind"]).remove(body)

    # ------------------------------------------------------------ what the watches say

    def start(self) -> None:
        """List every kind once (in the background: reconciles wait for their kinds)."""
        for kind in self.kinds:
            self._spawn(self._sweep(kind, first=True))

    def observe(self, kind: str, event_type: str | None, body: dict[str, Any]) -> None:
        """One watch event, as kopf delivered it."""
        kinds = self.store.kind(kind)
        if event_type == "DELETED":
            kinds.remove(body)
            return
        kinds.put(body)
        if event_type is None and self.synced(kind):
            self._relisted(kind)

    def _relisted(self, kind: str) -> None:
        """kopf listed this kind (again): sweep once the burst is over."""
        loop = asyncio.get_running_loop()
        old = self._timers.pop(kind, None)
        if old is not None:
            old.cancel()
        self._timers[kind] = loop.call_later(self.quiet, self._sweep_soon, kind)

    def _sweep_soon(self, kind: str) -> None:
        self._timers.pop(kind, None)
        if kind in self._sweeping:
            self._again.add(kind)  # a LIST in flight may have been answered before the gap
            return
        self._sweeping[kind] = self._spawn(self._sweep(kind, first=False))

    # ------------------------------------------------------------ the LISTs

    async def _sweep(self, kind: str, first: bool) -> None:
        attempt = 0
        try:
            while True:
                try:
                    await self._list_once(kind)
                    break
                except ApiError as exc:
                    if exc.status == 403:
                        # Not ours to list (RBAC), so kopf cannot watch it either: known
                        # as empty, and a route that needs it gets a condition when its
                        # write is refused, instead of waiting for good.
                        log.warning("may not list %s: %s", kind, ": ".join(api_reason(exc)))
                        break
                    why: object = ": ".join(api_reason(exc))
                except Exception as exc:  # no answer (a connection refused, a timeout)
                    why = f"{type(exc).__name__}: {exc}"
                delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                attempt += 1
                log.warning("cannot list %s (retrying in %.0fs): %s", kind, delay, why)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            if first:
                self._synced[kind].set()
        finally:
            if not first:
                self._sweeping.pop(kind, None)
                if kind in self._again:
                    self._again.discard(kind)
                    self._sweep_soon(kind)

    async def _list_once(self, kind: str) -> None:
        selector = self.selectors.get(kind, "")
        STORE_RELISTS.labels(kind).inc()
        if self.namespaces:
            scopes = [(ns, (lambda n, ns=ns: n == ns)) for ns in self.namespaces]
        else:
            scopes = [(None, self.watched)]
        for namespace, in_scope in scopes:
            items, version = await self.kube.list_kind(kind, namespace, selector)
            for key, owner in self.store.kind(kind).relisted(items, version, in_scope):
                STORE_PURGED.labels(kind).inc()
                log.info("%s %s/%s was deleted while the watch was down", kind, *key)
                if self.on_gone is not None:
                    self.on_gone(kind, key, owner)

    def _spawn(self, work: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
