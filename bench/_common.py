"""Shared by the benchmarks: the cluster (the local one unless KUBECONFIG is set) and
the real operator as a child process."""

from __future__ import annotations

import math
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))
from operator_process import OperatorProcess  # noqa: E402


def kubeconfig() -> tuple[str, bool]:
    """The kubeconfig to use and whether this process started the local cluster."""
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"], False
    import cluster

    state = cluster.load_state()
    if state and cluster.healthy(state):
        return state["kubeconfig"], False
    return cluster.up()["kubeconfig"], True


@dataclass
class Bench:
    """A benchmark's cluster and its own namespace."""

    config: str
    """The kubeconfig."""
    started: bool
    """This process started the local cluster (and stops it at the end)."""
    core: Any
    custom: Any
    namespace: str

    def parts(self) -> tuple[str, Any, str]:
        """The kubeconfig, the custom-objects client, the namespace."""
        return self.config, self.custom, self.namespace

    def close(self) -> None:
        """Delete the namespace; stop the local cluster if this process started it."""
        self.core.delete_namespace(self.namespace)
        if self.started:
            stop_local_cluster()


def open_bench(prefix: str) -> Bench:
    """Load the cluster's config, make the API clients and a namespace of our own."""
    import kubernetes

    config, started = kubeconfig()
    kubernetes.config.load_kube_config(config_file=config)
    api = kubernetes.client.ApiClient()
    core = kubernetes.client.CoreV1Api(api)
    ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    return Bench(config, started, core, kubernetes.client.CustomObjectsApi(api), ns)


def prometheus_of_cluster() -> tuple[str, str]:
    """The Prometheus to ask and the file_sd directory it scrapes targets from."""
    url = os.environ.get("SHADOWROUTE_PROMETHEUS")
    targets = os.environ.get("SHADOWROUTE_PROMETHEUS_TARGETS")
    if url and targets:
        return url, targets
    import cluster

    state = cluster.load_state() or {}
    return state["prometheus"], state["prometheusTargets"]


def stop_local_cluster() -> None:
    import cluster

    cluster.down()


def start_operator(kubeconfig: str, *args: str) -> OperatorProcess:
    return OperatorProcess(kubeconfig, None, *args).start()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
