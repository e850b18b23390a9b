"""The operator's own LIST-then-WATCH of one kind of child (Deployments, Services, the
route kinds), in a thread of its own, feeding the watch index (kube/feed.py).

Why not kopf's watches: kopf keeps a per-object memory (a copy of the operator's memo,
a throttler, daemon and index state) for every object it ever saw, and a worker with
the last event for each object that changed, for objects whose only handler puts them
in our index. At five children a route that was most of the operator's memory per
route (docs/benchmarks.md). kopf still watches the ShadowRoutes.

What it does, in order, for as long as it runs:

- LIST the kind (by pages, with the watch's label selector) in its namespace, or in all
  namespaces keeping those `accept` takes; each page to the sink as it comes, then the
  names listed and the LIST's resourceVersion (the feed drops what the LIST lacks);
- WATCH from that resourceVersion, with bookmarks, each stream ended by the server
  after about `timeout` seconds and resumed from the last resourceVersion seen;
- a 410 Gone (the resourceVersion is older than the server's watch cache: the watch
  was down, or the API server restarted) LISTs again; a connection lost or an error
  answer is retried from the last resourceVersion after a backoff;
- a kind the API server does not serve (its CRD is not installed) is reported missing
  (known as empty) and waited for by a WATCH of its CustomResourceDefinition; where the
  operator may not read CRDs, the kind is LISTed again every RECHECK_SECONDS;
- a 403 on the LIST (RBAC) is reported and ends the watch: the kind is known as empty.

The sink is called in this thread; the feed hands what it gets to the event loop.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from ..api_errors import ApiError, api_reason
from .apiserver import ApiServer, Endpoint, Unreachable

LIST_PAGE = 500
"""Objects per LIST answer: a LIST is never held whole (10,000 routes make 20,000
Deployments)."""

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 300.0
"""How long the server keeps one watch stream open (jittered by a tenth)."""
READ_GRACE_SECONDS = 60.0
"""Past the stream's own timeout, how long a read may wait before the connection is
taken for lost (bookmarks come about every minute)."""
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
SHORT_STREAM_SECONDS = 1.0
"""A watch stream that ends sooner is retried after a backoff, not at once."""
RECHECK_SECONDS = 300.0
"""A kind not served, where CRDs may not be read: how often it is LISTed again."""
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
AGENT = "shadowroute-operator"

Sink = Callable[[str, Any], None]
"""(what, payload), called in the watch's thread:
`page` [bodies]; `listed` (set of (namespace, name), resourceVersion, first LIST?);
`put` body; `deleted` body; `missing` None (not served); `forbidden` message."""


class Gone(Exception):
    """410: the resourceVersion is too old; LIST again."""


class KindWatch:
    def __init__(
        self,
        endpoint: Endpoint,
        kind: str,
        path: str,
        sink: Sink,
        *,
        selector: str = "",
        accept: Callable[[str], bool] | None = None,
        crd: str | None = None,
        count_read: Callable[[str], None] | None = None,
        timeout: float = TIMEOUT_SECONDS,
        page: int = LIST_PAGE,
    ) -> None:
        """`path`: the kind's collection (one namespace's, or the cluster-wide one);
        `accept`: which namespaces a cluster-wide watch keeps; `crd`: the name of the
        CRD that serves the kind (None for built-in kinds); `count_read`: told of each
        GET or LIST made (the operator's read counter)."""
        self.endpoint, self.kind, self.path, self.sink = endpoint, kind, path, sink
        self.selector = selector
        self.accept = accept or (lambda _ns: True)
        self.crd = crd
        self.count_read = count_read or (lambda _kind: None)
        self.timeout, self.page = timeout, page
        self._stopped = threading.Event()
        self._api: ApiServer | None = None
        self._listed_once = False
        self._thread = threading.Thread(target=self._run, name=f"watch {kind}", daemon=True)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ends the thread soon: a blocked read is cut."""
        self._stopped.set()
        api = self._api
        if api is not None:
            api.interrupt()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    # ------------------------------------------------------------ the loop

    def _run(self) -> None:
        self._api = ApiServer(
            self.endpoint, timeout=self.timeout * 1.1 + READ_GRACE_SECONDS, agent=AGENT
        )
        version: str | None = None
        failures = 0
        try:
            while not self.stopped:
                try:
                    if version is None:
                        version = self._list()
                        if version is None:  # not served
                            self._await_served()
                            continue
                    began = time.monotonic()
                    version = self._watch(version)
                    if time.monotonic() - began >= SHORT_STREAM_SECONDS:
                        failures = 0
                        continue
                    why = "the stream ended at once"  # a proxy closing it: back off
                except Gone:
                    log.info("watch of %s: resourceVersion too old (410 Gone), listing again",
                             self.kind)  # fmt: skip
                    version = None
                    continue
                except ApiError as exc:
                    if exc.status == 403 and not self._listed_once:
                        message = ": ".join(api_reason(exc))
                        log.warning("may not list %s: %s", self.kind, message)
                        self.sink("forbidden", message)
                        return
                    if exc.status == 410:
                        version = None
                        continue
                    why = ": ".join(api_reason(exc))
                except (Unreachable, ValueError) as exc:  # no answer; a line that is not JSON
                    why = f"{type(exc).__name__}: {exc}"
                if self.stopped:
                    return
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("watch of %s failed (retrying in %.0fs): %s", self.kind, delay, why)
                self._stopped.wait(delay * random.uniform(0.8, 1.2))
        finally:
            self._api.close()

    def _get(self, path: str, query: list[tuple[str, Any]]) -> Any:
        assert self._api is not None
        self.count_read(self.kind)
        return self._api.request("GET", path, query=query)

    def _list(self) -> str | None:
        """LIST by pages to the sink; the LIST's resourceVersion, None when the kind is
        not served (reported missing)."""
        names: set[tuple[str, str]] = set()
        token, version = "", None
        while True:
            query = [("limit", str(self.page))]
            query += [("labelSelector", self.selector)] if self.selector else []
            query += [("continue", token)] if token else []
            try:
                data = self._get(self.path, query)
            except ApiError as exc:
                if exc.status == 404:
                    self.sink("missing", None)
                    self._listed_once = True
                    return None
                if exc.status == 410 and token:  # the continue token expired: start over
                    names, token, version = set(), "", None
                    continue
                raise
            meta = data.get("metadata") or {}
            version = version or meta.get("resourceVersion")
            items = []
            for item in data.get("items") or []:
                item_meta = item.get("metadata") or {}
                namespace = item_meta.get("namespace") or ""
                if not self.accept(namespace):
                    continue
                item.setdefault("kind", self.kind)  # a LIST's items carry no kind
                names.add((namespace, item_meta.get("name") or ""))
                items.append(item)
            if items:
                self.sink("page", items)
            token = meta.get("continue") or ""
            if not token:
                break
        self.sink("listed", (names, version, not self._listed_once))
        self._listed_once = True
        return version

    def _watch(self, version: str) -> str:
        """One watch stream from `version` to its end; the last resourceVersion seen.
        Gone on a 410."""
        assert self._api is not None
        seconds = int(self.timeout * random.uniform(0.9, 1.1))
        query: list[tuple[str, Any]] = [
            ("watch", "1"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(seconds)),
        ]
        query += [("labelSelector", self.selector)] if self.selector else []
        try:
            for event in self._api.watch(self.path, query):
                if self.stopped:
                    break
                kind, body = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    code = body.get("code")
                    if code == 410:
                        raise Gone()
                    raise ApiError(int(code or 500), str(body.get("reason") or ""),
                                   str(body.get("message") or ""))  # fmt: skip
                meta = body.get("metadata") or {}
                version = meta.get("resourceVersion") or version
                if kind == "BOOKMARK" or not self.accept(meta.get("namespace") or ""):
                    continue
                body.setdefault("kind", self.kind)
                self.sink("deleted" if kind == "DELETED" else "put", body)
        except ApiError as exc:
            if exc.status == 410:
                raise Gone() from None
            raise
        return version

    def _await_served(self) -> None:
        """Until the kind may be served: its CRD added (watched by name), or, where
        CRDs may not be read (or for a built-in kind), RECHECK_SECONDS."""
        if self.crd is None:
            self._stopped.wait(RECHECK_SECONDS)
            return
        selector = [("fieldSelector", f"metadata.name={self.crd}")]
        try:
            found = self._get(CRDS, selector)
            if found.get("items"):  # there, but not served yet (not established)
                self._stopped.wait(2.0)
                return
            version = (found.get("metadata") or {}).get("resourceVersion") or ""
            log.info("%s is not served; waiting for CRD %s", self.kind, self.crd)
            while not self.stopped:
                query = [("watch", "1"), ("resourceVersion", version),
                         ("timeoutSeconds", str(int(self.timeout))), *selector]  # fmt: skip
                assert self._api is not None
                for event in self._api.watch(CRDS, query):
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._stopped.wait(1.0)  # a new CRD is established within moments
                        return
                    if event.get("type") == "ERROR":
                        return  # expired: look again from the top
                    meta = (event.get("object") or {}).get("metadata") or {}
                    version = meta.get("resourceVersion") or version
        except ApiError as exc:
            if exc.status != 403:
                raise
            log.info("%s is not served and CRDs may not be read: looking again every %.0fs",
                     self.kind, RECHECK_SECONDS)  # fmt: skip
            self._stopped.wait(RECHECK_SECONDS)
