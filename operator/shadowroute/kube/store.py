"""What the operator knows of the ShadowRoutes and of the objects with our labels, as
the watches report them, so that a reconcile reads nothing from the API server.

Pure bookkeeping, no I/O (the watches and LISTs that feed it are in kube/feed.py). The
rules:

- an object is kept by kind, namespace and name; a child (an object with our
  `shadowroute.io/name` label) is also found by that label, look-alikes included
  (our labels, another owner): the reconcile tells them apart, as before;
- an older body never replaces a newer one: resourceVersions are compared as integers
  when both parse (etcd's do), else the later arrival wins;
- a deletion leaves a tombstone with the deletion's resourceVersion, so a LIST answered
  just before the deletion does not bring the object back; a later LIST clears it;
- after a LIST, what the store holds in the LIST's scope and the LIST lacks is gone,
  unless the store's copy is newer than the LIST (it arrived by a watch meanwhile);
- each body is kept as compact JSON, without `metadata.managedFields` (kept only for
  an object no one controls: the look-alike report names who wrote it) and the
  `kubectl.kubernetes.io/last-applied-configuration` annotation, compressed with zlib
  against a dictionary: the first body of its kind (objects of a kind share most of
  their text: keys, labels, defaults), so a route's six objects take about 1 KiB
  instead of 9 (bench/store_memory.py); decoded on use, so every reader gets its own
  copy.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from ..names import NAME_LABEL

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
WBITS, MEM_LEVEL = 12, 4
"""A 4 KiB window and small state: a body is a few KiB, and a compressor set up per
write costs a third of the default's."""
ZDICT_MAX = 1 << WBITS  # a longer dictionary is not used past the window

Key = tuple[str, str]
"""(namespace, name)"""


def not_older(new: str | None, old: str | None) -> bool:
    """Whether a body of resourceVersion `new` may replace one of `old`."""
    try:
        return int(new or "") >= int(old or "")
    except ValueError:
        return True  # not comparable: the later arrival wins


def compact(body: dict[str, Any]) -> bytes:
    """The body as it is kept: compact JSON, without what no reader needs."""
    meta = dict(body.get("metadata") or {})
    controlled = any(r.get("controller") for r in meta.get("ownerReferences") or [])
    if controlled:
        meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if annotations and LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    slim = {**body, "metadata": meta}
    return json.dumps(slim, separators=(",", ":"), ensure_ascii=False).encode()


class _Entry:
    __slots__ = ("data", "owner", "rv")

    def __init__(self, rv: str | None, owner: str | None, data: bytes) -> None:
        self.rv, self.owner, self.data = rv, owner, data


class KindStore:
    """The objects of one kind."""

    def __init__(self) -> None:
        self.objects: dict[Key, _Entry] = {}
        self.by_owner: dict[Key, set[str]] = {}
        """(namespace, owner) -> names of the objects with that owner label"""
        self.tombstones: dict[Key, str | None] = {}
        self.zdict: bytes | None = None
        """The compression dictionary: the first body kept (kept for good: it decodes)."""

    def _encode(self, body: dict[str, Any]) -> bytes:
        text = compact(body)
        if self.zdict is None:
            self.zdict = text[:ZDICT_MAX]
        packer = zlib.compressobj(1, zlib.DEFLATED, WBITS, MEM_LEVEL, zdict=self.zdict)
        return packer.compress(text) + packer.flush()

    def _decode(self, data: bytes) -> dict[str, Any]:
        assert self.zdict is not None
        return json.loads(zlib.decompressobj(WBITS, zdict=self.zdict).decompress(data))

    def put(self, body: dict[str, Any]) -> bool:
        """Keep this body unless what is kept (or was deleted) is newer; whether kept."""
        meta = body.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        rv = meta.get("resourceVersion")
        old = self.objects.get(key)
        if old is not None and not not_older(rv, old.rv):
            return False
        if key in self.tombstones:
            try:
                if int(rv or "") <= int(self.tombstones[key] or ""):
                    return False  # deleted after this version
            except ValueError:
                pass  # not comparable: the later arrival wins
            del self.tombstones[key]
        owner = (meta.get("labels") or {}).get(NAME_LABEL)
        if old is not None and old.owner != owner:
            self._unindex(key, old.owner)
        self.objects[key] = _Entry(rv, owner, self._encode(body))
        if owner:
            self.by_owner.setdefault((key[0], owner), set()).add(key[1])
        return True

    def remove(self, body: dict[str, Any]) -> _Entry | None:
        """The object was deleted (as of the body's resourceVersion)."""
        meta = body.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        rv = meta.get("resourceVersion")
        old = self.objects.get(key)
        if old is not None and not not_older(rv, old.rv):
            return None  # a deletion older than what is kept (re-created since)
        self.tombstones[key] = rv
        return self._drop(key)

    def version(self, namespace: str, name: str) -> str | None:
        """The resourceVersion kept for this object (None: none kept)."""
        entry = self.objects.get((namespace, name))
        return entry.rv if entry else None

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        entry = self.objects.get((namespace, name))
        return self._decode(entry.data) if entry else None

    def owned(self, namespace: str, owner: str) -> list[dict[str, Any]]:
        names = self.by_owner.get((namespace, owner)) or ()
        return [self._decode(self.objects[(namespace, n)].data) for n in sorted(names)]

    def relisted(
        self, items: Iterable[dict[str, Any]], list_rv: str | None, in_scope: Callable[[str], bool]
    ) -> list[tuple[Key, str | None]]:
        """A LIST answered at `list_rv` with `items`, covering the namespaces `in_scope`
        says: keep what it holds; drop what it lacks unless kept from a later watch
        event. The objects dropped: their keys and owner labels."""
        return self.sweep(self.put_listed(items, in_scope), list_rv, in_scope)

    def put_listed(
        self, items: Iterable[dict[str, Any]], in_scope: Callable[[str], bool]
    ) -> set[Key]:
        """A LIST's items (one page of it): keep those `in_scope` takes; their keys, for
        `sweep` once the whole LIST is in."""
        listed = set()
        for body in items:
            meta = body.get("metadata") or {}
            if not in_scope(meta.get("namespace") or ""):
                continue
            listed.add((meta.get("namespace") or "", meta.get("name") or ""))
            self.put(body)
        return listed

    def sweep(
        self, listed: set[Key], list_rv: str | None, in_scope: Callable[[str], bool]
    ) -> list[tuple[Key, str | None]]:
        """The end of a LIST whose items (`listed`) were put as they came: drop what it
        lacks unless kept from a later watch event; the objects dropped."""
        gone = [
            (key, entry.owner)
            for key, entry in self.objects.items()
            if key not in listed and in_scope(key[0]) and not _newer(entry.rv, list_rv)
        ]
        for key, _ in gone:
            self._drop(key)
        for key in [k for k, rv in self.tombstones.items() if not _newer(rv, list_rv)]:
            del self.tombstones[key]
        return gone

    def _drop(self, key: Key) -> _Entry | None:
        entry = self.objects.pop(key, None)
        if entry is not None:
            self._unindex(key, entry.owner)
        return entry

    def _unindex(self, key: Key, owner: str | None) -> None:
        if not owner:
            return
        names = self.by_owner.get((key[0], owner))
        if names is not None:
            names.discard(key[1])
            if not names:
                del self.by_owner[(key[0], owner)]


def _newer(rv: str | None, than: str | None) -> bool:
    """Strictly newer, when both parse; not comparable counts as not newer."""
    try:
        return int(rv or "") > int(than or "")
    except ValueError:
        return False


class Store:
    """Every kind the operator watches, by kind name (`ShadowRoute`, `Deployment`, ...)."""

    def __init__(self) -> None:
        self.kinds: dict[str, KindStore] = {}

    def kind(self, kind: str) -> KindStore:
        found = self.kinds.get(kind)
        if found is None:
            found = self.kinds[kind] = KindStore()
        return found

    def put(self, body: dict[str, Any] | None) -> None:
        """A body we read or wrote (write-through: the API server's answer to our apply)."""
        if body and body.get("kind") and body.get("metadata"):
            self.kind(body["kind"]).put(body)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kind(kind).get(namespace, name)

    def children(
        self, namespace: str, owner: str, kinds: Iterable[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """The objects with this owner label, of each kind (look-alikes included)."""
        return {kind: self.kind(kind).owned(namespace, owner) for kind in kinds}

    def size(self) -> dict[str, int]:
        return {kind: len(k.objects) for kind, k in self.kinds.items()}
