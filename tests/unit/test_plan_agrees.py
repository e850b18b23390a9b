"""`kubectl shadowroute plan` predicts exactly what the next reconcile writes: the same
status, the same Events, the same children created or changed — for every provider
and every stage of a rollout, on an empty namespace and on one with the children the
reconcile made. (Both call `wanted`; this keeps it so.)"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from shadowroute.cli.plan import make_plan
from shadowroute.notify import Notifier
from shadowroute.reconciler import reconcile

from .test_reconcile_reliability import CrashingKube
from .test_traffic_reconcile import NAME, NS
from .traffic_cases import TRAFFIC, stage_statuses

NOW = dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC)
CASES = [(t, stage) for t in TRAFFIC if t != "gatewayapi-own-route" for stage in stage_statuses(t)]


def without_outbox(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k not in ("pendingEvents", "pendingNotifications")}


def children(kube: CrashingKube) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for (kind, _), obj in kube.objects.items():
        out.setdefault(kind, []).append(copy.deepcopy(obj))
    return out


async def agree(kube: CrashingKube) -> None:
    live = copy.deepcopy(kube.body)
    plan = make_plan(copy.deepcopy(live), NS, live, children(kube), NOW)
    kube.calls.clear()
    kube.events.clear()
    await reconcile(kube, NS, NAME, NOW, notifier=Notifier())
    written = kube.body.get("status") or {}
    assert without_outbox(plan.status_after) == without_outbox(written)
    assert [(t, r) for t, r, _ in plan.events] == [
        (t, r) for c in kube.calls if c[0] == "event" for t, r in [c[1:3]]
    ]
    changed = {(o.kind, o.name) for o in plan.objects if o.action != "unchanged"}
    applied = {(c[1], c[2]) for c in kube.calls if c[0] == "apply"}
    assert changed == applied


@pytest.mark.parametrize(("traffic", "stage"), CASES)
async def test_plan_and_reconcile_agree(traffic: str, stage: str) -> None:
    spec, status = stage_statuses(traffic)[stage]
    kube = CrashingKube(spec.to_k8s())
    kube.body["status"] = status.to_k8s()
    await agree(kube)  # an empty namespace: everything is created
    kube.ready()
    await agree(kube)  # the children it made, rolled out
