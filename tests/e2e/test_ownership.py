"""Never take what is not ours, against the real API server: an object that exists
under a child's name and is not controlled by this ShadowRoute is never written,
adopted or deleted; the ShadowRoute says whose it is (Ready=False, NameConflict, and
an Event) and builds once it is gone."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from .conftest import KubectlFn, OperatorProcess, get_json, wait_for
from .test_rollout import Route, route, stable

pytestmark = pytest.mark.e2e


def applied(kubectl: KubectlFn, namespace: str, body: dict[str, Any]) -> Route:
    r = Route(kubectl, namespace, body)
    r.apply()
    return r


def users_service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": "billing-v0"}, "ports": [{"port": 80}]},
    }


def conflict(r: Route) -> dict[str, Any]:
    return wait_for(
        lambda: next(
            (c for c in r.status().get("conditions") or []
             if c["type"] == "Ready" and c["reason"] == "NameConflict"),
            None,
        ),
        60,
        0.3,
        f"{r.name}: Ready=False NameConflict",
    )  # fmt: skip


def events(kubectl: KubectlFn, ns: str, reason: str) -> list[dict[str, Any]]:
    items = get_json(kubectl, "events.events.k8s.io", "-n", ns)["items"]
    return [e for e in items if e.get("reason") == reason]


def test_a_users_service_is_never_taken_over(
    operator: OperatorProcess, kubectl: KubectlFn, namespace: str
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(users_service("billing")))
    before = get_json(kubectl, "service", "billing", "-n", namespace)
    r = applied(kubectl, namespace, route("billing"))
    ready = conflict(r)
    assert ready["status"] == "False"
    assert "Service billing exists" in ready["message"], ready
    assert "kubectl" in ready["message"], "names who wrote it"
    degraded = r.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "NameConflict")
    wait_for(lambda: events(kubectl, namespace, "NameConflict"), 30, what="a NameConflict Event")
    after = get_json(kubectl, "service", "billing", "-n", namespace)
    assert after["spec"]["selector"] == {"app": "billing-v0"}, "selector untouched"
    assert not after["metadata"].get("ownerReferences"), "not adopted"
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    # Deleting the ShadowRoute leaves the user's Service alone (no owner reference, so
    # the garbage collector has nothing to act on).
    kubectl("delete", "shadowroute", "billing", "-n", namespace, "--wait=true")
    assert get_json(kubectl, "service", "billing", "-n", namespace)["spec"]["selector"] == {
        "app": "billing-v0"
    }


def test_a_users_deployment_is_a_conflict_not_an_immutable_selector_error(
    operator: OperatorProcess, kubectl: KubectlFn, namespace: str
) -> None:
    kubectl(
        "create", "deployment", "pay-primary", "-n", namespace, "--image=registry.example/pay:0"
    )
    r = applied(kubectl, namespace, route("pay"))
    ready = conflict(r)
    assert "Deployment pay-primary exists" in ready["message"]
    assert "immutable" not in r.condition("Degraded")["message"]
    dep = get_json(kubectl, "deployment", "pay-primary", "-n", namespace)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/pay:0"
    # Once the user's Deployment is gone, the route builds (retried with backoff, the
    # first retry within seconds).
    kubectl("delete", "deployment", "pay-primary", "-n", namespace, "--wait=true")
    r.wait("Stable after the conflict", stable, timeout=90)
    assert r.condition("Degraded")["status"] == "False"


def test_siblings_whose_children_collide_are_told_not_fought_over(
    operator: OperatorProcess, kubectl: KubectlFn, namespace: str
) -> None:
    """`shop`'s primary Service and `shop-primary`'s entry Service are both named
    `shop-primary`: the first to create it keeps it, the other says so."""
    shop = applied(kubectl, namespace, route("shop"))
    shop.wait("Stable", stable)
    svc = get_json(kubectl, "service", "shop-primary", "-n", namespace)
    sibling = applied(kubectl, namespace, route("shop-primary"))
    ready = conflict(sibling)
    assert "Service shop-primary exists and is controlled by ShadowRoute shop" in ready["message"]
    again = get_json(kubectl, "service", "shop-primary", "-n", namespace)
    assert again["spec"]["selector"] == svc["spec"]["selector"], "shop's traffic stays on shop"
    assert [o["name"] for o in again["metadata"]["ownerReferences"]] == ["shop"]
    # Deleting the sibling deletes nothing of shop's.
    kubectl("delete", "shadowroute", "shop-primary", "-n", namespace, "--wait=true")
    wait_for(
        lambda: not get_json(kubectl, "deployments", "-n", namespace, "-l",
                             "shadowroute.io/name=shop-primary")["items"],
        60, what="the sibling's own children collected",
    )  # fmt: skip
    assert (
        get_json(kubectl, "service", "shop-primary", "-n", namespace)["metadata"]["uid"]
        == (svc["metadata"]["uid"])
    )
    assert shop.condition("Ready")["status"] == "True"
