"""The migration guide's steps from a plain Deployment (docs/migration.md), run as
written on examples/migration/: the Service clients use has ready endpoints after
every step, the operator writes neither the user's Deployment nor their Service, and
a ShadowRoute named like that Service is refused with NameConflict, writing nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import KubectlFn, OperatorProcess, get_json, wait_for

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "migration"
MANAGER = "shadowroute-operator"


def ready_endpoints(kubectl: KubectlFn, ns: str, service: str) -> dict[str, str]:
    """Ready endpoint addresses of a Service, each with the pod behind it."""
    slices = get_json(
        kubectl, "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={service}"
    )["items"]
    out = {}
    for s in slices:
        for e in s.get("endpoints") or []:
            if (e.get("conditions") or {}).get("ready"):
                for a in e["addresses"]:
                    out[a] = (e.get("targetRef") or {}).get("name", "")
    return out


def managers(obj: dict[str, Any]) -> set[str]:
    return {f["manager"] for f in obj["metadata"].get("managedFields") or []}


def test_a_deployment_moves_under_a_shadowroute_without_a_gap(
    kubectl: KubectlFn, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace

    def apply(name: str) -> None:
        kubectl("apply", "-n", ns, "-f", str(EXAMPLES / name))

    def serving() -> dict[str, str]:
        got = ready_endpoints(kubectl, ns, "shop")
        assert got, "the Service shop has no ready endpoint"
        return got

    apply("before.yaml")
    wait_for(lambda: len(ready_endpoints(kubectl, ns, "shop")) == 2, what="2 old pods")

    # Step 1: the ShadowRoute of another name; its primary pods join the Service.
    apply("shadowroute.yaml")
    kubectl("wait", "-n", ns, "shadowroute/shop-sr", "--for=condition=Ready", "--timeout=120s")
    both = wait_for(lambda: len(s := serving()) == 4 and s, what="old and primary pods behind shop")
    assert sum(p.startswith("shop-sr-primary-") for p in both.values()) == 2

    # Step 2: the Service pinned to the primary: the old pods leave, the primary stays.
    apply("service-pinned.yaml")
    pinned = wait_for(lambda: len(s := serving()) == 2 and s, what="primary pods only")
    assert all(p.startswith("shop-sr-primary-") for p in pinned.values())

    # Step 3: the old Deployment goes; the Service keeps its endpoints.
    kubectl("delete", "deployment", "shop", "-n", ns, "--wait=true")
    wait_for(lambda: not get_json(kubectl, "pods", "-n", ns, "-l", "app=shop,!shadowroute.io/name")[
        "items"
    ], what="old pods gone")  # fmt: skip
    assert set(serving()) == set(pinned)

    # The operator never wrote the user's Service (nor their Deployment while it lived).
    assert MANAGER not in managers(get_json(kubectl, "service", "shop", "-n", ns))
    assert get_json(kubectl, "shadowroute", "shop-sr", "-n", ns)["status"]["phase"] == "Stable"


def test_a_shadowroute_named_like_your_service_writes_nothing(
    kubectl: KubectlFn, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "before.yaml"))
    route = (EXAMPLES / "shadowroute.yaml").read_text().replace("name: shop-sr", "name: shop")
    kubectl("apply", "-n", ns, "-f", "-", input=route)

    def degraded() -> dict[str, Any] | None:
        status = get_json(kubectl, "shadowroute", "shop", "-n", ns).get("status") or {}
        cond = next((c for c in status.get("conditions") or [] if c["type"] == "Degraded"), None)
        return cond if cond and cond["reason"] == "NameConflict" else None

    cond = wait_for(degraded, what="Degraded NameConflict")
    assert "shop" in cond["message"]
    service = get_json(kubectl, "service", "shop", "-n", ns)
    assert service["spec"]["selector"] == {"app": "shop"}
    assert MANAGER not in managers(service)
    assert MANAGER not in managers(get_json(kubectl, "deployment", "shop", "-n", ns))
    deps = get_json(kubectl, "deployments", "-n", ns, "-l", "shadowroute.io/name=shop")
    assert deps["items"] == []
