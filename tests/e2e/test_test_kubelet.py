"""The test kubelet on the local cluster: pods of the test world's images are real
processes, Ready only when their probe answers, stopped when deleted; other pods stay
kwok fakes; what it cannot run is said in the pod's status."""

from __future__ import annotations

import ipaddress
import os
from typing import Any

import pytest

from .conftest import KubectlFn, get_json, wait_for
from .real_traffic import APP_IMAGE, APP_PORT, pod_opener

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
    import json

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
