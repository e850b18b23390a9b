"""The desired Deployments and Services of a ShadowRoute: pure functions of its spec,
its status and the pod templates of the revisions that status names.

Which revision each Deployment runs is decided by the state machine and recorded in
status (`primaryRevision`, `canaryRevision`); the template of the desired revision is
`spec.template`, an older one is read back from the live Deployment that runs it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ..api.models import ShadowRouteSpec, ShadowRouteStatus
from ..rollout.machine import (
    PROGRESSING,
    PROMOTING,
    SHADOWING,
    SUCCEEDED,
    canary_replicas,
    shadow_replicas,
)

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "shadowroute"
NAME_LABEL = "shadowroute.io/name"
ROLE_LABEL = "shadowroute.io/role"
REVISION_LABEL = "shadowroute.io/revision"
LIVE_LABEL = "shadowroute.io/live"  # primary and canary pods: what the entry Service may pick
PRIMARY, CANARY, SHADOW = "primary", "canary", "shadow"
ROLES = (PRIMARY, CANARY, SHADOW)


@dataclass(frozen=True)
class Owner:
    """The ShadowRoute that owns every child (garbage collection, and our watch)."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def child_name(owner_name: str, role: str | None) -> str:
    return owner_name if role is None else f"{owner_name}-{role}"


def selector(owner_name: str, role: str) -> dict[str, str]:
    return {NAME_LABEL: owner_name, ROLE_LABEL: role}


def _metadata(owner: Owner, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner.reference()],
    }


def child_labels(owner_name: str, role: str | None, revision: str | None = None) -> dict[str, str]:
    labels = {MANAGED_BY: MANAGER, NAME_LABEL: owner_name}
    if role:
        labels[ROLE_LABEL] = role
    if revision:
        labels[REVISION_LABEL] = revision
    return labels


def replicas_for(role: str, spec: ShadowRouteSpec, status: ShadowRouteStatus) -> int:
    """How many pods each role runs in the current stage. Primary always runs the full
    count, so putting all traffic back on it never waits for pods."""
    stage = status.stage
    if role == PRIMARY:
        return spec.replicas
    if role == SHADOW:
        shadow = spec.strategy.shadow
        if stage == SHADOWING and shadow is not None:
            return shadow_replicas(spec.replicas, shadow.mirror_percent)
        return 0
    # canary
    if stage in (PROMOTING, SUCCEEDED) and status.canary_revision:
        return spec.replicas
    if stage == PROGRESSING and status.canary_revision:
        canary = spec.strategy.canary
        if canary is None:  # blue/green: the preview runs at full scale
            return spec.replicas
        step = canary.steps[min(status.current_step, len(canary.steps) - 1)]
        return canary_replicas(spec.replicas, step.weight)
    return 0


def revision_for(role: str, status: ShadowRouteStatus, desired: str) -> str:
    if role == PRIMARY:
        return status.primary_revision or desired
    if role == CANARY:
        return status.canary_revision or desired
    return desired


def deployment(
    owner: Owner,
    role: str,
    revision: str,
    template: dict[str, Any],
    replicas: int,
) -> dict[str, Any]:
    """One child Deployment. The user's pod template, plus our labels on the pods; the
    selector is by role only, so it never changes (selectors are immutable)."""
    name = child_name(owner.name, role)
    pod = copy.deepcopy(template)
    meta = pod.setdefault("metadata", {})
    pod_labels = dict(meta.get("labels") or {})
    pod_labels.update(child_labels(owner.name, role, revision))
    if role != SHADOW:
        pod_labels[LIVE_LABEL] = "true"
    meta["labels"] = pod_labels
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, name, child_labels(owner.name, role, revision)),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(owner.name, role)},
            "template": pod,
        },
    }


def entry_selector(owner_name: str, status: ShadowRouteStatus) -> dict[str, str]:
    """What the stable entry Service `<name>` selects: primary, or canary once it takes
    all traffic, or both (weight by replica ratio) in between. A selector change is
    instant: no pod has to start for traffic to move back."""
    if status.canary_weight >= 100:
        return selector(owner_name, CANARY)
    if status.canary_weight > 0:
        return {NAME_LABEL: owner_name, LIVE_LABEL: "true"}
    return selector(owner_name, PRIMARY)


def service(
    owner: Owner, spec: ShadowRouteSpec, role: str | None, pod_selector: dict[str, str]
) -> dict[str, Any]:
    ports = []
    for p in spec.service.ports:
        port: dict[str, Any] = {
            "port": p.port,
            "targetPort": p.target_port if p.target_port is not None else p.port,
            "protocol": str(p.protocol),
        }
        if p.name:
            port["name"] = p.name
        if p.app_protocol:
            port["appProtocol"] = p.app_protocol
        ports.append(port)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, child_name(owner.name, role), child_labels(owner.name, role)),
        "spec": {"type": "ClusterIP", "selector": pod_selector, "ports": ports},
    }


def services(
    owner: Owner, spec: ShadowRouteSpec, status: ShadowRouteStatus
) -> list[dict[str, Any]]:
    out = [service(owner, spec, None, entry_selector(owner.name, status))]
    out += [service(owner, spec, role, selector(owner.name, role)) for role in ROLES]
    return out


def deployments(
    owner: Owner,
    spec: ShadowRouteSpec,
    status: ShadowRouteStatus,
    desired: str,
    templates: dict[str, dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The three Deployments, and the roles that could not be rendered because the
    template of their revision is unknown (they are left as they are)."""
    out, missing = [], []
    for role in ROLES:
        revision = revision_for(role, status, desired)
        template = templates.get(revision)
        if template is None:
            missing.append(role)
            continue
        out.append(deployment(owner, role, revision, template, replicas_for(role, spec, status)))
    return out, missing
