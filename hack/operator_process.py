"""The real operator (`python -m shadowroute`) as a child process against a cluster,
with its /metrics on a free loopback port. Shared by the end-to-end tests and the
benchmarks; it can be killed at any instant and started again."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cluster import free_port, load_state

ROOT = Path(__file__).resolve().parents[1]


def check_proxy() -> dict[str, str]:
    """The operator runs on the host, outside the pod network: its http checks go
    through the local cluster's pod proxy, as they would go directly from a pod."""
    proxy = (load_state() or {}).get("podProxy")
    return {"SHADOWROUTE_CHECK_PROXY": proxy} if proxy else {}


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: str,
        log_dir: Path | None = None,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = args
        self.kubeconfig = kubeconfig
        self.env = env or {}
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="shadowroute-operator-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.starts = 0
        self.log = self.log_dir / "operator.log"

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process and return at once (it may die before it serves)."""
        self.metrics_port = free_port()
        self.starts += 1
        self.log = self.log_dir / f"operator-{id(self)}-{self.starts}.log"
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "PYTHONUNBUFFERED": "1",
            # The test kubelet runs this image's entry points from this environment.
            "SHADOWROUTE_COMPARATOR_IMAGE": "shadowroute.local/shadowroute",
            **check_proxy(),
            **self.env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shadowroute", "--metrics-port", str(self.metrics_port),
             "--metrics-address", "127.0.0.1", *self.args],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
        return self.proc

    def start(self) -> OperatorProcess:
        """Start the process and wait until it serves /metrics."""
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.metrics()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"operator exited; see {self.log}") from None
                time.sleep(0.2)
        raise RuntimeError(f"operator did not start serving /metrics; see {self.log}")

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
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()

    def sum(self, prefix: str) -> float:
        """The sum of every sample whose line starts with prefix."""
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in self.metrics().splitlines()
            if line.startswith(prefix)
        )

    def writes(self) -> float:
        """API writes made by this operator process so far."""
        return self.sum("shadowroute_api_writes_total{")

    def reconciles(self) -> float:
        """Reconciles this operator process has finished."""
        return self.sum("shadowroute_reconcile_duration_seconds_count")

    def rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")
