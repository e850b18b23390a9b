"""Shared by the benchmarks: the cluster (the local one unless KUBECONFIG is set) and
the real operator as a child process."""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
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


def open_bench(prefix: str, prometheus: bool = False) -> Bench:
    """Load the cluster's config, make the API clients and a namespace of our own. With
    `prometheus`, a missing Prometheus setting stops the bench before anything is made."""
    import kubernetes

    if prometheus and os.environ.get("KUBECONFIG"):
        prometheus_of_cluster()
    config, started = kubeconfig()
    kubernetes.config.load_kube_config(config_file=config)
    api = kubernetes.client.ApiClient()
    core = kubernetes.client.CoreV1Api(api)
    install_crds(api)
    ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    return Bench(config, started, core, kubernetes.client.CustomObjectsApi(api), ns)


def install_crds(api: Any) -> None:
    """Create (or update) the operator's CRDs from crds/ and wait until they serve."""
    import kubernetes
    import yaml

    ext = kubernetes.client.ApiextensionsV1Api(api)
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        try:
            ext.create_custom_resource_definition(crd)
        except kubernetes.client.exceptions.ApiException as exc:
            if exc.status != 409:
                raise
            live = ext.read_custom_resource_definition(name)
            crd["metadata"]["resourceVersion"] = live.metadata.resource_version
            ext.replace_custom_resource_definition(name, crd)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            conds = ext.read_custom_resource_definition(name).status.conditions or []
            if any(c.type == "Established" and c.status == "True" for c in conds):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"CRD {name} not Established after 60 s")


def prometheus_of_cluster() -> tuple[str, str]:
    """The Prometheus to ask and the file_sd directory it scrapes targets from:
    $SHADOWROUTE_PROMETHEUS and $SHADOWROUTE_PROMETHEUS_TARGETS, else the local
    cluster's. With KUBECONFIG set the local cluster is not the one benchmarked, so its
    Prometheus is not used: a missing setting is a one-line error naming it."""
    url = os.environ.get("SHADOWROUTE_PROMETHEUS")
    targets = os.environ.get("SHADOWROUTE_PROMETHEUS_TARGETS")
    if url and targets:
        return url, targets
    if os.environ.get("KUBECONFIG") and not _is_local(os.environ["KUBECONFIG"]):
        missing = [
            name
            for name, value in (
                ("SHADOWROUTE_PROMETHEUS", url),
                ("SHADOWROUTE_PROMETHEUS_TARGETS", targets),
            )
            if not value
        ]
        raise SystemExit(
            f"KUBECONFIG is set, so the benchmark needs {' and '.join(missing)}: the URL of "
            "the Prometheus that scrapes that cluster and the file_sd directory it reads "
            "targets from (or unset KUBECONFIG, or point it at the local cluster)"
        )
    import cluster

    state = cluster.load_state() or {}
    if not state.get("prometheus"):
        raise SystemExit("no local cluster: run `make cluster-up` or set KUBECONFIG")
    return state["prometheus"], state["prometheusTargets"]


def _is_local(config: str) -> bool:
    """KUBECONFIG names the local cluster's own kubeconfig (as the quickstart exports)."""
    import cluster

    state = cluster.load_state() or {}
    local = state.get("kubeconfig")
    return bool(local) and os.path.realpath(config) == os.path.realpath(local)


def gateway_of_cluster() -> str:
    """The gateway's URL on host loopback (send the route's hostname as Host):
    $SHADOWROUTE_GATEWAY, else the local cluster's state file."""
    url = os.environ.get("SHADOWROUTE_GATEWAY")
    if url:
        return url
    import cluster

    state = cluster.load_state() or {}
    if not state.get("gateway"):
        raise RuntimeError("no gateway: set SHADOWROUTE_GATEWAY or run hack/cluster.py up")
    return state["gateway"]


def gateway_ref() -> dict[str, str]:
    """The Gateway real-traffic routes attach to (the local cluster's, unless
    SHADOWROUTE_GATEWAY_REF=<namespace>/<name>)."""
    ref = os.environ.get("SHADOWROUTE_GATEWAY_REF", "shadowroute-gateway/public")
    namespace, _, name = ref.partition("/")
    return {"name": name, "namespace": namespace}


def sample_app(
    version: str, env: dict[str, str] | None = None, replicas: int = 2
) -> dict[str, Any]:
    """The spec fields that run the sample app (examples/app/server.py) at `version`:
    replicas, a template the local test kubelet runs as real processes (and Prometheus
    scrapes), and a Service port 80 to the app's port."""
    values = {"VERSION": version, **(env or {})}
    return {
        "replicas": replicas,
        "template": {
            "metadata": {"annotations": {"prometheus.io/scrape": "true"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": f"shadowroute.local/sample-app:{version}",
                        "env": [{"name": k, "value": v} for k, v in values.items()],
                        "ports": [{"name": "http", "containerPort": 9898}],
                        "readinessProbe": {
                            "httpGet": {"path": "/healthz", "port": "http"},
                            "periodSeconds": 1,
                        },
                    }
                ]
            },
        },
        "service": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def wait_pods_gone(core: Any, namespace: str, name: str, timeout: float = 60) -> None:
    """Until no pod of ShadowRoute `name` is left (its processes stopped), or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(namespace, label_selector=f"shadowroute.io/name={name}")
        if not pods.items:
            return
        time.sleep(0.5)


def stop_local_cluster() -> None:
    import cluster

    cluster.down()


def start_operator(kubeconfig: str, *args: str) -> OperatorProcess:
    return OperatorProcess(kubeconfig, None, *args).start()


def wait(check: Any, timeout: float, what: str) -> Any:
    """Poll check() every 0.2 s until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def summary(values: list[float]) -> dict[str, float]:
    """min, median and max of a non-empty list, to the millisecond."""
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
