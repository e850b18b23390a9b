"""The desired Deployments and Services of a ShadowRoute: pure functions of its spec,
its status and the pod templates of the revisions that status names.

Which revision each Deployment runs is decided by the state machine and recorded in
status (`primaryRevision`, `canaryRevision`); the template of the desired revision is
`spec.template`, an older one is read back from the live Deployment that runs it.
"""

from __future__ import annotations

import copy
from typing import Any

from ..api.models import ShadowRouteSpec, ShadowRouteStatus
from ..names import (
    CANARY,
    LIVE_LABEL,
    NAME_LABEL,
    PRIMARY,
    ROLES,
    SHADOW,
    Owner,
    Stage,
    child_labels,
    child_metadata,
    child_name,
    selector,
)
from ..stages import replicas_for, serving


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
    if role in (PRIMARY, CANARY):  # what the entry Service may select
        pod_labels[LIVE_LABEL] = "true"
    meta["labels"] = pod_labels
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(owner, name, child_labels(owner.name, role, revision)),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(owner.name, role)},
            "template": pod,
        },
    }


def route_port(spec: ShadowRouteSpec) -> int:
    """The Service port routes send to: spec.traffic.port, else the first port."""
    return spec.traffic.port or spec.service.ports[0].port


def entry_selector(owner_name: str, status: ShadowRouteStatus) -> dict[str, str]:
    """What the stable entry Service `<name>` selects: primary, or canary once it takes
    all traffic, or both (weight by replica ratio) in between. A selector change is
    instant: no pod has to start for traffic to move back."""
    roles = serving(status)
    if len(roles) > 1:
        return {NAME_LABEL: owner_name, LIVE_LABEL: "true"}
    return selector(owner_name, roles[0])


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
        "metadata": child_metadata(
            owner, child_name(owner.name, role), child_labels(owner.name, role)
        ),
        "spec": {"type": "ClusterIP", "selector": pod_selector, "ports": ports},
    }


def has_shadow(spec: ShadowRouteSpec, status: ShadowRouteStatus) -> bool:
    """Whether a `-shadow` Deployment and Service can be of use: the spec has a shadow
    stage (provider none cannot mirror, so it never has one), or the status is still
    in it (a shadow stage removed mid-shadow; the next decision leaves it)."""
    return (
        spec.strategy.shadow is not None
        or status.stage == Stage.SHADOWING
        or status.mirror_percent > 0
    )


def roles(spec: ShadowRouteSpec, status: ShadowRouteStatus) -> tuple[str, ...]:
    """The roles with a Deployment and a Service: primary and canary, and the shadow
    where one can be of use."""
    return ROLES if has_shadow(spec, status) else tuple(r for r in ROLES if r != SHADOW)


def services(
    owner: Owner, spec: ShadowRouteSpec, status: ShadowRouteStatus
) -> list[dict[str, Any]]:
    out = [service(owner, spec, None, entry_selector(owner.name, status))]
    out += [service(owner, spec, role, selector(owner.name, role)) for role in roles(spec, status)]
    return out


def stale_children(
    names: set[str], desired: list[dict[str, Any]], live: dict[str, dict[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The live Deployments and Services of these names that are no longer desired.
    `live` holds only what this ShadowRoute controls, so nothing else ever goes."""
    wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
    out = []
    for kind, api_version in (("Deployment", "apps/v1"), ("Service", "v1")):
        for name, obj in (live.get(kind) or {}).items():
            if name in names and (kind, name) not in wanted:
                out.append({**obj, "apiVersion": api_version, "kind": kind})
    return out


def stale_shadow_children(
    owner: Owner,
    spec: ShadowRouteSpec,
    desired: list[dict[str, Any]],
    live: dict[str, dict[str, dict[str, Any]]],
) -> list[dict[str, Any]]:
    """The `-shadow` Deployment and Service this ShadowRoute created earlier, once the
    spec has no shadow stage and the decided status no longer renders them: they go."""
    if spec.strategy.shadow is not None:
        return []
    return stale_children({child_name(owner.name, SHADOW)}, desired, live)


def deployments(
    owner: Owner,
    spec: ShadowRouteSpec,
    status: ShadowRouteStatus,
    desired: str,
    templates: dict[str, dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The Deployments (primary, canary, and the shadow where one can be of use), and
    the roles that could not be rendered because the template of their revision is
    unknown (they are left as they are)."""
    out, missing = [], []
    for role in roles(spec, status):
        revision = revision_for(role, status, desired)
        template = templates.get(revision)
        if template is None:
            missing.append(role)
            continue
        out.append(deployment(owner, role, revision, template, replicas_for(role, spec, status)))
    return out, missing


def scale_status(owner_name: str, live: list[dict[str, Any]]) -> tuple[int, str]:
    """What the scale subresource reports (status.replicas, status.selector): the pods
    the primary Deployment has, as its controller last counted them, and the selector
    of the primary pods. spec.replicas is the primary's count (replicas_for), so an
    autoscaler compares it with the primary's pods; the canary's and the shadow's are
    derived from it and are not counted."""
    name = child_name(owner_name, PRIMARY)
    primary = next((d for d in live if d["metadata"].get("name") == name), None)
    replicas = int(((primary or {}).get("status") or {}).get("replicas") or 0)
    labels = selector(owner_name, PRIMARY)
    return replicas, ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
