"""Autoscaling end to end: `kubectl scale` and a real HorizontalPodAutoscaler (the
kube-controller-manager's) on a ShadowRoute, reading a real metric: the request rate
the traffic simulator exports, scraped by the real Prometheus and served by
prometheus-adapter as the external metrics API. More load → the HPA writes the
ShadowRoute's scale subresource → the operator scales the primary, and during a
canary the canary gets its documented share (docs/migration.md, "Autoscaling")."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from .conftest import KubectlFn, OperatorProcess, wait_for
from .test_rollout import Route, route, stable

pytestmark = pytest.mark.e2e

PER_POD = 10  # requests per second one pod is meant to take
METRIC = "http_requests_per_second"


def scale(r: Route) -> dict[str, Any]:
    path = f"/apis/shadowroute.io/v1alpha1/namespaces/{r.ns}/shadowroutes/{r.name}/scale"
    return json.loads(r.kubectl("get", "--raw", path).stdout)


def load(r: Route, rps: int) -> None:
    r.kubectl(
        "annotate", "--overwrite", "-n", r.ns, f"shadowroute/{r.name}",
        f"sim.shadowroute.io/rps={rps}",
    )  # fmt: skip


def hpa(name: str) -> dict[str, Any]:
    """An HPA on the ShadowRoute: one pod per PER_POD requests per second of the whole
    service (primary and canary), scaled without stabilization so a test waits seconds."""
    services = [f"{name}-primary", f"{name}-canary"]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "shadowroute.io/v1alpha1",
                "kind": "ShadowRoute",
                "name": name,
            },
            "minReplicas": 1,
            "maxReplicas": 8,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": METRIC,
                            "selector": {
                                "matchExpressions": [
                                    {"key": "service", "operator": "In", "values": services}
                                ]
                            },
                        },
                        "target": {"type": "AverageValue", "averageValue": str(PER_POD)},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0},
                "scaleDown": {"stabilizationWindowSeconds": 0},
            },
        },
    }


@pytest.fixture
def autoscaled(kubectl: KubectlFn, namespace: str, operator: OperatorProcess, simulator) -> Route:
    body = route("web", steps=[{"weight": 50, "pause": {}}])  # held until promoted
    # Under an HPA the manifest leaves replicas out: applying it again must not undo
    # what the HPA set (the default, 1, applies only at creation).
    del body["spec"]["replicas"]
    body["metadata"]["annotations"] = {"sim.shadowroute.io/rps": str(PER_POD)}
    r = Route(kubectl, namespace, body)
    r.apply()
    r.wait("Stable", stable)
    return r


def test_kubectl_scale_scales_the_primary_and_the_scale_status_follows(autoscaled: Route) -> None:
    r = autoscaled
    r.kubectl("scale", "-n", r.ns, "shadowroute/web", "--replicas=3")
    wait_for(lambda: r.replicas("primary") == 3, what="primary at 3 replicas")
    got = wait_for(
        lambda: (s := scale(r))["status"].get("replicas") == 3 and s, what="scale status 3"
    )
    assert got["spec"]["replicas"] == 3
    assert got["status"]["selector"] == "shadowroute.io/name=web,shadowroute.io/role=primary"
    assert r.status()["phase"] == "Stable"  # a scale is no rollout


def test_an_hpa_on_the_shadowroute_follows_the_load_and_splits_a_canary(
    autoscaled: Route, kubectl: KubectlFn
) -> None:
    r = autoscaled
    kubectl("apply", "-n", r.ns, "-f", "-", input=json.dumps(hpa("web")))

    def hpa_status() -> dict[str, Any]:
        got = json.loads(kubectl("get", "hpa", "web", "-n", r.ns, "-o", "json").stdout)
        return got.get("status") or {}

    def metric_read() -> bool:
        return any(
            c["type"] == "ScalingActive" and c["status"] == "True"
            for c in hpa_status().get("conditions") or []
        )

    wait_for(metric_read, timeout=90, what="the HPA reading the external metric")

    load(r, 4 * PER_POD)
    wait_for(lambda: r.replicas("primary") == 4, timeout=90, what="primary scaled to 4")
    assert r.get()["spec"]["replicas"] == 4  # written by the HPA through the scale subresource

    # A canary at 50 %: the metric counts both versions, so the total stays put; the
    # primary keeps N and the canary runs ceil(N x 50 %).
    r.set_image("registry.example/app:2")
    r.wait("canary at 50 %", lambda s: s.get("canaryWeight") == 50)
    wait_for(lambda: r.replicas("canary") == 2, what="canary at ceil(4 x 50 %)")

    load(r, 6 * PER_POD)
    wait_for(lambda: r.replicas("primary") == 6, timeout=90, what="primary scaled to 6")
    want = math.ceil(6 * 50 / 100)
    wait_for(lambda: r.replicas("canary") == want, what=f"canary at {want}")
    assert r.status()["stage"] == "Progressing"  # scaling is no new revision

    # Less load: the HPA scales down, and the canary follows its share.
    load(r, 2 * PER_POD)
    wait_for(lambda: r.replicas("primary") == 2, timeout=90, what="primary scaled to 2")
    wait_for(lambda: r.replicas("canary") == 1, what="canary at ceil(2 x 50 %)")
