"""Which desired objects need a write: pure, so "no change, no write" is testable.

Each object we apply carries a hash of what we applied (an annotation). An object
whose live hash matches, and whose replica count was not changed behind our back,
needs no write at all.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

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
    if annotations.get(APPLIED_HASH) != content_hash(desired):
        return True
    if desired["kind"] == "Deployment":
        return (live.get("spec") or {}).get("replicas") != desired["spec"]["replicas"]
    return False


def index_by_name(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs}
