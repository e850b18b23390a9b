"""Turn live child objects into the plain values the state machine reads: pure."""

from __future__ import annotations

import copy
from typing import Any

from ..names import (
    COMPARE_ROLES,
    GATE_NAMES,
    GATE_PREFIX,
    LIVE_LABEL,
    NAME_LABEL,
    REVISION_LABEL,
    ROLE_LABEL,
    ROLES,
    child_labels,
    child_name,
)
from .observe import Gates, Workload


def workload(dep: dict[str, Any] | None) -> Workload | None:
    """Ready means rolled out: the controller has seen this spec, every replica runs
    the latest template and is available, and no old replica is left."""
    if dep is None:
        return None
    spec, status, meta = dep.get("spec") or {}, dep.get("status") or {}, dep["metadata"]
    want = int(spec.get("replicas", 1))
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    seen = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    ready = (
        seen
        and int(status.get("updatedReplicas") or 0) == want
        and int(status.get("availableReplicas") or 0) >= want
        and int(status.get("replicas") or 0) == want
    )
    return Workload(revision=labels.get(REVISION_LABEL, ""), replicas=want, ready=ready)


def workloads(owner: str, deployments: list[dict[str, Any]]) -> dict[str, Workload | None]:
    by_name = {d["metadata"]["name"]: d for d in deployments}
    return {
        role: workload(by_name.get(child_name(owner, role))) for role in (*ROLES, *COMPARE_ROLES)
    }


def user_template(dep: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The user's pod template inside a child Deployment (our labels removed) and its
    revision label: how an older revision's template is found again."""
    template = copy.deepcopy((dep.get("spec") or {}).get("template") or {})
    meta = template.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    revision = labels.get(REVISION_LABEL)
    if not revision:
        return None
    ours = set(child_labels("", "x", "x")) | {NAME_LABEL, ROLE_LABEL, REVISION_LABEL, LIVE_LABEL}
    for key in ours:
        labels.pop(key, None)
    if labels:
        meta["labels"] = labels
    else:
        meta.pop("labels", None)
    template["metadata"] = meta
    return revision, template


def gates(annotations: dict[str, str] | None) -> Gates:
    annotations = annotations or {}
    return Gates(**{g: annotations.get(GATE_PREFIX + g, "") for g in GATE_NAMES})
