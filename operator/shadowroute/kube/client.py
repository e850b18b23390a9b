"""The only code that talks to the API server.

Requests go through the project's own small client (kube/apiserver.py), one kept-alive
connection per worker thread of its own pool (oldest ShadowRoute first, see
dispatch.py), so the event loop is never blocked. Every write is a server-side apply
under one field manager, or a status apply; every write is counted (`writes`), so
tests and benchmarks can assert that an unchanged resource causes none.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import logging
import os
import signal
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from ..api.models import GROUP, PLURAL, VERSION
from ..api_errors import ApiError, names_an_object
from ..kube import apiserver
from ..names import FIELD_MANAGER
from ..observability.metrics import API_READS, API_WRITES
from ..traffic import ROUTE_RESOURCES
from .apiserver import Endpoint, Unreachable
from .dispatch import Dispatcher
from .watch import LIST_PAGE, KindWatch, Sink

APPLY_PATCH = "application/apply-patch+yaml"
# Requests in flight at once, and HTTP connections kept: asyncio's default executor
# has cpu+4 threads, which on a small node would cap the operator near 6 requests at
# a time however far away the API server is.
WORKERS = 16
REQUEST_TIMEOUT = 60.0
USER_AGENT = "shadowroute-operator"
log = logging.getLogger(__name__)
T = TypeVar("T")


CRASH_AFTER_ENV = "SHADOWROUTE_CRASH_AFTER_WRITE"
"""Fault injection for the crash-point tests: `KIND:N` (or `any:N`) SIGKILLs the
operator right after its N-th write of that kind (`Deployment`, `Service`,
`HTTPRoute`, `ShadowRoute/status`, `Event`, ...). Unset in production."""


def _crash_point(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    kind, _, count = spec.rpartition(":")
    return (kind, int(count)) if kind and count.isdigit() and int(count) > 0 else None


class KindCounter:
    """API calls by kind, for tests, benchmarks and the operator's metrics."""

    def __init__(self, metric: Any) -> None:
        self._lock = threading.Lock()
        self._metric = metric
        self.by_kind: collections.Counter[str] = collections.Counter()

    def add(self, kind: str) -> None:
        with self._lock:
            self.by_kind[kind] += 1
            due = self._due(kind)
        self._metric.labels(kind).inc()
        if due:
            self._fire(kind)

    def _due(self, kind: str) -> bool:
        """Called under the lock, right after a count: whether to act on it."""
        return False

    def _fire(self, kind: str) -> None:
        pass

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.by_kind.values())


class WriteCounter(KindCounter):
    """API writes by kind, and the crash points' fault injection."""

    def __init__(self) -> None:
        super().__init__(API_WRITES)
        self._crash = _crash_point(os.environ.get(CRASH_AFTER_ENV))

    def _due(self, kind: str) -> bool:
        """The fault injection's write has just been made."""
        if self._crash is None:
            return False
        which, after = self._crash
        if which == "any":
            return sum(self.by_kind.values()) >= after
        return which == kind and self.by_kind[kind] == after

    def _fire(self, kind: str) -> None:
        log.warning("%s=%s: killing the operator after this write", CRASH_AFTER_ENV, kind)
        os.kill(os.getpid(), signal.SIGKILL)


writes = WriteCounter()
reads = KindCounter(API_READS)
"""API reads (GETs, LISTs) by kind: at rest the operator reads nothing (its
reconciles read the watch index, store.py)."""


def load_endpoint() -> Endpoint:
    """The API server and credentials: $KUBECONFIG (or ~/.kube/config), else the pod's
    service account."""
    return apiserver.load()


def apply_query(manager: str, force: bool, dry_run: bool = False) -> list[tuple[str, str]]:
    """The query of a server-side apply: one field manager, and Strict field
    validation, so a field the API server does not know (a misspelt one in a pod
    template) is an error naming it, never dropped with a warning. With `dry_run`
    (dryRun=All) the API server validates, defaults and admits it and stores nothing:
    what `kubectl shadowroute plan` sends."""
    query = [
        ("fieldManager", manager),
        ("force", "true" if force else "false"),
        ("fieldValidation", "Strict"),
    ]
    return [*query, ("dryRun", "All")] if dry_run else query


class Kube:
    """Async facade over the blocking client: each call runs in a worker thread, on
    that thread's own connection."""

    def __init__(self, endpoint: Endpoint | None = None) -> None:
        self.endpoint = endpoint if endpoint is not None else load_endpoint()
        self._local = threading.local()
        self._dispatcher = Dispatcher(WORKERS)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._dispatcher.run(functools.partial(fn, *args, **kwargs))

    async def close(self) -> None:
        await self._dispatcher.close()

    def _api(self) -> apiserver.ApiServer:
        api = getattr(self._local, "api", None)
        if api is None:
            api = self._local.api = apiserver.ApiServer(
                self.endpoint, timeout=REQUEST_TIMEOUT, agent=USER_AGENT
            )
        return api

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One blocking request (in a worker thread): the JSON answer, or ApiError."""
        return self._api().request(method, path, **kwargs)

    # ------------------------------------------------------------------ reads

    async def get_shadowroute(self, namespace: str, name: str) -> dict[str, Any] | None:
        reads.add("ShadowRoute")
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
        try:
            return await self._run(self.call, "GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list_children(
        self, namespace: str, name: str, kinds: tuple[str, ...] = ("Deployment", "Service")
    ) -> dict[str, list[dict[str, Any]]]:
        """This ShadowRoute's children of each kind, found by our labels. A kind whose
        API is not served (a CRD not installed) lists as empty."""
        selector = f"shadowroute.io/name={name},app.kubernetes.io/managed-by=shadowroute"
        lists = await asyncio.gather(
            *(self._raw_list(kind, collection_path(kind, namespace), selector) for kind in kinds)
        )
        return dict(zip(kinds, lists, strict=True))

    async def list_selected(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Objects of a kind found by a label selector (a Job's pods by job-name)."""
        return await self._raw_list(kind, collection_path(kind, namespace), selector)

    async def list_kind_pages(
        self, kind: str, namespace: str | None, selector: str = "", page: int = LIST_PAGE
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str | None]]:
        """Every object of a kind in one namespace (None: all), a page of `page` at a
        time (a whole LIST of ShadowRoutes at once would be the operator's peak
        memory), each with the resourceVersion the LIST was answered at. A kind whose
        API is not served (a CRD not installed) lists as empty."""
        path = collection_path(kind, namespace) if namespace else cluster_path(kind)
        token, version = "", None
        while True:
            query = [("limit", str(page))]
            query += [("labelSelector", selector)] if selector else []
            query += [("continue", token)] if token else []
            reads.add(kind)
            try:
                data = await self._run(self.call, "GET", path, query=query)
            except ApiError as exc:
                if exc.status == 404:
                    return
                raise
            meta = data.get("metadata") or {}
            version = version or meta.get("resourceVersion")
            items = data.get("items") or []
            for item in items:
                item.setdefault("kind", kind)  # a LIST's items carry neither kind nor apiVersion
            yield items, version
            token = meta.get("continue") or ""
            if not token:
                return

    def watch(self, kind: str, path: str, sink: Sink, **options: Any) -> KindWatch:
        """A LIST-then-WATCH of one kind in a thread of its own (watch.py), not started;
        its LISTs count as reads."""
        return KindWatch(self.endpoint, kind, path, sink, count_read=reads.add, **options)

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any]:
        """A Secret (the analysis's credentials); ApiError as the server answered."""
        reads.add("Secret")
        return await self._run(self.call, "GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")

    async def _raw_list(self, kind: str, path: str, selector: str) -> list[dict[str, Any]]:
        reads.add(kind)
        try:
            data = await self._run(self.call, "GET", path, query=[("labelSelector", selector)])
        except ApiError as exc:
            if exc.status == 404:
                return []
            raise
        return list(data.get("items") or [])

    # ------------------------------------------------------------------ writes

    async def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        """Server-side apply of one object under our field manager (force: we own what
        we create, and taking a field back from a drive-by `kubectl edit` is the point).
        Without force, fields another manager owns are a 409 Conflict instead: how an
        object of someone else's that merely has our name is never taken over."""
        path = resource_path(obj)
        result = await self._run(
            self.call,
            "PATCH",
            path,
            query=apply_query(FIELD_MANAGER, force),
            body=obj,
            content_type=APPLY_PATCH,
        )
        writes.add(obj["kind"])
        return result

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object as it is now; None when it does not exist. A kind the API server
        does not serve (its CRD is missing) raises, as a 404 without an object name."""
        path = _PATHS[kind].format(ns=namespace, name=name)
        reads.add(kind)
        try:
            return await self._run(self.call, "GET", path)
        except ApiError as exc:
            if exc.status == 404 and names_an_object(exc):
                return None
            raise

    async def delete(self, obj: dict[str, Any]) -> None:
        """Delete one object, only if it is still the one that was read (uid
        precondition); already gone is fine."""
        meta = obj["metadata"]
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
        }
        if meta.get("uid"):
            body["preconditions"] = {"uid": meta["uid"]}
        try:
            await self._run(self.call, "DELETE", resource_path(obj), body=body)
        except ApiError as exc:
            if exc.status == 404 and names_an_object(exc):
                return
            raise
        writes.add(f"{obj['kind']}/delete")

    async def apply_status(
        self, namespace: str, name: str, status: dict[str, Any], uid: str | None = None
    ) -> dict[str, Any]:
        """Apply the whole status: fields we no longer set are removed (we own them).
        With `uid`, only to that very object: a ShadowRoute deleted (or deleted and
        created again) meanwhile raises Gone instead of getting another's status.
        Returns the ShadowRoute as the API server stored it."""
        metadata: dict[str, Any] = {"name": name, "namespace": namespace}
        if uid:
            metadata["uid"] = uid
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ShadowRoute",
            "metadata": metadata,
            "status": status,
        }
        try:
            result = await self._run(
                self.call,
                "PATCH",
                f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status",
                query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                body=body,
                content_type=APPLY_PATCH,
            )
        except ApiError as exc:
            if (exc.status == 404 and names_an_object(exc)) or (uid and exc.status == 409):
                raise Gone(f"ShadowRoute {namespace}/{name} is gone") from exc
            raise
        writes.add("ShadowRoute/status")
        return result

    async def event(
        self,
        involved: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        name: str | None = None,
    ) -> bool:
        """Record an Event on the ShadowRoute. With `name`, an Event of that name that
        already exists counts as recorded (posting twice records once). False only when
        trying again may help (the API server did not answer or failed); an Event
        refused for good (RBAC, validation) is logged and dropped."""
        meta = involved["metadata"]
        body = event_body(involved, type_, reason, message, dt.datetime.now(dt.UTC), name)
        try:
            await self._run(
                self.call,
                "POST",
                f"/api/v1/namespaces/{meta['namespace']}/events",
                body=body,
            )
        except ApiError as exc:
            if exc.status == 409:
                return True  # recorded before (a retry after a crash)
            log.warning("could not record event %s on %s: %s", reason, meta["name"], exc.reason)
            return exc.status in (400, 403, 404, 422)
        except Unreachable as exc:  # no answer
            log.warning("could not record event %s on %s: %s", reason, meta["name"], exc)
            return False
        writes.add("Event")
        return True


def event_body(
    involved: dict[str, Any],
    type_: str,
    reason: str,
    message: str,
    now: dt.datetime,
    name: str | None = None,
) -> dict[str, Any]:
    """A core/v1 Event on the ShadowRoute, with eventTime and the first/last timestamps
    and count both set. `kubectl describe` orders Events by lastTimestamp (by
    series.lastObservedTime, else lastTimestamp, else eventTime in newer versions):
    an Event with eventTime alone is listed in name order, which for our names is no
    order at all. The events.k8s.io/v1 API refuses those fields on create ("must be
    unset"), so the Event is posted through core/v1, which takes both; the
    events.k8s.io/v1 view shows the same object (note, regarding, deprecated*)."""
    meta = involved["metadata"]
    second = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": name or f"{meta['name']}.{uuid.uuid4().hex[:12]}",
            "namespace": meta["namespace"],
        },
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "firstTimestamp": second,
        "lastTimestamp": second,
        "count": 1,
        "type": type_,
        "reason": reason,
        "action": reason,
        "message": message[:1024],
        "reportingComponent": "shadowroute.io/operator",
        "reportingInstance": FIELD_MANAGER,
        "source": {"component": "shadowroute.io/operator"},
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
    }


class Gone(Exception):
    """The ShadowRoute being reconciled no longer exists (deleted mid-reconcile)."""


_PATHS = {
    "ShadowRoute": f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}/{{name}}",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
    "Service": "/api/v1/namespaces/{ns}/services/{name}",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs/{name}",  # job checks
    "Pod": "/api/v1/namespaces/{ns}/pods/{name}",  # a job check's pods: how it ended
    # The route kinds, as their providers declare them.
    **{kind: declared.path for kind, declared in ROUTE_RESOURCES.items()},
}


def resource_path(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return _PATHS[obj["kind"]].format(ns=meta["namespace"], name=meta["name"])


def collection_path(kind: str, namespace: str) -> str:
    return _PATHS[kind].format(ns=namespace, name="").rstrip("/")


def cluster_path(kind: str) -> str:
    """The kind's collection across all namespaces."""
    return _PATHS[kind].replace("/namespaces/{ns}", "").format(name="").rstrip("/")
