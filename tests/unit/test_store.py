"""The watch index (kube/store.py) and what keeps it complete (kube/feed.py): an older
body never wins, a deletion is not undone by an older LIST, a LIST after a watch gap
drops what was deleted meanwhile and says whose it was; and a reconcile that reads the
index makes no API read at rest (counted in the Kube facade, as the operator's
`shadowroute_api_reads_total` counts them)."""

from __future__ import annotations

import asyncio
import copy
import json
from types import SimpleNamespace
from typing import Any

import pytest
from shadowroute.api_errors import ApiError
from shadowroute.kube import client as kube_client
from shadowroute.kube.apiserver import Endpoint
from shadowroute.kube.client import Kube
from shadowroute.kube.feed import SHADOWROUTE, Feed
from shadowroute.kube.store import LAST_APPLIED, KindStore, Store, compact
from shadowroute.reconciler import reconcile

from .traffic_cases import spec_raw

NS, NAME, UID = "shop", "web", "uid-web"
LABELS = {"app.kubernetes.io/managed-by": "shadowroute", "shadowroute.io/name": NAME}
CHILDREN = ("Deployment", "Service", "HTTPRoute")
SELECTORS = {k: "app.kubernetes.io/managed-by=shadowroute" for k in CHILDREN}


def obj(name: str, rv: str | None, ns: str = NS, owner: str | None = NAME, **meta: Any) -> dict:
    labels = {**LABELS, "shadowroute.io/name": owner} if owner else {}
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "labels": labels} | meta,
        "spec": {"rv": rv},
    }


def rv_of(found: dict | None) -> str | None:
    return found["metadata"]["resourceVersion"] if found else None


def test_an_older_body_never_replaces_a_newer_one() -> None:
    kind = KindStore()
    assert kind.put(obj("a", "10"))
    assert not kind.put(obj("a", "9")), "an older event arriving late"
    assert rv_of(kind.get(NS, "a")) == "10"
    assert kind.put(obj("a", "10")), "the same version again (our own write's answer)"
    assert kind.put(obj("a", "11"))
    assert rv_of(kind.get(NS, "a")) == "11"


def test_resource_versions_that_do_not_parse_let_the_later_arrival_win() -> None:
    kind = KindStore()
    kind.put(obj("a", "zz9"))
    kind.put(obj("a", "aa1"))
    assert rv_of(kind.get(NS, "a")) == "aa1"


def test_a_deletion_is_not_undone_by_a_list_answered_before_it() -> None:
    kind = KindStore()
    kind.put(obj("a", "10"))
    kind.remove(obj("a", "12"))  # the watch's DELETED carries the deletion's version
    assert kind.get(NS, "a") is None
    assert not kind.put(obj("a", "10")), "a LIST answered before the deletion"
    assert kind.get(NS, "a") is None and kind.owned(NS, NAME) == []
    assert kind.put(obj("a", "13")), "created again afterwards"
    assert rv_of(kind.get(NS, "a")) == "13"


def test_an_older_deletion_does_not_remove_a_newer_object() -> None:
    kind = KindStore()
    kind.put(obj("a", "20"))
    kind.remove(obj("a", "15"))
    assert rv_of(kind.get(NS, "a")) == "20"


def test_a_list_after_a_gap_drops_what_it_lacks_unless_newer_and_says_whose() -> None:
    kind = KindStore()
    kind.put(obj("kept", "5"))
    kind.put(obj("deleted-in-gap", "6"))
    kind.put(obj("created-after-list", "30"))
    kind.put(obj("other-namespace", "7", ns="elsewhere"))
    gone = kind.relisted([obj("kept", "8"), obj("new", "9")], "20", lambda ns: ns == NS)
    assert gone == [((NS, "deleted-in-gap"), NAME)]
    assert {o["metadata"]["name"] for o in kind.owned(NS, NAME)} == {
        "kept",
        "new",
        "created-after-list",
    }
    assert rv_of(kind.get(NS, "kept")) == "8", "the LIST's newer version taken"
    assert kind.get("elsewhere", "other-namespace") is not None, "outside the LIST's scope"


def test_a_list_clears_the_tombstones_it_covers() -> None:
    kind = KindStore()
    kind.put(obj("a", "10"))
    kind.remove(obj("a", "12"))
    kind.relisted([], "15", lambda ns: True)
    assert kind.tombstones == {}


def test_children_are_found_by_owner_label_look_alikes_included() -> None:
    kind = KindStore()
    ours = obj("web", "1", ownerReferences=[{"uid": UID, "controller": True}])
    look_alike = obj("web-canary", "2", ownerReferences=[{"uid": "other", "controller": True}])
    kind.put(ours)
    kind.put(look_alike)
    kind.put(obj("sibling", "3", owner="other-route"))
    assert [o["metadata"]["name"] for o in kind.owned(NS, NAME)] == ["web", "web-canary"]
    relabelled = obj("web-canary", "4", owner="other-route")
    kind.put(relabelled)
    assert [o["metadata"]["name"] for o in kind.owned(NS, NAME)] == ["web"]
    assert [o["metadata"]["name"] for o in kind.owned(NS, "other-route")] == [
        "sibling",
        "web-canary",
    ]


def test_what_is_kept_is_compact_and_each_read_gets_its_own_copy() -> None:
    managed = [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:ports": {}}}}]
    ours = obj(
        "a", "1", managedFields=managed, annotations={LAST_APPLIED: "{...}", "keep": "me"},
        ownerReferences=[{"uid": UID, "controller": True}],
    )  # fmt: skip
    kept = json.loads(compact(ours))
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"keep": "me"}
    # No one controls it: who wrote it is what the look-alike report says.
    nobodys = obj("b", "1", managedFields=managed)
    assert json.loads(compact(nobodys))["metadata"]["managedFields"] == managed
    kind = KindStore()
    kind.put(ours)
    kind.get(NS, "a")["spec"]["rv"] = "changed"
    assert kind.get(NS, "a")["spec"]["rv"] == "1"


# ---------------------------------------------------------------- the feed


class Lister:
    """Kube.list_kind over a dict of objects per kind, every LIST recorded."""

    def __init__(self) -> None:
        self.objects: dict[str, list[dict]] = {k: [] for k in (SHADOWROUTE, *CHILDREN)}
        self.version = "100"
        self.lists: list[tuple[str, str | None]] = []
        self.gate: asyncio.Event | None = None

    async def list_kind(self, kind: str, namespace: str | None, selector: str = ""):
        self.lists.append((kind, namespace))
        if self.gate is not None:
            await self.gate.wait()
        return copy.deepcopy(self.objects[kind]), self.version

    async def list_kind_pages(self, kind: str, namespace: str | None, selector: str = ""):
        items, version = await self.list_kind(kind, namespace, selector)
        yield items, version


async def wait_until(check, what: str) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def test_a_reconcile_waits_until_its_kinds_are_listed() -> None:
    lister = Lister()
    lister.gate = asyncio.Event()
    lister.objects[SHADOWROUTE] = [obj(NAME, "5") | {"kind": SHADOWROUTE}]
    feed = Feed(lister, Store(), (SHADOWROUTE, *CHILDREN), SELECTORS)  # type: ignore[arg-type]
    feed.start()
    reading = asyncio.ensure_future(feed.get_shadowroute(NS, NAME))
    await asyncio.sleep(0.05)
    assert not reading.done(), "nothing decided before the index is complete"
    lister.gate.set()
    assert rv_of(await asyncio.wait_for(reading, 5)) == "5"
    assert sorted(k for k, _ in lister.lists) == sorted((SHADOWROUTE, *CHILDREN))
    await feed.stop()


async def test_a_relist_by_kopf_makes_one_list_that_drops_what_was_deleted_in_the_gap() -> None:
    lister = Lister()
    deleted = obj("web-canary", "6")
    lister.objects["Service"] = [obj("web", "5"), deleted]
    told: list[tuple[str, tuple[str, str], str | None]] = []
    feed = Feed(
        lister, Store(), (SHADOWROUTE, *CHILDREN), SELECTORS,  # type: ignore[arg-type]
        namespaces=[NS], on_gone=lambda *a: told.append(a), quiet=0.05,
    )  # fmt: skip
    feed.start()
    await feed.wait(CHILDREN)
    assert lister.lists.count(("Service", NS)) == 1, "one LIST per kind and namespace"
    # The watch was down meanwhile; kopf re-lists: type None for what exists now.
    lister.objects["Service"] = [obj("web", "5")]
    lister.version = "110"
    for _ in range(3):
        feed.observe("Service", None, obj("web", "5"))
    await wait_until(lambda: told, "the deletion in the gap noticed")
    assert told == [("Service", (NS, "web-canary"), NAME)]
    assert lister.lists.count(("Service", NS)) == 2, "one LIST for the whole burst"
    assert feed.store.get("Service", NS, "web-canary") is None
    # Ordinary watch events make no LIST.
    feed.observe("Service", "MODIFIED", obj("web", "111"))
    feed.observe("Service", "DELETED", obj("web", "112"))
    await asyncio.sleep(0.15)
    assert lister.lists.count(("Service", NS)) == 2
    assert feed.store.get("Service", NS, "web") is None
    await feed.stop()


async def test_a_cluster_wide_list_keeps_only_the_watched_namespaces() -> None:
    lister = Lister()
    lister.objects["Service"] = [obj("a", "1"), obj("b", "1", ns="unwatched")]
    feed = Feed(
        lister, Store(), ("Service",), SELECTORS,  # type: ignore[arg-type]
        watched=lambda ns: ns == NS,
    )  # fmt: skip
    feed.start()
    await feed.wait(("Service",))
    assert lister.lists == [("Service", None)]
    assert feed.store.size() == {"Service": 1}
    await feed.stop()


class Paged(Lister):
    """A LIST answered a page of one object at a time."""

    async def list_kind_pages(self, kind: str, namespace: str | None, selector: str = ""):
        self.lists.append((kind, namespace))
        for item in copy.deepcopy(self.objects[kind]):
            yield [item], self.version


async def test_a_list_by_pages_is_put_page_by_page_and_drops_only_what_no_page_held() -> None:
    lister = Paged()
    routes = [obj(n, "5") | {"kind": SHADOWROUTE} for n in ("web", "api", "shop")]
    lister.objects[SHADOWROUTE] = routes
    told: list[tuple] = []
    feed = Feed(
        lister, Store(), (SHADOWROUTE,), {},  # type: ignore[arg-type]
        on_gone=lambda *a: told.append(a), quiet=0.05,
    )  # fmt: skip
    feed.start()
    await feed.wait((SHADOWROUTE,))
    assert feed.store.size() == {SHADOWROUTE: 3}
    lister.objects[SHADOWROUTE] = routes[:2]  # "shop" deleted while kopf's watch was down
    lister.version = "110"
    feed.observe(SHADOWROUTE, None, routes[0])
    await wait_until(lambda: told, "the deletion in the gap noticed")
    assert told == [(SHADOWROUTE, (NS, "shop"), NAME)]
    assert feed.store.size() == {SHADOWROUTE: 2}
    await feed.stop()


class Failing(Lister):
    def __init__(self, errors: list[BaseException]) -> None:
        super().__init__()
        self.errors = errors

    async def list_kind(self, kind: str, namespace: str | None, selector: str = ""):
        if self.errors:
            self.lists.append((kind, namespace))
            raise self.errors.pop(0)
        return await super().list_kind(kind, namespace, selector)


async def test_a_kind_it_may_not_list_is_known_as_empty_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lister = Failing([ApiError(status=403, reason="Forbidden")])
    feed = Feed(lister, Store(), ("HTTPRoute",), SELECTORS)  # type: ignore[arg-type]
    feed.start()
    await asyncio.wait_for(feed.wait(("HTTPRoute",)), 5)
    assert feed.store.get("HTTPRoute", NS, "web") is None and len(lister.lists) == 1
    await feed.stop()


async def test_a_list_without_an_answer_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from shadowroute.kube import feed as feed_module

    monkeypatch.setattr(feed_module, "RETRY_SECONDS", (0.01,))
    lister = Failing([ConnectionRefusedError(), ApiError(status=500, reason="Internal")])
    lister.objects["Service"] = [obj("web", "5")]
    feed = Feed(lister, Store(), ("Service",), SELECTORS)  # type: ignore[arg-type]
    feed.start()
    await asyncio.wait_for(feed.wait(("Service",)), 5)
    assert len(lister.lists) == 3 and feed.store.get("Service", NS, "web") is not None
    await feed.stop()


# ---------------------------------------------------------------- zero reads at rest


class ApiServer(Kube):
    """The real Kube facade (its read and write counters) over an in-memory API server
    at the level of HTTP requests: GET of an object or a collection (label selector),
    server-side apply, status apply, DELETE, POST of Events."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(Endpoint(server="http://127.0.0.1:1"))
        self.rv = 100
        route = {
            "apiVersion": "shadowroute.io/v1alpha1",
            "kind": SHADOWROUTE,
            "metadata": {"name": NAME, "namespace": NS, "uid": UID, "generation": 1},
            "spec": spec,
        }
        self.objects: dict[str, dict[str, Any]] = {}
        self._store(kube_client.resource_path(route), route)
        self.custom = SimpleNamespace(get_namespaced_custom_object=self._get_route)

    def _store(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        body["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[path] = body
        return copy.deepcopy(body)

    def _get_route(self, group, version, namespace, plural, name):
        return copy.deepcopy(
            self.objects[f"/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}"]
        )

    def call(self, method: str, path: str, **kw: Any) -> Any:
        if method == "GET":
            if path in self.objects:
                return copy.deepcopy(self.objects[path])
            if not kw.get("query"):  # an object's path
                exc = ApiError(status=404, reason="Not Found")
                exc.body = json.dumps({"reason": "NotFound", "details": {"name": path}})
                raise exc
            wanted = dict(
                p.split("=")
                for p in dict(kw.get("query") or []).get("labelSelector", "").split(",")
                if p
            )
            items = [
                copy.deepcopy(o) for p, o in self.objects.items()
                if p.rsplit("/", 1)[0] == path
                and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
            ]  # fmt: skip
            return {"metadata": {"resourceVersion": str(self.rv)}, "items": items}
        if method == "PATCH" and path.endswith("/status"):
            route = self.objects[path.removesuffix("/status")]
            route["status"] = copy.deepcopy(kw["body"]["status"])
            return self._store(path.removesuffix("/status"), route)
        if method == "PATCH":
            stored = copy.deepcopy(self.objects.get(path) or {})
            stored.update(copy.deepcopy(kw["body"]))
            stored["metadata"] = {**(self.objects.get(path) or {}).get("metadata", {}),
                                  **kw["body"]["metadata"]}  # fmt: skip
            stored["metadata"].setdefault("uid", f"uid-{path}")
            return self._store(path, stored)
        if method == "DELETE":
            self.objects.pop(path, None)
            return {}
        if method == "POST":
            return kw["body"]
        raise ApiError(status=405)


async def at_rest(kube: ApiServer, feed: Feed | None) -> None:
    for _ in range(5):
        if (await reconcile(kube, NS, NAME, feed=feed)).writes == 0:
            return
    raise AssertionError("the route never came to rest")


@pytest.mark.parametrize("provider", ["gatewayapi", "none"])
async def test_a_reconcile_at_rest_reads_nothing(provider: str) -> None:
    kube = ApiServer(spec_raw(provider))
    feed = Feed(kube, Store(), (SHADOWROUTE, *CHILDREN), SELECTORS, namespaces=[NS])
    feed.start()
    await feed.wait((SHADOWROUTE, *CHILDREN))
    await at_rest(kube, feed)  # its own writes went into the index (write-through)
    reads, writes = kube_client.reads.total, kube_client.writes.total
    outcome = await reconcile(kube, NS, NAME, feed=feed)
    assert outcome.writes == 0 and kube_client.writes.total == writes
    assert kube_client.reads.total == reads, kube_client.reads.by_kind
    await feed.stop()
    await kube.close()


async def test_without_the_index_a_reconcile_reads_the_route_and_lists_its_children() -> None:
    """What tools (and the reconcile before the index) do: one GET and one LIST a kind."""
    kube = ApiServer(spec_raw("gatewayapi"))
    await at_rest(kube, None)
    before = copy.copy(kube_client.reads.by_kind)
    await reconcile(kube, NS, NAME)
    after = kube_client.reads.by_kind
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == {
        SHADOWROUTE: 1,
        "Deployment": 1,
        "Service": 1,
        "HTTPRoute": 1,
    }
    await kube.close()
