"""A ShadowRoute stored before the duration bounds existed (issue 9, defect 4): etcd
keeps it as it was, so the operator must refuse it with a condition, never crash on it.
The CRD of before is the current one without the bounds' rules."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from shadowroute.api.crd import build_crd
from shadowroute.api.duration import DurationBounds

from .conftest import ROOT, KubectlFn, OperatorProcess, get_json, wait_for

pytestmark = pytest.mark.e2e


def without_duration_bounds(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: without_duration_bounds(v) for k, v in node.items()}
        rules = [
            r
            for r in out.get("x-kubernetes-validations", [])
            if DurationBounds.from_rule(r["rule"]) is None
        ]
        if "x-kubernetes-validations" in out:
            out["x-kubernetes-validations"] = rules
            if not rules:
                del out["x-kubernetes-validations"]
        return out
    if isinstance(node, list):
        return [without_duration_bounds(v) for v in node]
    return node


@pytest.fixture
def crd_without_bounds(kubectl: KubectlFn, crds_installed: None) -> Iterator[None]:
    old = without_duration_bounds(build_crd())
    assert old != build_crd()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump(old))
    try:
        yield
    finally:
        for crd in sorted((ROOT / "crds").glob("*.yaml")):
            kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))


def test_a_route_stored_before_the_bounds_is_invalid_spec(
    kubectl: KubectlFn, namespace: str, crd_without_bounds: None, operator: OperatorProcess
) -> None:
    body: dict[str, Any] = {
        "apiVersion": "shadowroute.io/v1alpha1",
        "kind": "ShadowRoute",
        "metadata": {"name": "ancient"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "app", "image": "web:1"}]}},
            "service": {"ports": [{"port": 80}]},
            "strategy": {"canary": {"steps": [{"weight": 50}]}},
            "progressDeadline": "99999999h",
        },
    }
    errors = operator.sum("shadowroute_reconcile_errors_total")

    def stored_then_bounded() -> None:
        kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
        # The bounds arrive (an upgrade of the CRD); the object stays as it was stored.
        for crd in sorted((ROOT / "crds").glob("*.yaml")):
            kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        # Validation ratcheting: the API server still takes a change elsewhere that
        # leaves the out-of-bounds field as it was, with a warning, so such a spec keeps
        # reaching the operator.
        again = copy.deepcopy(body)
        again["spec"]["keepWarm"] = "1m"
        updated = kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(again))
        assert "Warning: spec.progressDeadline" in updated.stderr
        assert "must be a duration between 1s and 8760h" in updated.stderr

    stored_then_bounded()

    def invalid_spec() -> dict[str, Any] | None:
        status = get_json(kubectl, "shadowroute/ancient", "-n", namespace).get("status") or {}
        for c in status.get("conditions") or []:
            if c["type"] == "Degraded" and c["reason"] == "InvalidSpec":
                return c
        return None

    condition = wait_for(invalid_spec, timeout=60, what="Degraded InvalidSpec")
    assert condition["status"] == "True"
    assert "spec.progressDeadline" in condition["message"]
    assert "must be a duration between 1s and 8760h" in condition["message"]
    events = json.loads(
        kubectl(
            "get", "events", "-n", namespace, "-o", "json",
            "--field-selector", "involvedObject.name=ancient",
        ).stdout
    )["items"]  # fmt: skip
    assert [e["reason"] for e in events] == ["InvalidSpec"]
    children = get_json(kubectl, "deployments", "-n", namespace)["items"]
    assert children == [], "nothing is created from a spec the operator refuses"
    assert operator.sum("shadowroute_reconcile_errors_total") == errors
