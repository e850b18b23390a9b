"""Crash points: the real operator is SIGKILLed right after every single write it makes
(a route, a Deployment, a Service, the status, an Event; `SHADOWROUTE_CRASH_AFTER_WRITE
=any:1`) and restarted each time, through a whole rollout against the real API server
and a real Prometheus. Each life of the operator makes exactly one write, so the state
seen after each death is every state the cluster ever was in, and the invariants are
checked on all of them:

- a rolled-back revision never gets traffic again (its route weight stays 0);
- no double promotion, no lost history entry;
- every Event of every transition recorded at least once (names make it exactly once);
- every webhook notification delivered at least once.

The CI run covers a canary rolled back by its analysis and a shadow + blue/green
promotion; `pytest -m long` adds a canary promoted through two steps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .analysis_support import Receiver
from .conftest import Cluster, KubectlFn, OperatorProcess, get_json
from .test_rollout import Route, route, stable

pytestmark = pytest.mark.e2e

GATEWAY = {"provider": "gatewayapi", "gatewayAPI": {"parentRefs": [{"name": "gw"}]}}
LIFE_LIMIT = 150  # lives per scenario; a scenario needs 20 to 40


class Lives:
    """The operator, killed after its first write and started again, until done."""

    def __init__(self, cluster: Cluster, namespace: str, log_dir: Path) -> None:
        self.op = OperatorProcess(
            cluster.kubeconfig, log_dir, "--namespace", namespace,
            env={"SHADOWROUTE_CRASH_AFTER_WRITE": "any:1"},
        )  # fmt: skip
        self.deaths = 0

    def until(self, done: Callable[[], bool], after_each: Callable[[], None], what: str) -> None:
        deadline = time.monotonic() + 300
        while not done():
            assert self.deaths < LIFE_LIMIT, f"{what}: still not done after {self.deaths} kills"
            assert time.monotonic() < deadline, f"{what}: timed out after {self.deaths} kills"
            proc = self.op.spawn()
            while proc.poll() is None and not done():
                time.sleep(0.1)
            if proc.poll() is None:  # done without another write: stop this life
                proc.kill()
                proc.wait(10)
                return
            assert proc.returncode == -9, f"the operator died otherwise; see {self.op.log}"
            self.deaths += 1
            after_each()


class Watch:
    """What the cluster looked like after each kill, and the invariants over it."""

    def __init__(self, r: Route, kubectl: KubectlFn) -> None:
        self.r, self.kubectl = r, kubectl
        self.seen: list[tuple[dict[str, Any], int | None]] = []
        self.rolled_back: set[str] = set()

    def canary_weight(self) -> int | None:
        res = self.kubectl(
            "get", "httproute", self.r.name, "-n", self.r.ns, "-o", "json", check=False
        )
        if res.returncode != 0:
            return None
        return sum(
            ref.get("weight", 0)
            for rule in json.loads(res.stdout)["spec"]["rules"]
            for ref in rule.get("backendRefs") or []
            if ref["name"] == f"{self.r.name}-canary"
        )

    def __call__(self) -> None:
        s, weight = self.r.status(), self.canary_weight()
        self.seen.append((s, weight))
        if s.get("stage") == "RolledBack":
            self.rolled_back.add(s["rolledBackRevision"])
        canary = s.get("canaryRevision") or ""
        if weight:
            assert canary not in self.rolled_back, (
                f"rolled-back revision {canary} has {weight}% of traffic after kill "
                f"{len(self.seen)}: {s}"
            )
        promoted = [h["revision"] for h in s.get("history") or [] if h["outcome"] == "Promoted"]
        assert len(promoted) == len(set(promoted)), f"a double promotion: {s['history']}"

    def history_kept(self) -> None:
        """No history entry, once written, ever goes missing in a later state."""
        before: list[dict[str, Any]] = []
        for s, _ in self.seen:
            now = s.get("history") or []
            assert now[len(now) - len(before) :] == before[: len(now)] or len(now) == 20, (
                f"history lost entries: {before} -> {now}"
            )
            before = now


def reasons(kubectl: KubectlFn, ns: str) -> list[str]:
    items = get_json(kubectl, "events.events.k8s.io", "-n", ns)["items"]
    return [e.get("reason") for e in items]


def promoted(s: dict[str, Any]) -> bool:
    return stable(s) and (s.get("history") or [{}])[0].get("outcome") == "Promoted"


def settled_status(check: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool]:
    """The status says it and has nothing left to deliver."""
    return lambda s: bool(
        s and check(s) and not s.get("pendingEvents") and not s.get("pendingNotifications")
    )


def settled(r: Route, check: Callable[[dict[str, Any]], bool]) -> Callable[[], bool]:
    done = settled_status(check)
    return lambda: done(r.status())


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def hooks(receiver: Receiver) -> dict[str, Any]:
    return {"webhooks": [{"name": "ci", "url": f"{receiver.url}/hook"}], "holdAfter": "1h"}


def test_kill_after_every_write_of_a_canary_rolled_back_by_its_analysis(
    cluster: Cluster, kubectl: KubectlFn, own_namespace: str, crds_installed, receiver, tmp_path
) -> None:
    namespace = own_namespace  # only the operator this test kills reconciles here
    body = route("crashy", steps=[{"weight": 20, "pause": {"duration": "2s"}}, {"weight": 60}])
    body["spec"]["traffic"] = GATEWAY
    body["spec"]["analysis"] = {
        "prometheus": {"address": cluster.prometheus},
        "interval": "2s",
        "failureLimit": 1,
        "metrics": [{"name": "error-rate", "query": "vector(0.2)", "max": 0.05}],
        "notifications": hooks(receiver),
    }
    r = Route(kubectl, namespace, body)
    r.apply()
    watch, lives = Watch(r, kubectl), Lives(cluster, namespace, tmp_path)
    lives.until(settled(r, stable), watch, "first version")
    r.set_image("registry.example/app:2")
    lives.until(
        settled(r, lambda s: s.get("phase") == "RolledBack"), watch, "rollback of version 2"
    )
    s = r.status()
    assert s["canaryWeight"] == 0 and watch.canary_weight() == 0
    assert s["history"][0]["outcome"] == "RolledBack" and s["rollbackReason"] == "AnalysisFailed"
    watch.history_kept()
    seen = reasons(kubectl, namespace)
    for reason in ("Available", "RolloutStarted", "StepReady", "AnalysisFailed"):
        assert reason in seen, f"Event {reason} lost: {seen}"
    assert seen.count("AnalysisFailed") == 1, "one rollback, one Event"
    kinds = [b["kind"] for b in receiver.bodies("/hook")]
    assert "RolledBack" in kinds, f"the rollback's notification was lost: {kinds}"
    print(f"\ncanary rollback: {lives.deaths} kills, {len(seen)} Events, webhooks {kinds}")


def test_kill_after_every_write_of_a_shadow_and_blue_green_promotion(
    cluster: Cluster, kubectl: KubectlFn, own_namespace: str, crds_installed, receiver, tmp_path
) -> None:
    namespace = own_namespace  # only the operator this test kills reconciles here
    body = route(
        "crashbg",
        strategy={
            "shadow": {"duration": "2s", "mirrorPercent": 50},
            "blueGreen": {"previewDuration": "2s"},
        },
        traffic=GATEWAY,
    )
    body["spec"]["analysis"] = {"notifications": hooks(receiver)}
    r = Route(kubectl, namespace, body)
    r.apply()
    watch, lives = Watch(r, kubectl), Lives(cluster, namespace, tmp_path)
    # The first version's writes are killed in the canary test; here one life makes it.
    plain = OperatorProcess(cluster.kubeconfig, tmp_path, "--namespace", namespace).start()
    try:
        r.wait("Stable", settled_status(stable))
    finally:
        plain.kill()
    r.set_image("registry.example/app:2")
    lives.until(settled(r, promoted), watch, "promotion of version 2")
    s = r.status()
    assert [h["outcome"] for h in s["history"]] == ["Promoted"], "promoted once"
    assert r.image("primary") == "registry.example/app:2"
    watch.history_kept()
    seen = reasons(kubectl, namespace)
    for reason in ("RolloutStarted", "ShadowPassed", "Promoting", "Promoted", "Stable"):
        assert reason in seen, f"Event {reason} lost: {seen}"
    assert seen.count("Promoted") == 1
    kinds = [b["kind"] for b in receiver.bodies("/hook")]
    assert "Promoted" in kinds, f"the promotion's notification was lost: {kinds}"
    print(f"\nshadow + blue/green: {lives.deaths} kills, {len(seen)} Events, webhooks {kinds}")


@pytest.mark.long
def test_kill_after_every_write_of_a_canary_promoted_through_two_steps(
    cluster: Cluster, kubectl: KubectlFn, own_namespace: str, crds_installed, receiver, tmp_path
) -> None:
    namespace = own_namespace  # only the operator this test kills reconciles here
    body = route("crashcan", traffic=GATEWAY)
    body["spec"]["analysis"] = {"notifications": hooks(receiver)}
    r = Route(kubectl, namespace, body)
    r.apply()
    watch, lives = Watch(r, kubectl), Lives(cluster, namespace, tmp_path)
    lives.until(settled(r, stable), watch, "first version")
    r.set_image("registry.example/app:2")
    lives.until(settled(r, lambda s: stable(s) and bool(s.get("history"))), watch, "promotion")
    assert [h["outcome"] for h in r.status()["history"]] == ["Promoted"]
    watch.history_kept()
    seen = reasons(kubectl, namespace)
    assert seen.count("StepAdvanced") == 1 and seen.count("Promoted") == 1
    print(f"\ncanary promotion: {lives.deaths} kills")
