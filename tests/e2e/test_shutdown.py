"""SIGTERM, as a rolling update of the operator sends it: the real operator exits with
code 0, leaves no task behind for kopf to wait on, and releases its Lease so a stand-by
can take over without waiting for it to expire; a stand-by stops as cleanly.

How long it takes is a benchmark, not an assertion here: `python bench/shutdown.py
[--leader-elect]` prints the SIGTERM -> exit and SIGTERM -> stand-by leads figures."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from .conftest import Cluster, KubectlFn, OperatorProcess, get_json, wait_for
from .test_rollout import route, stable

pytestmark = pytest.mark.e2e
LEASE = "shutdown-test"


@pytest.fixture
def candidates() -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for op in started:
        op.stop()


def candidate(cluster: Cluster, ns: str, tmp_path, started: list[OperatorProcess]):
    op = OperatorProcess(
        cluster.kubeconfig, tmp_path, "--namespace", ns, "--leader-elect",
        "--leader-election-namespace", ns, "--leader-election-id", LEASE, "--verbose",
    ).start()  # fmt: skip
    started.append(op)
    return op


def leads(op: OperatorProcess) -> bool:
    return op.sum("shadowroute_leader ") == 1


def lease(kubectl: KubectlFn, ns: str) -> dict[str, Any]:
    return get_json(kubectl, "lease", LEASE, "-n", ns).get("spec") or {}


def terminate(op: OperatorProcess) -> int:
    assert op.proc is not None
    op.proc.send_signal(signal.SIGTERM)
    try:
        return op.proc.wait(30)  # a bound for a hung process, not a measure of speed
    except subprocess.TimeoutExpired:
        raise AssertionError(f"no exit within 30 s of SIGTERM; see {op.log}") from None


def test_the_leader_at_rest_exits_0_leaves_no_task_behind_and_releases_the_lease(
    cluster: Cluster,
    kubectl: KubectlFn,
    own_namespace: str,
    candidates: list[OperatorProcess],
    tmp_path,
) -> None:
    ns = own_namespace
    leader = candidate(cluster, ns, tmp_path, candidates)
    wait_for(lambda: leads(leader), 60, what="the leader")
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(route("web")))
    wait_for(
        lambda: stable(get_json(kubectl, "shadowroute", "web", "-n", ns).get("status") or {}),
        60,
        what="Stable",
    )
    held = lease(kubectl, ns)["holderIdentity"]
    assert held and held in leader.log.read_text()
    assert terminate(leader) == 0
    assert lease(kubectl, ns).get("holderIdentity", "") == "", "released, not left to expire"
    log = leader.log.read_text()
    assert "released the lease" in log
    # kopf waits up to 5 s for tasks still running after its own have stopped, then
    # cancels them: none may be left (the task waiting on a stop flag was one).
    assert "Hung tasks stopping is skipped: no tasks given" in log, log[-3000:]
    assert "Traceback" not in log


def test_a_stand_by_exits_0_on_sigterm_and_leaves_the_lease_alone(
    cluster: Cluster,
    kubectl: KubectlFn,
    own_namespace: str,
    candidates: list[OperatorProcess],
    tmp_path,
) -> None:
    ns = own_namespace
    leader = candidate(cluster, ns, tmp_path, candidates)
    wait_for(lambda: leads(leader), 60, what="the leader")
    standby = candidate(cluster, ns, tmp_path, candidates)
    wait_for(lambda: "standing by" in standby.log.read_text(), 30, what="the stand-by")
    before = lease(kubectl, ns)
    assert terminate(standby) == 0, "a clean exit, not killed by the signal"
    assert "stopped while standing by" in standby.log.read_text()
    after = lease(kubectl, ns)
    assert after["holderIdentity"] == before["holderIdentity"] != ""
    assert leads(leader)
    # And the hand-over: the leader goes, a new stand-by takes the released Lease.
    successor = candidate(cluster, ns, tmp_path, candidates)
    wait_for(lambda: "standing by" in successor.log.read_text(), 30, what="the successor")
    assert terminate(leader) == 0
    wait_for(lambda: leads(successor), 30, what="the successor to lead")
    spec = lease(kubectl, ns)
    assert spec["holderIdentity"] not in ("", before["holderIdentity"])
    assert spec["leaseTransitions"] == before.get("leaseTransitions", 0) + 1, json.dumps(spec)
