"""The reconciler's route writes against a fake API: someone else's object is never
taken over by force, your HTTPRoute is read again after a conflict, a route failure
stops everything after it and is reported once, stale routes go last. (The same
paths run against the real API server in tests/e2e/test_traffic_*.py.)"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from shadowroute.api import ShadowRouteSpec
from shadowroute.api_errors import ApiError
from shadowroute.reconciler import reconcile
from shadowroute.rollout.machine import desired_revision

from .traffic_cases import YOUR_ROUTE, spec_raw

NS, NAME, UID = "store", "shop", "uid-shop"
OWNER_REF = {"kind": "ShadowRoute", "name": NAME, "uid": UID, "controller": True}
LABELS = {"app.kubernetes.io/managed-by": "shadowroute", "shadowroute.io/name": NAME}


def api_error(status: int, body: Any) -> ApiError:
    exc = ApiError(status=status, reason="x")
    exc.body = json.dumps(body) if not isinstance(body, str) else body
    return exc


class FakeKube:
    """Just enough of kube.client.Kube: objects by (kind, name), every call recorded."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.body = {
            "apiVersion": "shadowroute.io/v1alpha1",
            "kind": "ShadowRoute",
            "metadata": {"name": NAME, "namespace": NS, "uid": UID, "generation": 1},
            "spec": spec,
        }
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.fail: dict[str, list[ApiError]] = {}
        """Errors to raise, in order, per call name ("apply:HTTPRoute", "list:Ingress")."""
        self.rv = 100

    def _maybe_fail(self, key: str) -> None:
        if self.fail.get(key):
            raise self.fail[key].pop(0)

    async def get_shadowroute(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.body)

    async def list_children(self, namespace: str, name: str, kinds: tuple[str, ...]):
        self.calls.append(("list", *kinds))
        out = {}
        for kind in kinds:
            self._maybe_fail(f"list:{kind}")
            out[kind] = [
                copy.deepcopy(o)
                for (k, _), o in self.objects.items()
                if k == kind and (o["metadata"].get("labels") or {}).get("shadowroute.io/name")
            ]
        return out

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", kind, name))
        self._maybe_fail(f"get:{kind}")
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found else None

    async def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        kind, name = obj["kind"], obj["metadata"]["name"]
        self.calls.append(("apply", kind, name, force))
        self._maybe_fail(f"apply:{kind}")
        stored = copy.deepcopy(self.objects.get((kind, name), {}))
        stored.update(copy.deepcopy(obj))
        self.rv += 1
        stored["metadata"] = {**stored.get("metadata", {}), **obj["metadata"]}
        stored["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[(kind, name)] = stored
        return stored

    async def delete(self, obj: dict[str, Any]) -> None:
        self.calls.append(("delete", obj["kind"], obj["metadata"]["name"]))
        del self.objects[(obj["kind"], obj["metadata"]["name"])]

    async def apply_status(
        self, namespace: str, name: str, status: dict[str, Any], uid: str | None = None
    ) -> None:
        self.calls.append(("status",))
        self._maybe_fail("status")
        self.body["status"] = copy.deepcopy(status)

    async def event(
        self, body: dict[str, Any], type_: str, reason: str, message: str, name: str = ""
    ) -> bool:
        self.calls.append(("event", type_, reason, message))
        self._maybe_fail("event")
        return True

    def writes(self, what: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == what]

    def degraded(self) -> dict[str, Any]:
        return next(c for c in self.body["status"]["conditions"] if c["type"] == "Degraded")


async def test_a_child_not_yet_seen_as_ours_is_created_without_force() -> None:
    kube = FakeKube(spec_raw("gatewayapi"))
    await reconcile(kube, NS, NAME)
    applies = kube.writes("apply")
    assert applies[0] == ("apply", "HTTPRoute", NAME, False), "routes first, never forced"
    assert not any(force for *_, force in applies), "a new child never takes fields over"
    # Once listed as ours, a change to it is forced (taking back a drive-by edit).
    kube.body["spec"]["traffic"]["gatewayAPI"]["hostnames"] = ["other.example.com"]
    kube.body["metadata"]["generation"] += 1
    kube.calls.clear()
    await reconcile(kube, NS, NAME)
    assert kube.writes("apply")[0] == ("apply", "HTTPRoute", NAME, True)


async def test_a_conflict_on_creation_is_route_conflict_reported_once() -> None:
    kube = FakeKube(spec_raw("gatewayapi"))
    conflict = {
        "reason": "Conflict",
        "message": 'Apply failed with 1 conflict: conflict with "git"',
    }
    kube.fail["apply:HTTPRoute"] = [api_error(409, conflict), api_error(409, conflict)]
    first = await reconcile(kube, NS, NAME)
    assert [c[1] for c in kube.writes("apply")] == ["HTTPRoute"], "nothing after the route"
    degraded = kube.degraded()
    assert (degraded["status"], degraded["reason"]) == ("True", "RouteConflict")
    assert 'conflict with "git"' in degraded["message"]
    assert [c[2] for c in kube.writes("event")] == ["RouteConflict"]
    assert first.requeue_after is not None and first.requeue_after <= 5
    kube.calls.clear()
    second = await reconcile(kube, NS, NAME)
    assert kube.writes("event") == [] and kube.writes("status") == [], "reported once"
    assert second.writes == 0


async def test_your_route_is_read_again_after_a_conflict() -> None:
    kube = FakeKube(spec_raw("gatewayapi-own-route"))
    kube.objects[("HTTPRoute", "storefront")] = copy.deepcopy(YOUR_ROUTE)
    desired = desired_revision(ShadowRouteSpec.model_validate(kube.body["spec"]))
    kube.body["status"] = {
        "phase": "Progressing", "stage": "Progressing", "stableRevision": "aaaaaaaaaa",
        "primaryRevision": "aaaaaaaaaa", "canaryRevision": desired, "canaryWeight": 10,
        "stageReadyAt": "2026-11-25T05:00:00Z", "stageStartedAt": "2026-11-25T05:00:00Z",
    }  # fmt: skip
    modified = {"reason": "Conflict", "message": "the object has been modified"}
    kube.fail["apply:HTTPRoute"] = [api_error(409, modified)]
    await reconcile(kube, NS, NAME)
    route_calls = [c for c in kube.calls if c[1:2] == ("HTTPRoute",)]
    assert route_calls == [
        ("get", "HTTPRoute", "storefront"),
        ("apply", "HTTPRoute", "storefront", True),
        ("get", "HTTPRoute", "storefront"),
        ("apply", "HTTPRoute", "storefront", True),
    ]
    rules = kube.objects[("HTTPRoute", "storefront")]["spec"]["rules"]
    assert [ref["weight"] for ref in rules[1]["backendRefs"]] == [90, 10]
    assert rules[0] == YOUR_ROUTE["spec"]["rules"][0]


async def test_your_route_missing_stops_before_the_workloads() -> None:
    kube = FakeKube(spec_raw("gatewayapi-own-route"))
    await reconcile(kube, NS, NAME)
    assert kube.writes("apply") == [], "no Service, no Deployment before the route works"
    degraded = kube.degraded()
    assert degraded["reason"] == "RouteNotFound" and "HTTPRoute storefront" in degraded["message"]
    assert [c[2] for c in kube.writes("event")] == ["RouteNotFound"]


async def test_stale_routes_go_after_the_new_ones_and_unlistable_kinds_are_skipped() -> None:
    kube = FakeKube(spec_raw("nginx"))
    await reconcile(kube, NS, NAME)
    assert {k for k, _ in kube.objects} >= {"Ingress"}
    kube.body["spec"] = spec_raw("istio")
    kube.body["metadata"]["generation"] += 1
    kube.fail["list:HTTPRoute"] = [api_error(403, {"reason": "Forbidden", "message": "no"})]
    kube.calls.clear()
    await reconcile(kube, NS, NAME)
    order = [c[:3] for c in kube.calls if c[0] in ("apply", "delete")]
    assert order[0] == ("apply", "VirtualService", NAME)
    assert order[-2:] == [("delete", "Ingress", NAME), ("delete", "Ingress", f"{NAME}-canary")]
    assert kube.degraded()["status"] == "False", "a kind it may not list is not an error"


@pytest.mark.parametrize("code", [500, 404])
async def test_a_listing_error_other_than_forbidden_is_reported(code: int) -> None:
    kube = FakeKube(spec_raw("istio"))
    body = "404 page not found" if code == 404 else {"reason": "InternalError", "message": "x"}
    kube.fail["list:Ingress"] = [api_error(code, body)]
    await reconcile(kube, NS, NAME)
    assert kube.degraded()["status"] == "True"


async def test_other_kinds_are_listed_only_when_a_provider_switch_can_have_happened() -> None:
    """A provider changes only with the spec: at rest, no extra reads."""
    kube = FakeKube(spec_raw("istio"))
    await reconcile(kube, NS, NAME)
    assert ("list", "HTTPRoute") in kube.calls and ("list", "Ingress") in kube.calls
    kube.calls.clear()
    await reconcile(kube, NS, NAME)
    assert [c for c in kube.calls if c[0] == "list"] == [
        ("list", "Deployment", "Service", "VirtualService")
    ]
    # After a failure, look again (a deletion may be what failed).
    kube.fail["apply:VirtualService"] = [api_error(500, {"reason": "InternalError"})]
    kube.body["spec"]["traffic"]["istio"] = {"path": "/v2"}
    kube.body["metadata"]["generation"] += 1
    await reconcile(kube, NS, NAME)
    assert kube.degraded()["status"] == "True"
    kube.calls.clear()
    await reconcile(kube, NS, NAME)
    assert ("list", "Ingress") in kube.calls
