"""The test kubelet on the local cluster: pods of the test world's images are real
processes, Ready only when their probe answers, stopped when deleted; other pods stay
kwok fakes; what it cannot run is said in the pod's status. And the rest of a node's
and a cluster's plumbing around them: Service variables, ClusterIPs that answer
(hack/kube_proxy.py), the API server's service and pod proxy, Prometheus' pod
annotations, the operator's own image run as its non-root user."""

from __future__ import annotations

import ast
import ipaddress
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import KubectlFn, get_json, wait_for
from .real_traffic import APP_IMAGE, APP_PORT, local_cluster, pod_opener

pytestmark = pytest.mark.e2e


def pod(name: str, image: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                    "ports": [{"name": "http", "containerPort": APP_PORT}],
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http"},
                        "periodSeconds": 1,
                        "failureThreshold": 1,
                    },
                }
            ],
            "terminationGracePeriodSeconds": 2,
        },
    }


def create(kubectl: KubectlFn, namespace: str, body: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def status(kubectl: KubectlFn, namespace: str, name: str) -> dict[str, Any]:
    return get_json(kubectl, "pod", name, "-n", namespace).get("status") or {}


def ready(s: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in s.get("conditions") or [])


def container(s: dict[str, Any]) -> dict[str, Any]:
    return (s.get("containerStatuses") or [{}])[0]


def via_pod_proxy(ip: str, path: str) -> tuple[int, dict[str, str]]:
    with pod_opener().open(f"http://{ip}:{APP_PORT}{path}", timeout=5) as resp:
        return resp.status, dict(resp.headers)


def test_a_sample_app_pod_is_a_real_process_serving_on_its_own_address(
    kubectl: KubectlFn, namespace: str
) -> None:
    create(kubectl, namespace, pod("real", f"{APP_IMAGE}:v7", {"VERSION": "v7"}))
    s = wait_for(lambda: (s := status(kubectl, namespace, "real")) and ready(s) and s, 60)
    assert ipaddress.ip_address(s["podIP"]) in ipaddress.ip_network("10.244.128.0/17")
    code, headers = via_pod_proxy(s["podIP"], "/hello")
    assert code == 200 and headers["X-Version"] == "v7"
    pid = int(container(s)["containerID"].removeprefix("testkubelet://"))
    assert os.path.exists(f"/proc/{pid}")
    kubectl("delete", "pod", "real", "-n", namespace, "--wait=false")
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 30, 0.2, "the process to stop")


def test_a_pod_whose_probe_fails_runs_but_is_never_ready(
    kubectl: KubectlFn, namespace: str
) -> None:
    create(kubectl, namespace, pod("sick", f"{APP_IMAGE}:v1", {"HEALTHZ_FAIL": "1"}))
    s = wait_for(
        lambda: (
            (s := status(kubectl, namespace, "sick"))
            and "running" in container(s).get("state", {})
            and s
        ),
        60,
    )
    # The process is up and answers; its probe gets 503, and it stays out of Ready.
    wait_for(lambda: answers(s["podIP"]), 30, 0.2, "the sick pod's process to answer")
    event = wait_for(lambda: unhealthy(kubectl, namespace, "sick"), 60, 0.5, "Unhealthy")
    assert event["message"].startswith("Readiness probe failed:"), event
    s = status(kubectl, namespace, "sick")
    assert not ready(s) and container(s)["restartCount"] == 0


def answers(ip: str) -> bool:
    try:
        return via_pod_proxy(ip, "/hello")[0] == 200
    except OSError:
        return False


def unhealthy(kubectl: KubectlFn, namespace: str, name: str) -> dict[str, Any] | None:
    events = get_json(kubectl, "events", "-n", namespace)["items"]
    return next(
        (e for e in events if e["reason"] == "Unhealthy" and e["involvedObject"]["name"] == name),
        None,
    )


def test_an_unknown_test_world_image_waits_with_a_reason(
    kubectl: KubectlFn, namespace: str
) -> None:
    create(kubectl, namespace, pod("unknown", "shadowroute.local/no-such-app:1"))
    waiting = wait_for(
        lambda: container(status(kubectl, namespace, "unknown")).get("state", {}).get("waiting"),
        60,
    )
    assert waiting["reason"] == "CreateContainerConfigError"
    assert "not one the test world runs" in waiting["message"]


def test_other_images_stay_kwok_fakes(kubectl: KubectlFn, namespace: str) -> None:
    create(kubectl, namespace, pod("fake", "registry.example/app:1"))
    s = wait_for(lambda: (s := status(kubectl, namespace, "fake")) and ready(s) and s, 60)
    assert ipaddress.ip_address(s["podIP"]) in ipaddress.ip_network("10.244.0.0/17")
    assert not container(s).get("containerID", "").startswith("testkubelet://")


def test_a_container_that_exits_is_restarted_or_ends_the_pod_per_its_policy(
    kubectl: KubectlFn, namespace: str
) -> None:
    broken = {"ERROR_RATE": "not-a-number"}  # the sample app exits 2 on a bad setting
    always = pod("always", f"{APP_IMAGE}:v1", broken)
    never = pod("never", f"{APP_IMAGE}:v1", broken)
    never["spec"]["restartPolicy"] = "Never"
    create(kubectl, namespace, always)
    create(kubectl, namespace, never)
    ended = wait_for(
        lambda: (s := status(kubectl, namespace, "never")).get("phase") == "Failed" and s, 60
    )
    assert container(ended)["state"]["terminated"]["exitCode"] == 2
    restarted = wait_for(
        lambda: (
            container(s := status(kubectl, namespace, "always")).get("restartCount", 0) >= 1 and s
        ),
        60,
    )
    assert not ready(restarted)


# --------------------------------------------------------------------------- services


OPERATOR_IMAGE = "shadowroute.local/shadowroute:dev"
RESTRICTED = {
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def service(name: str, selector: dict[str, str], ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": ports},
    }


def app_pod(name: str, version: str, labels: dict[str, str]) -> dict[str, Any]:
    body = pod(name, f"{APP_IMAGE}:{version}", {"VERSION": version})
    body["metadata"]["labels"] = labels
    return body


def python_pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
    """A pod of the operator's image running `python -c script` once, as its image's
    non-root user with a restricted securityContext."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532},
            "containers": [
                {
                    "name": "main",
                    "image": OPERATOR_IMAGE,
                    "command": ["python", "-c", script],
                    "securityContext": RESTRICTED,
                }
            ],
            "terminationGracePeriodSeconds": 2,
            **spec,
        },
    }


def finished(kubectl: KubectlFn, namespace: str, name: str) -> dict[str, Any]:
    s = wait_for(
        lambda: (
            (s := status(kubectl, namespace, name)).get("phase") in ("Succeeded", "Failed") and s
        ),
        60,
        0.5,
        f"pod {name} to finish",
    )
    return s


def pod_log(namespace: str, pod_name: str, container_name: str = "main") -> str:
    state = local_cluster.load_state() or {}
    logs = Path(state["processes"][0]["log"]).parent / "pods"
    return (logs / f"{namespace}_{pod_name}_{container_name}.log").read_text()


def two_ready_pods_behind(kubectl: KubectlFn, namespace: str, name: str) -> None:
    for version in ("v1", "v2"):
        create(kubectl, namespace, app_pod(f"{name}-{version}", version, {"app": name}))
    create(
        kubectl,
        namespace,
        service(name, {"app": name}, [{"name": "http", "port": 80, "targetPort": "http"}]),
    )
    wait_for(lambda: len(ready_addresses(kubectl, namespace, name)) == 2, 60, 0.5, "2 endpoints")


def ready_addresses(kubectl: KubectlFn, namespace: str, svc: str) -> set[str]:
    slices = get_json(
        kubectl, "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={svc}"
    )["items"]
    return {
        a
        for s in slices
        for e in s.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready") is not False
        for a in e["addresses"]
    }


def cluster_ip(kubectl: KubectlFn, namespace: str, name: str) -> str:
    return get_json(kubectl, "service", name, "-n", namespace)["spec"]["clusterIP"]


def test_a_container_gets_the_variables_of_the_services_of_its_namespace(
    kubectl: KubectlFn, namespace: str
) -> None:
    create(
        kubectl,
        namespace,
        service(
            "checkout-shadow",
            {"app": "none"},
            [{"port": 80, "name": "http"}, {"port": 9090, "name": "metrics-port"}],
        ),
    )
    create(kubectl, namespace, service("mine", {"app": "none"}, [{"port": 81, "name": "http"}]))
    script = (
        "import os; print(sorted((k, v) for k, v in os.environ.items() "
        "if k.startswith(('CHECKOUT_SHADOW_', 'MINE_', 'KUBERNETES_SERVICE_'))))"
    )
    body = python_pod("env", script)
    body["spec"]["containers"][0]["env"] = [
        {"name": "MINE_SERVICE_HOST", "value": "explicit"},  # container env wins
        {
            "name": "TARGET",
            "value": "$(CHECKOUT_SHADOW_SERVICE_HOST):$(CHECKOUT_SHADOW_SERVICE_PORT)",
        },
    ]
    body["spec"]["containers"][0]["command"][2] = script.replace(
        "'KUBERNETES_SERVICE_'", "'KUBERNETES_SERVICE_', 'TARGET'"
    )
    create(kubectl, namespace, body)
    s = finished(kubectl, namespace, "env")
    assert s["phase"] == "Succeeded", s
    env = dict(ast.literal_eval(pod_log(namespace, "env").strip().splitlines()[-1]))
    ip = cluster_ip(kubectl, namespace, "checkout-shadow")
    assert env["CHECKOUT_SHADOW_SERVICE_HOST"] == ip
    assert env["CHECKOUT_SHADOW_SERVICE_PORT"] == "80"
    assert env["CHECKOUT_SHADOW_SERVICE_PORT_HTTP"] == "80"
    assert env["CHECKOUT_SHADOW_SERVICE_PORT_METRICS_PORT"] == "9090"
    assert env["CHECKOUT_SHADOW_PORT"] == f"tcp://{ip}:80"
    assert env["TARGET"] == f"{ip}:80"
    assert env["MINE_SERVICE_HOST"] == "explicit" and env["MINE_SERVICE_PORT"] == "81"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"

    # enableServiceLinks: false: only the API server's Service.
    create(kubectl, namespace, python_pod("nolinks", script, enableServiceLinks=False))
    assert finished(kubectl, namespace, "nolinks")["phase"] == "Succeeded"
    env = dict(ast.literal_eval(pod_log(namespace, "nolinks").strip().splitlines()[-1]))
    assert not [k for k in env if k.startswith(("CHECKOUT_SHADOW_", "MINE_"))], env
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


def test_successive_connections_to_a_cluster_ip_reach_both_ready_pods(
    kubectl: KubectlFn, namespace: str
) -> None:
    two_ready_pods_behind(kubectl, namespace, "rr")
    ip = cluster_ip(kubectl, namespace, "rr")
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/16")

    def versions(n: int) -> list[str]:
        out = []
        for _ in range(n):
            with pod_opener().open(f"http://{ip}/hello", timeout=5) as resp:
                out.append(resp.headers["X-Version"])
        return out

    # Until the proxy has seen both endpoints, a pair may land on one pod.
    wait_for(lambda: set(versions(2)) == {"v1", "v2"}, 30, 0.2, "both pods behind the IP")
    seen = versions(4)
    assert set(seen[:2]) == set(seen[2:]) == {"v1", "v2"}, seen  # round-robin per connection

    # A pod reaches it too, by its Service variables, as a comparator would.
    script = (
        "import os, urllib.request\n"
        "url = f\"http://{os.environ['RR_SERVICE_HOST']}:{os.environ['RR_SERVICE_PORT_HTTP']}\"\n"
        "print(sorted(urllib.request.urlopen(url + '/hello').headers['X-Version'] "
        "for _ in range(2)))"
    )
    create(kubectl, namespace, python_pod("client", script))
    assert finished(kubectl, namespace, "client")["phase"] == "Succeeded"
    assert pod_log(namespace, "client").strip().splitlines()[-1] == "['v1', 'v2']"

    # The Service goes: so does its listener (the connection is refused or closed).
    kubectl("delete", "service", "rr", "-n", namespace)
    wait_for(lambda: not answers_at(ip), 30, 0.2, "the ClusterIP to stop answering")


def answers_at(ip: str) -> bool:
    try:
        with pod_opener().open(f"http://{ip}/hello", timeout=5) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def test_the_api_servers_service_and_pod_proxy_reach_real_pods(
    kubectl: KubectlFn, namespace: str
) -> None:
    two_ready_pods_behind(kubectl, namespace, "proxied")
    base = f"/api/v1/namespaces/{namespace}"
    versions = set()
    for _ in range(20):  # the API server picks an endpoint at random
        body = json.loads(kubectl("get", "--raw", f"{base}/services/proxied:http/proxy/hi").stdout)
        assert body["path"] == "/hi"
        versions.add(body["version"])
        if versions == {"v1", "v2"}:
            break
    assert versions <= {"v1", "v2"} and versions, versions
    body = json.loads(kubectl("get", "--raw", f"{base}/pods/proxied-v2:{APP_PORT}/proxy/x").stdout)
    assert body["version"] == "v2"


def test_a_pod_annotated_with_a_metrics_port_is_scraped_only_there(
    kubectl: KubectlFn, namespace: str, prometheus: str
) -> None:
    body = pod("scraped", f"{APP_IMAGE}:v1", {"VERSION": "v1"})
    body["metadata"]["labels"] = {"app": "scraped"}
    body["metadata"]["annotations"] = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORT),
        "prometheus.io/path": "/metrics",
    }
    metrics = {
        "name": "metrics",
        "image": f"{APP_IMAGE}:v1",
        "env": [{"name": "VERSION", "value": "metrics"}],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
    }
    body["spec"]["containers"].append(metrics)
    create(kubectl, namespace, body)
    create(
        kubectl,
        namespace,
        service(
            "scraped",
            {"app": "scraped"},
            [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"},
            ],
        ),
    )
    ip = wait_for(lambda: (s := status(kubectl, namespace, "scraped")) and ready(s) and s)["podIP"]

    def targets() -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{prometheus}/api/v1/targets?state=active") as resp:
            active = json.load(resp)["data"]["activeTargets"]
        return [t for t in active if t["labels"].get("namespace") == namespace]

    found = wait_for(
        lambda: (t := targets()) and all(x["health"] == "up" for x in t) and t,
        60,
        1,
        "the pod's target up",
    )
    assert [t["scrapeUrl"] for t in found] == [f"http://{ip}:{METRICS_PORT}/metrics"], found
    assert found[0]["labels"]["service"] == "scraped"
    assert found[0]["labels"]["container"] == "metrics"


METRICS_PORT = 9899


def test_an_operator_image_pod_runs_its_entry_point_as_its_user(
    kubectl: KubectlFn, namespace: str
) -> None:
    body = python_pod("op", "")
    body["spec"]["containers"][0]["command"] = ["shadowroute-operator", "--help"]
    who = {
        "name": "who",
        "image": OPERATOR_IMAGE,
        "command": ["/opt/shadowroute/bin/python"],  # the image's path works too
        "args": ["-c", "import os; print(os.getuid(), os.getgid(), os.getcwd())"],
        "securityContext": RESTRICTED,
    }
    body["spec"]["containers"].append(who)
    create(kubectl, namespace, body)
    s = finished(kubectl, namespace, "op")
    assert s["phase"] == "Succeeded", s
    assert "usage: shadowroute-operator" in pod_log(namespace, "op")
    assert pod_log(namespace, "op", "who").strip().splitlines()[-1] == "65532 65532 /"

    for name, change, reason in [
        ("nocommand", {"command": None}, "needs a command"),
        ("unknown", {"command": ["no-such-entry-point"]}, "is not an entry point"),
        ("root", {"securityContext": {"runAsUser": 0}}, "runAsNonRoot"),
    ]:
        bad = python_pod(name, "")
        c = bad["spec"]["containers"][0]
        for key, value in change.items():
            if value is None:
                c.pop(key)
            else:
                c[key] = value
        create(kubectl, namespace, bad)
        waiting = wait_for(
            lambda n=name: container(status(kubectl, namespace, n)).get("state", {}).get("waiting"),
            60,
        )
        assert waiting["reason"] == "CreateContainerConfigError", waiting
        assert reason in waiting["message"], waiting
