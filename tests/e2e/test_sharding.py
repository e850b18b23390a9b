"""Sharding (`--shards`) on the real API server: three operator processes share the
routes by shard Leases; one is SIGKILLed while one of its routes is mid-rollout, its
shard moves, and another replica finishes the rollout — one promotion, one Promoted
Event, and never two replicas holding a shard at once (the Leases, sampled all along,
and the replicas' own logs of when they took and dropped each shard)."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from shadowroute.kube.shards import shard_of

from .conftest import Cluster, KubectlFn, OperatorProcess, get_json, wait_for
from .test_rollout import Route, route, stable

pytestmark = pytest.mark.e2e
SET = "shard-test"
LEASE_ARGS = ("--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "1")


@pytest.fixture
def replicas() -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for op in started:
        op.stop()


def replica(
    cluster: Cluster, ns: str, tmp_path: Path, started: list[OperatorProcess], shards: int
) -> OperatorProcess:
    op = OperatorProcess(
        cluster.kubeconfig, tmp_path, "--namespace", ns, "--shards", str(shards),
        "--leader-election-namespace", ns, "--leader-election-id", SET, "--log-format", "json",
        *LEASE_ARGS,
    )  # fmt: skip
    op.spawn()
    started.append(op)
    # Its shard rounds begin once kopf's startup is done: slow on a busy shared machine.
    wait_for(lambda: op.proc.poll() is not None or "Activity 'startup' succeeded" in
             op.log.read_text(), 120, what="the replica's startup")  # fmt: skip
    assert op.proc.poll() is None, f"the operator exited; see {op.log}"
    return op


def held(op: OperatorProcess) -> set[int]:
    """The shards a live replica reports holding (its shadowroute_shard_held gauge)."""
    if not op.proc or op.proc.poll() is not None:
        return set()
    try:
        text = op.metrics()
    except OSError:
        return set()  # not serving yet
    out = set()
    for line in text.splitlines():
        if line.startswith("shadowroute_shard_held{") and line.endswith(" 1.0"):
            out.add(int(line.split('shard="')[1].split('"')[0]))
    return out


def leases(kubectl: KubectlFn, ns: str) -> dict[str, dict[str, Any]]:
    items = get_json(kubectl, "leases", "-n", ns, "-l", f"shadowroute.io/lease-set={SET}")
    return {i["metadata"]["name"]: i for i in items["items"]}


def log_records(op: OperatorProcess) -> list[dict[str, Any]]:
    out = []
    for path in op.log_dir.glob(f"operator-{id(op)}-*.log"):
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line from a library that writes to stderr itself
    return out


def intervals(op: OperatorProcess, shard: int, end: float) -> list[tuple[float, float]]:
    """When the replica's own log says it held the shard: from "took shard N" to
    "dropping shard N" (or `end`: its exit or kill, or now)."""
    spans, start = [], None
    for r in log_records(op):
        msg, at = r.get("message", ""), datetime.fromisoformat(r["time"]).timestamp()
        if msg.startswith(f"took shard {shard} "):
            start = at
        elif msg.startswith(f"dropping shard {shard}:") and start is not None:
            spans.append((start, at))
            start = None
    if start is not None:
        spans.append((start, end))
    return spans


class LeaseWatch:
    """Samples the shard Leases' holders every ~0.2 s in a thread, for the record."""

    def __init__(self, kubectl: KubectlFn, ns: str) -> None:
        self.samples: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._kubectl, self._ns = kubectl, ns
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            found = leases(self._kubectl, self._ns)
            holders = {n: (i.get("spec") or {}).get("holderIdentity", "") for n, i in found.items()}
            self.samples.append((time.time(), holders))
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_killed_replicas_rollout_is_finished_by_another_with_one_promotion(
    cluster: Cluster,
    kubectl: KubectlFn,
    own_namespace: str,
    replicas: list[OperatorProcess],
    tmp_path: Path,
) -> None:
    ns = own_namespace
    ops = [replica(cluster, ns, tmp_path, replicas, 3) for _ in range(3)]
    wait_for(lambda: sorted(len(held(op)) for op in ops) == [1, 1, 1], 60, what="1 shard each")
    names = [f"route-{i}" for i in range(6)]
    routes = {}
    for name in names:
        steps = [{"weight": 25, "pause": {"duration": "8s"}}, {"weight": 50}]
        body = route(name, keepWarm="1s", steps=steps)
        routes[name] = Route(kubectl, ns, body)
        routes[name].apply()
    for r in routes.values():
        r.wait("Stable", stable, timeout=90)
    assert all(op.reconciles() > 0 for op in ops if held(op) & {shard_of(ns, n, 3) for n in names})
    watch = LeaseWatch(kubectl, ns)
    try:
        target = routes[names[0]]
        shard = shard_of(ns, target.name, 3)
        owner = next(op for op in ops if shard in held(op))
        others = [op for op in ops if op is not owner]
        target.set_image("registry.example/app:2")
        target.wait("mid-rollout at 25 %", lambda s: s.get("canaryWeight") == 25, timeout=60)
        owner.kill()  # SIGKILL mid-pause: no release, the others wait out its Lease
        killed_at = time.time()
        successor = wait_for(
            lambda: next((op for op in others if shard in held(op)), None), 30,
            0.1, what=f"shard {shard} taken over",
        )  # fmt: skip
        moved = time.time() - killed_at
        print(f"shard {shard} moved {moved:.1f}s after the SIGKILL (lease 4 s, retry 1 s)")
        s = target.wait(
            "promoted by another replica",
            lambda s: stable(s) and (s.get("history") or [{}])[0].get("outcome") == "Promoted",
            timeout=90,
        )
    finally:
        watch.stop()
    revision = s["stableRevision"]
    promotions = [
        h for h in s["history"] if h["outcome"] == "Promoted" and h["revision"] == revision
    ]
    assert len(promotions) == 1, s["history"]
    events = [
        e for e in get_json(kubectl, "events.events.k8s.io", "-n", ns)["items"]
        if e.get("reason") == "Promoted" and (e.get("regarding") or {}).get("name") == target.name
    ]  # fmt: skip
    assert len(events) == 1 and not (events[0].get("series") or {}).get("count"), events
    assert successor.reconciles() > 0
    # The dead replica's member Lease is deleted by a survivor once it expired.
    wait_for(lambda: len([n for n in leases(kubectl, ns) if "-member-" in n]) == 2, 30,
             what="the dead member Lease deleted")  # fmt: skip
    # Never two holders: per shard, the replicas' own intervals do not overlap, and
    # every sample of the Lease names one holder (the Lease cannot name two).
    now = time.time()
    for n in range(3):
        spans = sorted(
            span for op in ops for span in intervals(op, n, killed_at if op is owner else now)
        )
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"shard {n}: two replicas held it at once: {spans}"
    assert watch.samples and all(len(h) >= 3 for _, h in watch.samples)
    for op in others:
        text = "".join(p.read_text() for p in op.log_dir.glob(f"operator-{id(op)}-*.log"))
        assert "Traceback" not in text


def test_a_replica_without_a_shard_is_ready_and_a_clean_exit_hands_shards_over(
    cluster: Cluster,
    kubectl: KubectlFn,
    own_namespace: str,
    replicas: list[OperatorProcess],
    tmp_path: Path,
) -> None:
    ns = own_namespace
    a = replica(cluster, ns, tmp_path, replicas, 2)
    wait_for(lambda: held(a) == {0, 1}, 60, what="the first replica holding every shard")
    b = replica(cluster, ns, tmp_path, replicas, 2)
    wait_for(lambda: len(held(a)) == 1 and len(held(b)) == 1, 60, what="one shard each")
    c = replica(cluster, ns, tmp_path, replicas, 2)
    wait_for(lambda: len(leases(kubectl, ns)) == 5, 60, what="three member Leases")
    assert held(c) == set(), "fair share 1: the newcomer stands by"
    with urllib.request.urlopen(f"http://127.0.0.1:{c.metrics_port}/readyz", timeout=5) as r:
        assert r.status == 200, "a replica holding no shard is ready"
    assert "shadowroute_shards 2.0" in c.metrics()
    (shard,) = held(a)
    name = f"{SET}-shard-{shard}"
    before = leases(kubectl, ns)[name]["spec"]["holderIdentity"]
    assert a.proc is not None
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(30) == 0
    assert "released shards [" in a.log.read_text()
    found = leases(kubectl, ns)
    assert found[name]["spec"].get("holderIdentity", "") != before, "released, not left to expire"
    assert len([n for n in found if "-member-" in n]) == 2, "its member Lease deleted"
    wait_for(lambda: shard in held(b) | held(c), 10, 0.1, what="the released shard taken")
    assert held(b) | held(c) == {0, 1} and not held(b) & held(c)


def test_sharded_replicas_run_under_the_charts_rbac(
    cluster: Cluster,
    kubectl: KubectlFn,
    own_namespace: str,
    replicas: list[OperatorProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sharding.shards=2 with two replicas, under exactly the Roles the chart renders (a
    ServiceAccount token): the Leases are listed, created, renewed, released and a dead
    replica's member Lease deleted with no request refused."""
    from .test_rbac import assert_clean_log, operator_args, render, sa_kubeconfig

    ns = own_namespace
    release = f"sh-{uuid.uuid4().hex[:6]}"
    manifests = render(
        release, ns, f"watch.namespaces={{{ns}}}", "replicaCount=2", "sharding.shards=2",
        "leaderElection.leaseDurationSeconds=4", "leaderElection.renewDeadlineSeconds=3",
        "leaderElection.retryPeriodSeconds=1",
    )  # fmt: skip
    rbac = [m for m in manifests if m["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(rbac))
    sa = next(m for m in rbac if m["kind"] == "ServiceAccount")["metadata"]["name"]
    kubeconfig = str(sa_kubeconfig(kubectl, cluster, ns, sa, tmp_path / "sa.kubeconfig"))
    args = operator_args(manifests)
    assert "--shards=2" in args and "--leader-elect" not in args
    monkeypatch.setenv("POD_NAMESPACE", ns)  # the chart sets it from the downward API
    ops = []
    for _ in range(2):
        op = OperatorProcess(kubeconfig, tmp_path, *args)
        op.spawn()
        replicas.append(op)
        ops.append(op)
    a, b = ops
    wait_for(lambda: len(held(a)) == 1 and len(held(b)) == 1, 120, what="one shard each")
    r = Route(kubectl, ns, route("sharded", keepWarm="1s"))
    r.apply()
    r.wait("Stable", stable, timeout=90)
    a.kill()
    wait_for(lambda: held(b) == {0, 1}, 30, 0.1, what="the survivor holding both shards")
    members = f"shadowroute.io/lease-set={release}-shadowroute,shadowroute.io/lease-role=member"
    wait_for(lambda: len(get_json(kubectl, "leases", "-n", ns, "-l", members)["items"]) == 1,
             30, what="the dead member Lease deleted")  # fmt: skip
    r.set_image("registry.example/app:2")
    r.wait(
        "promoted by the survivor",
        lambda s: stable(s) and (s.get("history") or [{}])[0].get("outcome") == "Promoted",
        timeout=90,
    )
    b.stop()
    for op in ops:
        assert_clean_log(op)
