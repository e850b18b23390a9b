"""What GitOps tools and `kubectl wait` see, against the real API server: the real
kubectl binary waiting on Ready during a rollout, the chart's Argo CD health check on
live status objects during a rollout and a rollback, and the order `kubectl describe`
lists our Events in."""

from __future__ import annotations

import re
import subprocess
import threading
from typing import Any

import pytest

from tests.unit.test_kstatus import argocd_health

from .conftest import KubectlFn, OperatorProcess, _kubectl_exe, get_json, wait_for
from .test_rollout import Route, route, stable

pytestmark = pytest.mark.e2e


@pytest.fixture
def make_route(kubectl: KubectlFn, namespace: str, operator: OperatorProcess):
    def make(body: dict[str, Any]) -> Route:
        r = Route(kubectl, namespace, body)
        r.apply()
        return r

    return make


class Watcher(threading.Thread):
    """Records every distinct status of a ShadowRoute (and the Argo CD health of the
    live object) until stopped: `kubectl get -w` from the real API server."""

    def __init__(self, r: Route) -> None:
        super().__init__(daemon=True)
        self.r = r
        self.seen: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            obj = self.r.get()
            if not self.seen or obj.get("status") != self.seen[-1].get("status"):
                self.seen.append(obj)
            self.stop.wait(0.2)


def test_kubectl_wait_ready_returns_only_once_the_new_revision_serves_all(
    make_route, cluster
) -> None:
    r: Route = make_route(
        route(
            "waitme",
            steps=[
                {"weight": 10, "pause": {"duration": "3s"}},
                {"weight": 50, "pause": {"duration": "3s"}},
            ],
        )
    )
    r.wait("Stable", stable)
    watcher = Watcher(r)
    watcher.start()
    r.set_image("registry.example/app:2")
    generation = r.get()["metadata"]["generation"]
    # The real kubectl, started right after the change, as a pipeline would.
    waited = subprocess.run(
        [_kubectl_exe(), "--kubeconfig", cluster.kubeconfig, "wait", "-n", r.ns,
         "--for=condition=Ready", "--timeout=120s", "shadowroute/waitme"],
        capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    at_return = r.status()
    watcher.stop.set()
    watcher.join()
    assert waited.returncode == 0, waited.stderr
    assert at_return["canaryRevision"] == "" or at_return["canaryWeight"] == 100
    assert at_return["phase"] in ("Succeeded", "Stable"), at_return["phase"]
    assert at_return["observedGeneration"] >= generation
    # Ready was False for every status of the rollout before the new revision took
    # all of the traffic, and the canary steps were seen while kubectl waited.
    statuses = [o["status"] for o in watcher.seen]
    during = [s for s in statuses if s.get("canaryRevision") and s.get("canaryWeight", 0) < 100]
    assert {10, 50} <= {s["canaryWeight"] for s in during}, [s["phase"] for s in statuses]
    for s in during:
        ready = next(c for c in s["conditions"] if c["type"] == "Ready")
        reconciling = next(c for c in s["conditions"] if c["type"] == "Reconciling")
        assert ready["status"] == "False" and reconciling["status"] == "True", s["phase"]


def test_argocd_health_on_live_statuses_during_a_rollout_and_a_rollback(make_route) -> None:
    r: Route = make_route(route("argo", steps=[{"weight": 30, "pause": {}}, {"weight": 60}]))
    r.wait("Stable", stable)
    assert argocd_health(r.get())["status"] == "Healthy"
    primary = get_json(r.kubectl, "deployment", "argo-primary", "-n", r.ns)["metadata"]
    watcher = Watcher(r)
    watcher.start()
    try:
        r.set_image("registry.example/app:2")
        r.wait("held at the indefinite pause", lambda s: s.get("phase") == "Paused")
        # The primary keeps its revision: not written, so never briefly unavailable.
        kept = get_json(r.kubectl, "deployment", "argo-primary", "-n", r.ns)["metadata"]
        assert kept["generation"] == primary["generation"], (primary, kept)
        wait_for(
            lambda: any(o.get("status", {}).get("phase") == "Paused" for o in watcher.seen),
            10,
            what="the watcher to see the hold",
        )
        r.gate("abort")
        r.wait("RolledBack", lambda s: s.get("phase") == "RolledBack")
        wait_for(
            lambda: watcher.seen[-1].get("status", {}).get("phase") == "RolledBack",
            10,
            what="the watcher to see the rollback",
        )
    finally:
        watcher.stop.set()
        watcher.join()
    by_phase: dict[str, set[str]] = {}
    for obj in watcher.seen:
        phase = obj["status"]["phase"]
        by_phase.setdefault(phase, set()).add(argocd_health(obj)["status"])
    expected = {"Paused": "Suspended", "RolledBack": "Degraded", "Progressing": "Progressing"}
    # On a failure, each status judged otherwise: its phase, health and conditions
    # (short enough that pytest shows it whole).
    wrong = [
        f"{o['status']['phase']} read {argocd_health(o)} with "
        + " ".join(
            f"{c['type']}={c['status']}({c.get('reason')})" for c in o["status"]["conditions"]
        )
        for o in watcher.seen
        if argocd_health(o)["status"] != expected.get(o["status"]["phase"], "Healthy")
    ]
    assert not wrong, "; ".join(wrong)[:600]
    assert {"Paused", "RolledBack"} <= set(by_phase), by_phase
    health = argocd_health(r.get())
    assert health["status"] == "Degraded" and health["message"].startswith("Aborted"), health
    ready = r.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Aborted")
    assert r.condition("Available")["status"] == "True"


AGE = re.compile(r"^(?:(\d+)m)?(?:(\d+)s)?$")


def _seconds(age: str) -> int:
    m = AGE.match(age)
    assert m and age, age
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)


def test_kubectl_describe_lists_the_events_oldest_first(make_route, kubectl: KubectlFn) -> None:
    r: Route = make_route(route("described"))
    r.wait("Stable", stable)
    r.set_image("registry.example/app:2")
    r.wait("promoted and handed over", lambda s: stable(s) and bool(s.get("history")))
    expected = ["Available", "RolloutStarted", "Promoting", "Promoted", "Stable"]

    def listed() -> list[tuple[str, int]] | None:
        out = kubectl("describe", "shadowroute", "described", "-n", r.ns).stdout
        rows = []
        for line in out.split("\nEvents:", 1)[1].splitlines()[3:]:
            parts = line.split()
            if len(parts) >= 3 and parts[0] in ("Normal", "Warning"):
                rows.append((parts[1], _seconds(parts[2])))
        reasons = [reason for reason, _ in rows]
        return rows if all(e in reasons for e in expected) else None

    rows = wait_for(listed, 30, what="every Event in kubectl describe")
    reasons = [reason for reason, _ in rows]
    positions = [reasons.index(e) for e in expected]
    assert positions == sorted(positions), rows
    ages = [age for _, age in rows]
    assert ages == sorted(ages, reverse=True), rows  # oldest (largest age) first
    assert reasons.count("StepReady") == 2 and reasons.index("StepAdvanced") > reasons.index(
        "StepReady"
    ), rows
