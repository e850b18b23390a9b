"""Keeps the watch index (store.py) complete, and says when a child changed.

Two sources. The children (Deployments, Services, the route kinds: the `own` kinds)
come from the operator's own watches (kube/watch.py, one thread per kind and scope):
each LIST's pages and each watch event are handed to the event loop and put in the
index there; a LIST after a watch gap (410 Gone) drops what it lacks (the owner is
reconciled: it re-creates the child); a child that changed tells its owner's
reconcile (`on_change`), so a hand edit is put back at once.

The ShadowRoutes come from kopf's watch. kopf reports the objects it LISTs (at start,
and after a watch gap) as events of type None, and never reports a deletion it did not
watch. So one LIST of the ShadowRoutes at start, before any reconcile decides; and a
burst of type-None events after that means a re-list: once the burst is quiet for
`quiet` seconds, one LIST says what still exists; what the index holds and the LIST
lacks (and did not arrive by a later watch event) is gone: the route is forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..api_errors import ApiError, api_reason
from ..names import NAME_LABEL
from ..observability.metrics import STORE_PURGED, STORE_RELISTS
from .client import Kube, cluster_path, collection_path
from .store import Key, Store
from .watch import KindWatch

log = logging.getLogger(__name__)

SHADOWROUTE = "ShadowRoute"
QUIET_SECONDS = 1.0
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Between LISTs that failed: the API server did not answer, or failed."""
PAGE_WAIT_SECONDS = 1.0
"""How often a watch thread waiting for its page to be put looks whether the loop ended."""

Gone = Callable[[str, Key, str | None], None]
"""Told of each object a LIST after a gap found deleted: (kind, key, owner label)."""
Changed = Callable[[str, str], None]
"""Told of each child that changed: (namespace, owner label)."""


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
        own: Iterable[str] = (),
        on_change: Changed | None = None,
        crds: dict[str, str] | None = None,
    ) -> None:
        """`selectors`: the label selector of each kind's watch (none for ShadowRoutes);
        `namespaces`: the exact namespaces watched, or none for all; `watched`: which
        namespaces a cluster-wide LIST keeps (the operator's patterns); `on_gone`: told
        what a LIST after a gap found deleted; `own`: the kinds among `kinds` the feed
        watches itself (the rest kopf's events bring, `observe`); `on_change`: told of
        each of those objects that changed; `crds`: the CRD serving each own kind that
        is not built in."""
        self.kube, self.store = kube, store
        self.kinds = tuple(kinds)
        self.selectors = selectors
        self.namespaces = tuple(namespaces)
        self.watched = watched or (lambda _ns: True)
        self.on_gone = on_gone
        self.quiet = quiet
        self.own = tuple(k for k in self.kinds if k in set(own))
        self.on_change = on_change
        self.crds = crds or {}
        self._watches: list[KindWatch] = []
        self._unsynced_scopes: dict[str, int] = {}
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
        """List every kind once (in the background: reconciles wait for their kinds),
        and start the watches of the own kinds."""
        for kind in self.kinds:
            if kind in self.own:
                self._start_watches(kind)
            else:
                self._spawn(self._sweep(kind, first=True))

    def _start_watches(self, kind: str) -> None:
        loop = asyncio.get_running_loop()
        if self.namespaces:
            scopes = [
                (collection_path(kind, ns), (lambda n, ns=ns: n == ns)) for ns in self.namespaces
            ]
        else:
            scopes = [(cluster_path(kind), self.watched)]
        loop_thread = threading.get_ident()
        self._unsynced_scopes[kind] = len(scopes)
        for path, in_scope in scopes:
            said: dict[str, bool] = {"synced": False}

            def sink(what: str, payload: Any, in_scope=in_scope, said=said) -> None:
                put = threading.Event()

                def deliver() -> None:
                    try:
                        self._watched(kind, in_scope, said, what, payload)
                    finally:
                        put.set()

                try:
                    loop.call_soon_threadsafe(deliver)
                except RuntimeError:  # the loop is closed: the operator is on its way out
                    for watch in self._watches:
                        watch.stop()
                    return
                if what == "page" and threading.get_ident() != loop_thread:
                    _wait_put(put, loop)

            watch = self.kube.watch(
                kind, path, sink, selector=self.selectors.get(kind, ""), accept=in_scope,
                crd=self.crds.get(kind),
            )  # fmt: skip
            self._watches.append(watch)
            watch.start()

    def _watched(
        self, kind: str, in_scope: Callable[[str], bool], said: dict[str, bool], what: str,
        payload: Any,
    ) -> None:  # fmt: skip
        """On the event loop: what one of our watches reported (watch.py's Sink)."""
        kinds = self.store.kind(kind)
        if what == "page":
            for body in payload:
                self._put(kind, body, tell=said["synced"])  # a re-list: changes were missed
        elif what == "put":
            self._put(kind, payload, tell=True)
        elif what == "deleted":
            entry = kinds.remove(payload)
            if entry is not None and entry.owner and self.on_change is not None:
                self.on_change(_namespace(payload), entry.owner)
        elif what == "listed":
            names, version, _first = payload
            for key, owner in kinds.sweep(names, version, in_scope):
                STORE_PURGED.labels(kind).inc()
                log.info("%s %s/%s was deleted while the watch was down", kind, *key)
                if self.on_gone is not None:
                    self.on_gone(kind, key, owner)
        if what in ("listed", "missing", "forbidden") and not said["synced"]:
            said["synced"] = True
            STORE_RELISTS.labels(kind).inc()
            self._unsynced_scopes[kind] -= 1
            if self._unsynced_scopes[kind] <= 0:
                self._synced[kind].set()
        elif what == "listed":
            STORE_RELISTS.labels(kind).inc()

    def _put(self, kind: str, body: dict[str, Any], tell: bool) -> None:
        kinds = self.store.kind(kind)
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "", meta.get("name") or ""
        before = kinds.version(namespace, name)
        if not kinds.put(body) or kinds.version(namespace, name) == before:
            return  # older than what is kept, or the answer to our own write
        owner = (meta.get("labels") or {}).get(NAME_LABEL)
        if tell and owner and self.on_change is not None:
            self.on_change(namespace, owner)

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
        kinds = self.store.kind(kind)
        for namespace, in_scope in scopes:
            listed: set[Key] = set()
            version = None
            async for items, answered_at in self.kube.list_kind_pages(kind, namespace, selector):
                version = answered_at
                listed |= kinds.put_listed(items, in_scope)
            for key, owner in kinds.sweep(listed, version, in_scope):
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
        for watch in self._watches:
            watch.stop()
        for timer in self._timers.values():
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _wait_put(put: threading.Event, loop: asyncio.AbstractEventLoop) -> None:
    """A watch thread waits until its LIST page is in the index before it reads the
    next: a loop busy with an apply burst would otherwise queue a whole LIST (20,000
    Deployments at 10,000 routes) in memory, and the RSS keeps what the peak took."""
    while not put.wait(PAGE_WAIT_SECONDS):
        if loop.is_closed() or not loop.is_running():
            return


def _namespace(body: dict[str, Any]) -> str:
    return (body.get("metadata") or {}).get("namespace") or ""
