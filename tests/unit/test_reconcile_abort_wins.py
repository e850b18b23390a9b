"""Abort always wins: whatever fails inside the analysis, the real reconciler (against
the fake API of test_traffic_reconcile) still reads the gates and moves the weight to 0
in the same reconcile. (The same path against the real API server and Prometheus:
tests/e2e/test_analysis.py.)"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from shadowroute import analysis
from shadowroute.analysis.prometheus import Client, Endpoint
from shadowroute.reconciler import reconcile

from .sim import T0, image_template, spec_dict
from .test_traffic_reconcile import NAME, NS, FakeKube

ANALYSIS = {
    "prometheus": {"address": "http://prometheus.test:9090"},
    "interval": "10s",
    "failureLimit": 1,
    "metrics": [{"name": "errors", "preset": "error-rate", "max": 0.05}],
}

STEPS = [{"weight": 50, "pause": {"duration": "1h"}}, {"weight": 100}]


class Breaking(Client):
    """The analysis's Prometheus client, raising what aiohttp raises for a header with
    a line break (a token from a Secret, before the Secret was checked)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    async def query(self, endpoint: Endpoint, promql: str, at: dt.datetime) -> Any:
        self.asked += 1
        raise ValueError("Forbidden control character detected in headers.")


def settle_deployments(kube: FakeKube) -> None:
    """The Deployment controller and kubelets: every Deployment rolled out."""
    for (kind, _), obj in kube.objects.items():
        if kind == "Deployment":
            n = int(obj["spec"].get("replicas", 1))
            obj["status"] = {"replicas": n, "updatedReplicas": n, "availableReplicas": n}


class World:
    def __init__(self, kube: FakeKube, prometheus: Any = None) -> None:
        self.kube, self.now, self.prometheus = kube, T0, prometheus

    async def reconcile(self, seconds: float = 1) -> dict[str, Any]:
        self.now += dt.timedelta(seconds=seconds)
        await reconcile(self.kube, NS, NAME, self.now, prometheus=self.prometheus)
        settle_deployments(self.kube)
        return self.kube.body.get("status") or {}

    async def until(self, predicate: Any, limit: int = 30) -> dict[str, Any]:
        for _ in range(limit):
            status = await self.reconcile()
            if predicate(status):
                return status
        raise AssertionError(f"not reached; status: {self.kube.body.get('status')}")

    def edit(self, **meta: Any) -> None:
        self.kube.body["metadata"].update(meta)
        self.kube.body["metadata"]["generation"] += 1


def analysis_condition(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "AnalysisHealthy")


@pytest.mark.parametrize("failure", ["client raises", "interval overflows"])
async def test_abort_moves_the_weight_to_zero_while_the_analysis_raises(
    failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Breaking()
    world = World(FakeKube(spec_dict(replicas=4, steps=STEPS, analysis=ANALYSIS)), client)
    await world.until(lambda s: s.get("phase") == "Stable")
    world.kube.body["spec"]["template"] = image_template("web:2")
    world.kube.body["metadata"]["generation"] += 1
    if failure == "interval overflows":
        # Past the schema and the models (bounds may refuse it there): the spec as read.
        real = analysis.evaluate

        async def evaluate(spec: Any, *args: Any, **kwargs: Any) -> Any:
            a = spec.analysis.model_copy(update={"interval": "99999999999h"})
            return await real(spec.model_copy(update={"analysis": a}), *args, **kwargs)

        monkeypatch.setattr(analysis, "evaluate", evaluate)
        world.prometheus = _Healthy()
    status = await world.until(lambda s: s.get("canaryWeight") == 50)
    for _ in range(3):
        status = await world.reconcile(10)
    condition = analysis_condition(status)
    assert (condition["status"], condition["reason"]) == ("False", "AnalysisError")
    assert status["phase"] == "Progressing" and status["canaryWeight"] == 50
    if failure == "client raises":
        assert client.asked and "ValueError: Forbidden control" in condition["message"]
    else:
        assert "longer than a Go duration can be" in condition["message"]

    world.kube.body["metadata"]["annotations"] = {"shadowroute.io/abort": "2026-11-25T05:10:00Z"}
    status = await world.reconcile()
    assert status["phase"] == "RolledBack" and status["canaryWeight"] == 0
    assert status["rollbackReason"] == "Aborted"
    canary = world.kube.objects[("Deployment", f"{NAME}-canary")]
    primary = world.kube.objects[("Deployment", f"{NAME}-primary")]
    assert canary["spec"]["replicas"] == 0 and primary["spec"]["replicas"] == 4


class _Healthy:
    """Prometheus answering every query with a healthy value (the first run passes; the
    interval then times the next one, and overflows)."""

    async def query(self, endpoint: Endpoint, promql: str, at: dt.datetime) -> Any:
        from shadowroute.analysis.judge import Sample

        return (Sample((), 0.0),)
