"""Every example under examples/ applied as it is to the real API server: the
ShadowRoute becomes Ready and its provider's route objects exist as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .conftest import KubectlFn, OperatorProcess, get_json
from .traffic_support import Route, absent, stable, wait_for

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "gatewayapi.yaml": [("HTTPRoute", "checkout")],
    "gatewayapi-your-route.yaml": [("HTTPRoute", "storefront")],
    "nginx.yaml": [("Ingress", "catalog"), ("Ingress", "catalog-canary")],
    "istio.yaml": [("VirtualService", "payments")],
    "none.yaml": [],
    "canary-basic.yaml": [],
}


def test_the_provider_examples_exist() -> None:
    assert set(EXPECTED) <= {p.name for p in EXAMPLES.glob("*.yaml")}


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_example_applies_and_becomes_ready(
    example: str, kubectl: KubectlFn, namespace: str, operator: OperatorProcess
) -> None:
    path = EXAMPLES / example
    kubectl("apply", "--validate=strict", "-n", namespace, "-f", str(path))
    (sr,) = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "ShadowRoute"]
    r = Route(kubectl, namespace, sr)
    r.wait("Stable", stable, timeout=90)
    kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "--timeout=60s", f"shadowroute/{r.name}"
    )
    for kind, name in EXPECTED[example]:
        wait_for(lambda k=kind, n=name: not absent(kubectl, namespace, k, n), 30, what=name)
    if example == "gatewayapi-your-route.yaml":
        # At rest the operator has nothing to change in your route: it never wrote it.
        route = get_json(
            kubectl, "httproute", "storefront", "-n", namespace, "--show-managed-fields"
        )
        managers = {m["manager"] for m in route["metadata"]["managedFields"]}
        assert "shadowroute-operator" not in managers
