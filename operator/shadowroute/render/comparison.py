"""The children of a shadow comparison: pure functions of the spec, the status and the
stable revision's pod template.

- `<name>-baseline`: the stable revision's template on `baselineReplicas` pods, and a
  Service like the others; what the shadow's answers are compared with (unless
  `against: primary`). Not live: the entry Service never selects it.
- `<name>-comparator`: the comparator (the operator's image, entry point
  `shadowroute-compare`), and a Service whose route port is the mirror target and
  whose `admin` port serves /metrics and /summary (what `kubectl shadowroute diff`
  reads through the API server's service proxy).

Both exist for as long as the shadow stage compares, and run pods only while a
revision shadows (`stages.replicas_for`).
"""

from __future__ import annotations

import copy
import os
from typing import Any

from .. import __version__
from ..api.duration import parse_duration
from ..api.models import CompareAgainst, ShadowCompare, ShadowRouteSpec, ShadowRouteStatus
from ..names import (
    BASELINE,
    COMPARATOR,
    PRIMARY,
    SHADOW,
    Owner,
    child_labels,
    child_metadata,
    child_name,
    selector,
)
from ..stages import replicas_for
from .workloads import deployment, route_port, service, stale_children

COMPARATOR_IMAGE_ENV = "SHADOWROUTE_COMPARATOR_IMAGE"
DEFAULT_COMPARATOR_IMAGE = f"ghcr.io/shadowroute/shadowroute:{__version__}"
MIRROR_PORT = 8070
"""Where the comparator takes mirrored copies (any path)."""
ADMIN_PORT = 8071
"""Where it serves /metrics, /summary and /healthz: apart, so no app path collides."""
ADMIN_PORT_NAME = "admin"
COMPARATOR_UID = 65532
"""The conventional "nonroot" uid, as the operator's image and chart use."""


def comparator_image() -> str:
    """The operator's image (the chart sets it), which holds the comparator too."""
    return os.environ.get(COMPARATOR_IMAGE_ENV) or DEFAULT_COMPARATOR_IMAGE


def compare_spec(spec: ShadowRouteSpec) -> ShadowCompare | None:
    shadow = spec.strategy.shadow
    return shadow.compare if shadow is not None else None


def comparator_args(
    owner: Owner, spec: ShadowRouteSpec, compare: ShadowCompare, revision: str
) -> list[str]:
    port = route_port(spec)
    against = PRIMARY if compare.against == CompareAgainst.PRIMARY else BASELINE
    args = [
        f"--candidate=http://{child_name(owner.name, SHADOW)}:{port}",
        f"--baseline=http://{child_name(owner.name, against)}:{port}",
        f"--route={owner.name}",
        f"--revision={revision}",
        f"--listen-port={MIRROR_PORT}",
        f"--admin-port={ADMIN_PORT}",
        f"--timeout={parse_duration(compare.timeout):g}s",
        f"--max-mismatch-rate={compare.max_mismatch_rate:g}",
        f"--min-compared={compare.min_compared}",
    ]
    args += [f"--method={m}" for m in compare.methods]
    args += [f"--ignore-header={h}" for h in compare.ignore_headers]
    args += [f"--ignore-path={p}" for p in compare.ignore_paths]
    if not compare.compare_bodies:
        args.append("--no-bodies")
    return args


def comparator_template(
    owner: Owner, spec: ShadowRouteSpec, compare: ShadowCompare, revision: str, image: str
) -> dict[str, Any]:
    """Non-root, read-only root filesystem, no API token: it needs none of them."""
    return {
        "metadata": {
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(ADMIN_PORT),
                "prometheus.io/path": "/metrics",
            }
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": True,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": COMPARATOR_UID,
                "runAsGroup": COMPARATOR_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "comparator",
                    "image": image,
                    "command": ["shadowroute-compare"],
                    "args": comparator_args(owner, spec, compare, revision),
                    "ports": [
                        {"name": "mirror", "containerPort": MIRROR_PORT, "protocol": "TCP"},
                        {"name": ADMIN_PORT_NAME, "containerPort": ADMIN_PORT, "protocol": "TCP"},
                    ],
                    # Lenient: a comparator busy comparing answers slowly, and
                    # losing its endpoint would stop the copies altogether.
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": ADMIN_PORT_NAME},
                        "periodSeconds": 2,
                        "timeoutSeconds": 5,
                        "failureThreshold": 5,
                    },
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        # 64 comparisons in flight of up to 4 bodies of 1 MiB each.
                        "limits": {"memory": "512Mi"},
                    },
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def comparator_service(owner: Owner, spec: ShadowRouteSpec) -> dict[str, Any]:
    """The route port (what the mirror sends to) and the admin port."""
    port = route_port(spec)
    admin = ADMIN_PORT if port != ADMIN_PORT else ADMIN_PORT + 1
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(
            owner, child_name(owner.name, COMPARATOR), child_labels(owner.name, COMPARATOR)
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(owner.name, COMPARATOR),
            "ports": [
                {"name": "mirror", "port": port, "targetPort": MIRROR_PORT, "protocol": "TCP"},
                {
                    "name": ADMIN_PORT_NAME,
                    "port": admin,
                    "targetPort": ADMIN_PORT,
                    "protocol": "TCP",
                },
            ],
        },
    }


def comparison_children(
    owner: Owner,
    spec: ShadowRouteSpec,
    status: ShadowRouteStatus,
    desired: str,
    templates: dict[str, dict[str, Any]],
    image: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(Services, Deployments) of the comparison; none when the shadow stage does not
    compare. The baseline runs the stable revision; when its template is unknown (the
    primary Deployment is gone) it is left as it is."""
    compare = compare_spec(spec)
    if compare is None:
        return [], []
    revision = status.canary_revision or desired
    services = [
        service(owner, spec, BASELINE, selector(owner.name, BASELINE)),
        comparator_service(owner, spec),
    ]
    deployments = [
        deployment(
            owner,
            COMPARATOR,
            revision,
            comparator_template(owner, spec, compare, revision, image),
            replicas_for(COMPARATOR, spec, status),
        )
    ]
    stable = status.stable_revision or status.primary_revision or desired
    template = templates.get(stable)
    if template is not None:
        baseline = deployment(
            owner, BASELINE, stable, copy.deepcopy(template), replicas_for(BASELINE, spec, status)
        )
        deployments.insert(0, baseline)
    return services, deployments


def stale_comparison_children(
    owner: Owner,
    spec: ShadowRouteSpec,
    desired: list[dict[str, Any]],
    live: dict[str, dict[str, dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Live comparison children once the spec stopped comparing: they go. While it
    compares, nothing goes (a baseline whose template is unknown is left as it is).
    `live` holds only what this ShadowRoute controls."""
    if compare_spec(spec) is not None:
        return []
    return stale_children(
        {child_name(owner.name, r) for r in (BASELINE, COMPARATOR)}, desired, live
    )
