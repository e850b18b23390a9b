"""Which desired objects need a write: pure, so "no change, no write" is testable.

Each object we apply carries a hash of what we applied (an annotation). An object
whose live hash matches needs no write, unless it was changed behind our back where
that matters: a Deployment's replica count, and anything we set on a Service or a
route (a hand-edited weight or selector would send traffic where we did not intend).
A Deployment whose hash differs but which already holds everything we want, at the
same revision, needs none either (`holds`).
Pod templates are not compared field by field: the API server normalizes them
(quantities, defaults), so that check would write forever.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from ..names import REVISION_LABEL

APPLIED_HASH = "shadowroute.io/applied-hash"


def with_applied_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of obj annotated with the hash of its content."""
    out = copy.deepcopy(obj)
    out["metadata"].setdefault("annotations", {})[APPLIED_HASH] = content_hash(obj)
    return out


def content_hash(obj: dict[str, Any]) -> str:
    clean = copy.deepcopy(obj)
    annotations = clean["metadata"].get("annotations")
    if annotations is not None:
        annotations.pop(APPLIED_HASH, None)
        if not annotations:  # the map we added is not content either
            del clean["metadata"]["annotations"]
    canonical = json.dumps(clean, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def needs_write(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """True when the live object is missing, was applied from other content, or drifted
    in the one field people change by hand most (a Deployment's replicas)."""
    if live is None:
        return True
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    applied = annotations.get(APPLIED_HASH)
    if applied != content_hash(desired):
        return applied is None or not (desired["kind"] == "Deployment" and holds(live, desired))
    if desired["kind"] == "Deployment":
        return (live.get("spec") or {}).get("replicas") != desired["spec"]["replicas"]
    return not contains(live, _content(desired))


def _content(desired: dict[str, Any]) -> dict[str, Any]:
    """What must be in the live object: list answers leave out each item's apiVersion
    and kind; the rest must be there."""
    return {k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}


def holds(live: dict[str, Any], desired: dict[str, Any]) -> bool:
    """A Deployment we applied from other content already holds all we want, with the
    same revision: the template of a revision the primary keeps running (a rollout's
    start, a rollback) is read back from the live Deployment, server defaults and all,
    so it hashes apart from the spec's template it was made from. Not written again:
    a Deployment's annotation change bumps its generation, and until the controller
    has seen it the primary reads as unavailable (Available=False in mid-rollout)."""
    live_template = (live.get("spec") or {}).get("template") or {}
    live_revision = ((live_template.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL)
    want_revision = desired["spec"]["template"]["metadata"]["labels"].get(REVISION_LABEL)
    if live_revision != want_revision:
        return False
    return contains(live, _content(desired))


def contains(live: Any, desired: Any, exact: bool = False) -> bool:
    """True when every value of desired is in live. Maps may hold more keys (server
    defaults, other managers' fields) except a Service's selector, where one more key
    would change which pods get traffic; lists match item by item; an empty value we
    send matches an absent one (the server drops those)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return live is None and not desired
        if exact and live.keys() != desired.keys():
            return False
        return all(contains(live.get(k), v, exact=k == "selector") for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list):
            return live is None and not desired
        return len(live) == len(desired) and all(map(contains, live, desired))
    return live == desired


def index_by_name(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs}


def planned_write(
    desired: dict[str, Any], live: dict[str, Any] | None
) -> tuple[dict[str, Any], bool] | None:
    """The server-side apply a reconcile makes for one desired child, as (body, force),
    or None when it needs no write. The reconciler applies it and `kubectl shadowroute
    plan` dry-runs it, so both send the API server the same thing. A child that does
    not exist yet is created without force: fields another manager owns are then a
    conflict rather than taken over."""
    if not needs_write(desired, live):
        return None
    return with_applied_hash(desired), live is not None
