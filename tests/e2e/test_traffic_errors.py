"""Routes the operator cannot write, and routes it must remove, against the real API
server: a name taken by someone else's HTTPRoute, a route kind whose CRD is missing,
and a switch of provider."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from shadowroute.kube import client as kube_client
from shadowroute.reconciler import reconcile

from .conftest import Cluster, KubectlFn, OperatorProcess, get_json
from .traffic_support import (
    ROUTE_RESOURCES,
    Route,
    absent,
    live,
    make_sr_fixture,  # noqa: F401  (the make_sr fixture)
    sr_body,
    stable,
    wait_for,
)

pytestmark = pytest.mark.e2e
GATEWAY = {"provider": "gatewayapi", "gatewayAPI": {"parentRefs": [{"name": "public"}]}}


def degraded(status: dict) -> dict | None:
    return next(
        (
            c
            for c in status.get("conditions", [])
            if c["type"] == "Degraded" and c["status"] == "True"
        ),
        None,
    )


def events(kubectl: KubectlFn, namespace: str, reason: str) -> list[dict]:
    found = get_json(
        kubectl, "events.events.k8s.io", "-n", namespace, "--field-selector", f"reason={reason}"
    )
    return found["items"]


def test_someone_elses_route_of_that_name_is_a_conflict(
    kubectl: KubectlFn, namespace: str, operator: OperatorProcess
) -> None:
    theirs = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "clash"},
        "spec": {
            "parentRefs": [{"name": "other-gateway"}],
            "rules": [{"backendRefs": [{"name": "legacy", "port": 8080}]}],
        },
    }
    kubectl(
        "apply", "--server-side", "--field-manager=platform-team", "-n", namespace, "-f", "-",
        input=yaml.safe_dump(theirs),
    )  # fmt: skip
    r = Route(kubectl, namespace, sr_body("clash", GATEWAY))
    r.apply()

    s = r.wait("RouteConflict", lambda s: (d := degraded(s)) and d["reason"] == "RouteConflict")
    message = degraded(s)["message"]
    assert '"platform-team"' in message and ".spec.rules" in message, message
    assert message.startswith("HTTPRoute clash is not the operator's to write"), message
    assert events(kubectl, r.ns, "RouteConflict"), "a Warning Event says so too"
    kept = live(kubectl, r.ns, "HTTPRoute", "clash")
    assert kept["spec"]["parentRefs"][0]["name"] == "other-gateway", "never taken over"
    assert "ownerReferences" not in kept["metadata"]

    # Once the name is free, the operator creates its own route and recovers.
    kubectl("delete", "httproute", "clash", "-n", r.ns)
    s = r.wait("recovered", lambda s: stable(s) and degraded(s) is None, timeout=60)
    mine = live(kubectl, r.ns, "HTTPRoute", "clash")
    assert mine["metadata"]["ownerReferences"][0]["name"] == "clash"
    assert mine["spec"]["parentRefs"][0]["name"] == "public"


def test_switching_provider_removes_the_old_routes(make_sr, kubectl: KubectlFn) -> None:
    r = make_sr(sr_body("swap", {"provider": "nginx", "nginx": {"host": "swap.example.com"}}))
    r.wait("Stable", stable)
    wait_for(lambda: not absent(kubectl, r.ns, "Ingress", "swap-canary"), 30, what="Ingresses")

    r.body["spec"]["traffic"] = {"provider": "istio"}
    r.apply()
    wait_for(lambda: absent(kubectl, r.ns, "Ingress", "swap"), 30, what="stable Ingress gone")
    assert absent(kubectl, r.ns, "Ingress", "swap-canary")
    assert live(kubectl, r.ns, "VirtualService", "swap")["spec"]["hosts"] == ["swap"]

    r.body["spec"]["traffic"] = GATEWAY
    r.apply()
    wait_for(lambda: absent(kubectl, r.ns, "VirtualService", "swap"), 30, what="VS gone")
    assert live(kubectl, r.ns, "HTTPRoute", "swap")["spec"]["parentRefs"][0]["name"] == "public"

    r.body["spec"]["traffic"] = {"provider": "none"}
    r.apply()
    wait_for(lambda: absent(kubectl, r.ns, "HTTPRoute", "swap"), 30, what="HTTPRoute gone")
    assert degraded(r.status()) is None


def test_a_look_alike_route_is_never_deleted(make_sr, kubectl: KubectlFn) -> None:
    """Our labels on someone else's object do not make it ours: only the controller
    owner reference does."""
    r = make_sr(sr_body("twin", GATEWAY))
    r.wait("Stable", stable)
    lookalike = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "twin-extra",
            "labels": {
                "app.kubernetes.io/managed-by": "shadowroute",
                "shadowroute.io/name": "twin",
            },
        },
        "spec": {"defaultBackend": {"service": {"name": "x", "port": {"number": 80}}}},
    }
    kubectl("apply", "-n", r.ns, "-f", "-", input=yaml.safe_dump(lookalike))
    r.body["spec"]["traffic"]["gatewayAPI"]["hostnames"] = ["twin.example.com"]
    r.apply()
    wait_for(
        lambda: live(kubectl, r.ns, "HTTPRoute", "twin")["spec"].get("hostnames"),
        30,
        what="the route updated",
    )
    assert not absent(kubectl, r.ns, "Ingress", "twin-extra")


# --------------------------------------------------------------------------- CRD missing


def test_a_missing_route_kind_is_degraded_with_the_servers_answer(
    own_namespace: str, kubectl: KubectlFn, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cluster has the Gateway API CRDs, so the operator is pointed at a version
    that is not served: the real API server answers exactly as it does for a CRD that
    is not installed."""
    body = sr_body("nokind", GATEWAY)
    kubectl("apply", "-n", own_namespace, "-f", "-", input=yaml.safe_dump(body))
    monkeypatch.setitem(
        kube_client._PATHS,
        "HTTPRoute",
        "/apis/gateway.networking.k8s.io/v9alpha9/namespaces/{ns}/httproutes/{name}",
    )
    monkeypatch.setenv("KUBECONFIG", cluster.kubeconfig)

    async def twice() -> tuple[int, int]:
        kube = kube_client.Kube()
        first = await reconcile(kube, own_namespace, "nokind")
        second = await reconcile(kube, own_namespace, "nokind")
        return first.writes, second.writes

    first, second = asyncio.run(twice())
    status = get_json(kubectl, "shadowroute", "nokind", "-n", own_namespace)["status"]
    condition = degraded(status)
    assert condition and condition["reason"] == "RouteKindMissing", status
    assert condition["message"] == (
        "HTTPRoute (gateway.networking.k8s.io/v1) is not served by the API server: install "
        "the Gateway API CRDs, standard channel v1.3 or later; the API server said: "
        "404 page not found"
    )
    (event,) = events(kubectl, own_namespace, "RouteKindMissing")
    assert event["type"] == "Warning" and event["note"] == condition["message"]
    assert first == 3, "the status (before acting), the Event, the status that says why"
    assert second == 0, "the same failure again writes nothing"
    # Nothing else was written: a rollback must never scale down before routing moved.
    deployments = json.loads(
        kubectl("get", "deployments", "-n", own_namespace, "-o", "json").stdout
    )["items"]
    assert deployments == []
    assert all(
        not get_json(kubectl, res, "-n", own_namespace)["items"] for res in ROUTE_RESOURCES.values()
    )
