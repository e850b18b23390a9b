"""`.spec.service.ports` is a list-map keyed by port and protocol (issue 9, defect 8):
against the real API server, two field managers each own their own port of one
ShadowRoute, and an apply that leaves the defaulted protocol out round-trips."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from .conftest import KubectlFn, get_json

pytestmark = pytest.mark.e2e

GITOPS = {
    "apiVersion": "shadowroute.io/v1alpha1",
    "kind": "ShadowRoute",
    "metadata": {"name": "shop"},
    "spec": {
        "template": {"spec": {"containers": [{"name": "app", "image": "web:1"}]}},
        # No protocol: the API server defaults it to TCP, a key of the entry.
        "service": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        "strategy": {"canary": {"steps": [{"weight": 50}]}},
    },
}
MESH_TEAM = {
    "apiVersion": "shadowroute.io/v1alpha1",
    "kind": "ShadowRoute",
    "metadata": {"name": "shop"},
    "spec": {"service": {"ports": [{"name": "metrics", "port": 9090, "protocol": "TCP"}]}},
}


def apply(kubectl: KubectlFn, namespace: str, body: dict[str, Any], manager: str):
    return kubectl(
        "apply", "--server-side", f"--field-manager={manager}", "-n", namespace,
        "-f", "-", input=yaml.safe_dump(body), check=False,
    )  # fmt: skip


def ports_by_manager(stored: dict[str, Any]) -> dict[str, set[str]]:
    """Which port entries each field manager owns, as the API server records it."""
    out: dict[str, set[str]] = {}
    for entry in stored["metadata"]["managedFields"]:
        owned = entry.get("fieldsV1", {}).get("f:spec", {}).get("f:service", {}).get("f:ports", {})
        keys = {k for k in owned if k.startswith("k:")}
        if owned:
            out[entry["manager"]] = keys
    return out


def test_two_managers_each_own_a_port(
    kubectl: KubectlFn, namespace: str, crds_installed: None
) -> None:
    first = apply(kubectl, namespace, GITOPS, "gitops")
    assert first.returncode == 0, first.stderr

    second = apply(kubectl, namespace, MESH_TEAM, "mesh-team")
    assert second.returncode == 0, f"a second manager could not add its port:\n{second.stderr}"
    stored = get_json(kubectl, "shadowroute/shop", "-n", namespace, "--show-managed-fields")
    ports = stored["spec"]["service"]["ports"]
    assert {(p["port"], p["protocol"]) for p in ports} == {(80, "TCP"), (9090, "TCP")}
    owners = ports_by_manager(stored)
    assert owners["gitops"] == {'k:{"port":80,"protocol":"TCP"}'}
    assert owners["mesh-team"] == {'k:{"port":9090,"protocol":"TCP"}'}

    # GitOps applies its own manifest again (protocol still left out): no conflict, the
    # defaulted entry is the one it owns, and the other team's port stays.
    again = apply(kubectl, namespace, copy.deepcopy(GITOPS), "gitops")
    assert again.returncode == 0, again.stderr
    after = get_json(kubectl, "shadowroute/shop", "-n", namespace)
    assert after["spec"]["service"]["ports"] == ports
    # The spec is unchanged (its generation says so); the status may move meanwhile, as
    # the session's operator reconciles the route.
    assert after["metadata"]["generation"] == stored["metadata"]["generation"]
    assert (
        ports_by_manager(
            get_json(kubectl, "shadowroute/shop", "-n", namespace, "--show-managed-fields")
        )
        == owners
    )

    # Giving up an entry removes only that entry.
    mine = copy.deepcopy(MESH_TEAM)
    mine["spec"]["service"]["ports"] = []
    gone = apply(kubectl, namespace, mine, "mesh-team")
    assert gone.returncode == 0, gone.stderr
    final = get_json(kubectl, "shadowroute/shop", "-n", namespace)
    assert [(p["name"], p["port"]) for p in final["spec"]["service"]["ports"]] == [("http", 80)]
