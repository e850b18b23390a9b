"""Shared by the benchmarks: the cluster (the local one unless KUBECONFIG is set) and
the real operator as a child process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))


def kubeconfig() -> tuple[str, bool]:
    """The kubeconfig to use and whether this process started the local cluster."""
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"], False
    import cluster

    state = cluster.load_state()
    if state and cluster.healthy(state):
        return state["kubeconfig"], False
    return cluster.up()["kubeconfig"], True


def stop_local_cluster() -> None:
    import cluster

    cluster.down()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Operator:
    """`python -m shadowroute` against the cluster, with its /metrics on loopback."""

    def __init__(self, kubeconfig: str, *args: str) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="shadowroute-operator-", suffix=".log")[1])
        env = {**os.environ, "KUBECONFIG": kubeconfig}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shadowroute", "--metrics-port", str(self.port),
             "--metrics-address", "127.0.0.1", *args],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.metrics()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"operator exited; see {self.log}") from None
                time.sleep(0.2)
        raise RuntimeError("operator did not start")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def sum(self, prefix: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in self.metrics().splitlines()
            if line.startswith(prefix)
        )

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]
