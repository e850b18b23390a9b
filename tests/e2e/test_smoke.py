"""The local control plane really works: scheduling, controllers, kwok, CRD
validation and Prometheus scraping. These guard every other end-to-end test."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from .conftest import Cluster, KubectlFn, get_json, wait_for

pytestmark = pytest.mark.e2e


def test_api_server_reports_pinned_version(kubectl: KubectlFn) -> None:
    version = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert version["gitVersion"].startswith("v1.")
    assert version["major"] == "1" and version["minor"].isdigit()


def test_deployment_becomes_available_with_ready_pods(kubectl: KubectlFn, namespace: str) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "example.com/web:1"}]},
            },
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(deployment))
    kubectl("wait", "-n", namespace, "--for=condition=Available", "--timeout=90s", "deployment/web")

    def ready_pods():
        pods = get_json(kubectl, "pods", "-n", namespace, "-l", "app=web")["items"]
        ready = [
            p
            for p in pods
            if p["status"].get("phase") == "Running"
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        return len(ready) == 3 and ready

    pods = wait_for(ready_pods, what="3 ready pods")
    assert all(p["spec"]["nodeName"].startswith("kwok-node-") for p in pods)
    status = get_json(kubectl, "deployment/web", "-n", namespace)["status"]
    assert status["readyReplicas"] == 3 and status["availableReplicas"] == 3


def _httproute(namespace: str, weight: int) -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "checkout", "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": "checkout-primary", "port": 80, "weight": weight},
                        {"name": "checkout-canary", "port": 80, "weight": 10},
                    ],
                    "filters": [
                        {
                            "type": "RequestMirror",
                            "requestMirror": {
                                "backendRef": {"name": "checkout-shadow", "port": 80},
                                "percent": 25,
                            },
                        }
                    ],
                }
            ],
        },
    }


def test_gateway_api_crd_rejects_negative_weight(kubectl: KubectlFn, namespace: str) -> None:
    res = kubectl("apply", "-f", "-", input=yaml.safe_dump(_httproute(namespace, -1)), check=False)
    assert res.returncode != 0
    assert "weight" in res.stderr and "greater than or equal to 0" in res.stderr


def test_gateway_api_crd_accepts_request_mirror_with_percent(
    kubectl: KubectlFn, namespace: str
) -> None:
    kubectl("apply", "-f", "-", input=yaml.safe_dump(_httproute(namespace, 90)))
    live = get_json(kubectl, "httproute/checkout", "-n", namespace)
    mirror = live["spec"]["rules"][0]["filters"][0]["requestMirror"]
    assert mirror["percent"] == 25
    assert mirror["backendRef"]["name"] == "checkout-shadow"


def test_istio_crd_is_served(kubectl: KubectlFn, namespace: str) -> None:
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "checkout", "namespace": namespace},
        "spec": {
            "hosts": ["checkout"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "checkout-primary"}, "weight": 90},
                        {"destination": {"host": "checkout-canary"}, "weight": 10},
                    ],
                    "mirror": {"host": "checkout-shadow"},
                    "mirrorPercentage": {"value": 50.0},
                }
            ],
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(vs))
    live = get_json(kubectl, "virtualservice/checkout", "-n", namespace)
    assert live["spec"]["http"][0]["mirrorPercentage"] == {"value": 50.0}


class _Metrics(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args) -> None:
        pass


def test_prometheus_scrapes_a_target_started_by_the_test(cluster: Cluster, request) -> None:
    if not cluster.prometheus or not cluster.prometheus_targets:
        pytest.skip("no Prometheus configured for this cluster")
    marker = f"smoke_{int(time.time() * 1000)}"
    handler = type(
        "Handler", (_Metrics,), {"body": f'shadowroute_smoke_value{{run="{marker}"}} 42\n'.encode()}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target_file = cluster.prometheus_targets / f"{marker}.json"
    target_file.write_text(
        json.dumps(
            [{"targets": [f"127.0.0.1:{server.server_address[1]}"], "labels": {"test": marker}}]
        )
    )
    try:
        query = urllib.parse.urlencode({"query": f'shadowroute_smoke_value{{run="{marker}"}}'})

        def answered():
            with urllib.request.urlopen(
                f"{cluster.prometheus}/api/v1/query?{query}", timeout=5
            ) as r:
                result = json.load(r)["data"]["result"]
            return result and result[0]

        sample = wait_for(answered, timeout=30, what="Prometheus to scrape the test target")
        assert float(sample["value"][1]) == 42
        assert sample["metric"]["test"] == marker
    finally:
        target_file.unlink(missing_ok=True)
        server.shutdown()
