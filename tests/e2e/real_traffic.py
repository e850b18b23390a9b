"""Real requests for the end-to-end tests: ShadowRoutes of the sample app (pods that
are real processes, hack/test_kubelet.py) behind the local cluster's Envoy Gateway,
loaded by hack/load.py, and the pods' own counters read through the pod proxy.

Everything here is judged by what requests saw: the load generator's records (the
X-Version header of each answer) and the counters the pods themselves kept. Nothing
reads the weights back from a route to decide what traffic did."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack"))
import cluster as local_cluster  # noqa: E402
from load import Load, Record  # noqa: E402

from .conftest import KubectlFn, get_json  # noqa: E402
from .test_rollout import route  # noqa: E402

APP_IMAGE = "shadowroute.local/sample-app"
APP_PORT = 9898


def data_plane() -> dict[str, str]:
    """The gateway and the pod proxy of the local cluster (or of $SHADOWROUTE_GATEWAY /
    $SHADOWROUTE_POD_PROXY for another test world)."""
    if os.environ.get("SHADOWROUTE_GATEWAY"):
        return {
            "gateway": os.environ["SHADOWROUTE_GATEWAY"],
            "podProxy": os.environ.get("SHADOWROUTE_POD_PROXY", ""),
        }
    state = local_cluster.load_state() or {}
    if "gateway" not in state:
        pytest.fail("the local cluster has no data plane (state.json has no gateway)")
    return {"gateway": state["gateway"], "podProxy": state["podProxy"]}


def app_route(
    name: str,
    namespace: str,
    version: str = "v1",
    env: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A ShadowRoute of the sample app at `version` on the local gateway; its hostname
    is unique to this route and namespace."""
    defaults: dict[str, Any] = {
        "template": app_template(name, version, env),
        "service": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        "strategy": {"canary": {"steps": [{"weight": 50, "pause": {}}]}},
        "progressDeadline": "90s",
        "traffic": {
            "provider": "gatewayapi",
            "gatewayAPI": {
                "parentRefs": [{"name": "public", "namespace": "shadowroute-gateway"}],
                "hostnames": [hostname(name, namespace)],
            },
        },
    }
    return route(name, **{**defaults, **spec})


def hostname(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.test"


def app_template(name: str, version: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    variables = {"VERSION": version, **(env or {})}
    return {
        "metadata": {"labels": {"app": name}, "annotations": {"prometheus.io/scrape": "true"}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": f"{APP_IMAGE}:{version}",
                    "env": [{"name": k, "value": v} for k, v in variables.items()],
                    "ports": [{"name": "http", "containerPort": APP_PORT}],
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http"},
                        "periodSeconds": 1,
                    },
                }
            ]
        },
    }


def load(host: str, **options: Any) -> Load:
    """Bounded load at the gateway for `host`; records every request."""
    options.setdefault("rate", 50)
    if "requests" not in options:
        options.setdefault("duration", 60)
    return Load(data_plane()["gateway"], host=host, record=True, **options)


def served_by(records: list[Record], version: str) -> list[Record]:
    return [r for r in records if r.version == version]


def within_binomial(hits: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    """hits out of n is what a share p gives, within `sigmas` standard deviations."""
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return abs(hits - n * p) <= spread + 1


def pod_opener() -> urllib.request.OpenerDirector:
    """urllib through the pod proxy: the only way from the host to a pod's address."""
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": data_plane()["podProxy"]})
    )


def pod_requests(kubectl: KubectlFn, namespace: str, service: str) -> int:
    """Requests the pods behind `service` counted themselves (their http_requests_total),
    read from each pod through the pod proxy: the only way to see a mirror's copies,
    whose answers never reach a client."""
    slices = get_json(
        kubectl, "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}"
    )["items"]
    addresses = {a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]}
    opener = pod_opener()
    total = 0
    for address in sorted(addresses):
        with opener.open(f"http://{address}:{APP_PORT}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            if line.startswith("http_requests_total{"):
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:4]}"


def dump(records: list[Record]) -> str:
    """The records as JSON lines, for an assertion message."""
    return "\n".join(json.dumps(dataclasses.asdict(r)) for r in records[-20:])
