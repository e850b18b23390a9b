"""Nothing read at rest (issue 15, item 1), against the real API server: a reconcile
reads its ShadowRoute and children from the watch index (kube/store.py), so an
operator at rest makes no GET or LIST over whole resyncs, by its own read counter
(the API server's count is bench/scale.py's, on a cluster of its own); a restarted
operator lists each kind once (the ShadowRoutes once more after kopf's own listing) and
re-decides with nothing written; and a child deleted while the operator's watches were
down (the API server restarted: the children's watch resumes from a resourceVersion the
new watch cache no longer has, gets 410 Gone and LISTs again, never seeing the
deletion) is found missing by that LIST, and put back."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
import yaml

from .conftest import Cluster, KubectlFn, OperatorProcess, get_json, local_cluster, wait_for
from .test_rollout import route, stable

pytestmark = pytest.mark.e2e
ROUTES = ("web", "api", "shop")
RESYNC = "3"


@pytest.fixture
def operators() -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for op in started:
        if op.proc and op.proc.poll() is None:
            os.kill(op.proc.pid, signal.SIGCONT)
        op.stop()


def run_operator(cluster: Cluster, tmp_path, started: list, *args: str) -> OperatorProcess:
    op = OperatorProcess(
        cluster.kubeconfig, tmp_path, *args, env={"SHADOWROUTE_RESYNC_SECONDS": RESYNC}
    ).start()
    started.append(op)
    return op


def apply_routes(kubectl: KubectlFn, ns: str, names: tuple[str, ...]) -> None:
    docs = [route(n) for n in names]
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
    for name in names:

        def is_stable(name: str = name) -> bool:
            return stable(get_json(kubectl, "shadowroute", name, "-n", ns).get("status") or {})

        wait_for(is_stable, 90, what=f"{name} Stable")


def at_rest(op: OperatorProcess, routes: int) -> None:
    """Until a whole round of resyncs (every route reconciled again) writes nothing."""

    def quiet() -> bool:
        writes, done = op.writes(), op.reconciles()
        wait_for(lambda: op.reconciles() >= done + routes, 60, what="a round of resyncs")
        return op.writes() == writes

    wait_for(quiet, 180, every=0.1, what="rest")


def operator_reads(op: OperatorProcess) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in op.metrics().splitlines():
        if line.startswith("shadowroute_api_reads_total{"):
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            out[kind] = float(line.rsplit(" ", 1)[1])
    return out


def test_at_rest_nothing_is_read_and_a_restart_re_decides_with_nothing_written(
    cluster: Cluster,
    kubectl: KubectlFn,
    own_namespace: str,
    operators: list[OperatorProcess],
    tmp_path,
) -> None:
    ns = own_namespace
    op = run_operator(cluster, tmp_path, operators, "--namespace", ns)
    apply_routes(kubectl, ns, ROUTES)
    at_rest(op, len(ROUTES))
    reads, writes, done = operator_reads(op), op.writes(), op.reconciles()
    # Two whole rounds of resyncs: each route reconciled twice more, from memory.
    wait_for(lambda: op.reconciles() >= done + 2 * len(ROUTES), 60, what="two resyncs")
    assert operator_reads(op) == reads, "the operator read at rest"
    # Not the API server's apiserver_request_total: it counts everyone's reads, and the
    # session's traffic simulator reads every route of the cluster. bench/scale.py
    # measures it on a cluster of its own (docs/benchmarks.md#scale).
    assert op.writes() == writes

    # A restart: every kind listed once at start (and once after kopf's own listing,
    # the re-list sweep), whatever the number of routes; every route re-decided from
    # that, with nothing written.
    op.stop()
    again = run_operator(cluster, tmp_path, operators, "--namespace", ns)
    wait_for(lambda: again.reconciles() >= 2 * len(ROUTES), 60, what="the routes re-decided")
    assert again.writes() == 0, again.log.read_text()[-3000:]
    listed = operator_reads(again)
    assert listed and max(listed.values()) <= 2, listed


def test_a_child_deleted_while_the_watch_was_down_is_put_back(
    cluster: Cluster,
    kubectl: KubectlFn,
    own_namespace: str,
    operators: list[OperatorProcess],
    tmp_path,
) -> None:
    state = local_cluster.load_state()
    if not state or state.get("kubeconfig") != cluster.kubeconfig:
        pytest.skip("restarts the local cluster's kube-apiserver")
    ns = own_namespace
    # A pattern: cluster-wide watches and LISTs, kept to the namespaces it matches.
    op = run_operator(cluster, tmp_path, operators, "--namespace", f"{ns}*", "--verbose")
    apply_routes(kubectl, ns, ROUTES[:2])
    at_rest(op, 2)
    old = get_json(kubectl, "service", "web-canary", "-n", ns)["metadata"]["uid"]
    purged = op.sum('shadowroute_store_purged_total{kind="Service"}')
    assert op.proc is not None
    os.kill(op.proc.pid, signal.SIGSTOP)  # its watches see nothing from here on
    try:
        local_cluster.restart_apiserver()  # every watch cut; the new cache starts now
        kubectl("delete", "service", "web-canary", "-n", ns)
    finally:
        os.kill(op.proc.pid, signal.SIGCONT)

    def put_back() -> bool:
        found = kubectl("get", "service", "web-canary", "-n", ns, "-o", "json", check=False)
        return (
            found.returncode == 0
            and get_json(kubectl, "service", "web-canary", "-n", ns)["metadata"]["uid"] != old
        )

    wait_for(put_back, 120, what="web-canary put back")
    # It was the watch's LIST after the 410 that found it gone, not a watch event.
    assert op.sum('shadowroute_store_purged_total{kind="Service"}') == purged + 1
    log = op.log.read_text()
    assert "watch of Service: resourceVersion too old (410 Gone), listing again" in log
    assert "Service " + f"{ns}/web-canary was deleted while the watch was down" in log
