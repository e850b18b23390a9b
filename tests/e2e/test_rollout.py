"""The operator against the real API server: first apply, canary steps, promotion,
gates, restarts mid-rollout, deadlines, and no writes at rest."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
import yaml

from .conftest import KubectlFn, OperatorProcess, get_json, wait_for

pytestmark = pytest.mark.e2e


def route(
    name: str,
    image: str = "registry.example/app:1",
    steps: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "shadowroute.io/v1alpha1",
        "kind": "ShadowRoute",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            "service": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            "strategy": {
                "canary": {
                    "steps": steps
                    or [
                        {"weight": 10, "pause": {"duration": "2s"}},
                        {"weight": 50, "pause": {"duration": "2s"}},
                    ]
                }
            },
            "keepWarm": "2s",
            "progressDeadline": "60s",
        },
    }
    body["spec"].update(spec)
    return body


class Route:
    """A ShadowRoute in a test namespace, and ways to look at it."""

    def __init__(self, kubectl: KubectlFn, namespace: str, body: dict[str, Any]) -> None:
        self.kubectl, self.ns, self.body = kubectl, namespace, copy.deepcopy(body)
        self.name = body["metadata"]["name"]

    def apply(self) -> None:
        self.kubectl("apply", "-n", self.ns, "-f", "-", input=yaml.safe_dump(self.body))

    def set_image(self, image: str) -> None:
        self.body["spec"]["template"]["spec"]["containers"][0]["image"] = image
        self.apply()

    def get(self) -> dict[str, Any]:
        return get_json(self.kubectl, "shadowroute", self.name, "-n", self.ns)

    def status(self) -> dict[str, Any]:
        return self.get().get("status") or {}

    def gate(self, gate: str) -> None:
        token = time.strftime("%Y-%m-%dT%H:%M:%S") + f".{time.time_ns() % 10**9:09d}Z"
        self.kubectl(
            "annotate", "--overwrite", "-n", self.ns, f"shadowroute/{self.name}",
            f"shadowroute.io/{gate}={token}",
        )  # fmt: skip

    def wait(self, what: str, check, timeout: float = 60) -> dict[str, Any]:
        """Poll the status until check(status) holds; a timeout names the last status."""
        seen: list[dict[str, Any]] = [{}]

        def holds() -> dict[str, Any] | None:
            seen[0] = self.status()
            return seen[0] if seen[0] and check(seen[0]) else None

        try:
            return wait_for(holds, timeout, 0.3, what)
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}; last status: {brief(seen[0])}") from None

    def deployment(self, role: str) -> dict[str, Any]:
        return get_json(self.kubectl, "deployment", f"{self.name}-{role}", "-n", self.ns)

    def image(self, role: str) -> str:
        return self.deployment(role)["spec"]["template"]["spec"]["containers"][0]["image"]

    def replicas(self, role: str) -> int:
        return self.deployment(role)["spec"]["replicas"]

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status()["conditions"] if c["type"] == type_)


BRIEF = ("phase", "stage", "canaryWeight", "mirrorPercent", "message", "comparison",
         "rollbackReason", "primaryRevision", "stableRevision")  # fmt: skip


def brief(s: dict[str, Any]) -> str:
    """The fields of a status a timed-out wait should name (history and conditions are long)."""
    return json.dumps({k: s[k] for k in BRIEF if k in s}, sort_keys=True)


def stable(s: dict[str, Any]) -> bool:
    return s.get("phase") == "Stable" and not s.get("canaryRevision")


@pytest.fixture
def make_route(kubectl: KubectlFn, namespace: str, operator: OperatorProcess):
    def make(body: dict[str, Any]) -> Route:
        r = Route(kubectl, namespace, body)
        r.apply()
        return r

    return make


def test_first_apply_becomes_stable_and_ready(make_route, kubectl: KubectlFn) -> None:
    r = make_route(route("web"))
    kubectl("wait", "-n", r.ns, "--for=condition=Ready", "--timeout=60s", "shadowroute/web")
    s = r.wait("Stable", stable)
    assert s["stableRevision"] and s["canaryWeight"] == 0
    assert r.replicas("primary") == 2 and r.replicas("canary") == 0
    # No shadow stage in the spec: no -shadow Deployment at all (issue 14, item 9).
    assert kubectl("get", "deployment", "web-shadow", "-n", r.ns, check=False).returncode != 0
    svc = get_json(kubectl, "service", "web", "-n", r.ns)
    assert svc["spec"]["selector"] == {
        "shadowroute.io/name": "web",
        "shadowroute.io/role": "primary",
    }
    owner = r.deployment("primary")["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ShadowRoute" and owner["controller"] is True
    ready = r.condition("Ready")
    assert (
        ready["status"] == "True"
        and ready["observedGeneration"] == r.get()["metadata"]["generation"]
    )


def test_new_image_walks_the_canary_steps_and_promotes(make_route) -> None:
    r = make_route(route("shop"))
    old = r.wait("Stable", stable)["stableRevision"]
    r.set_image("registry.example/app:2")
    weights = []

    def record(s):
        weights.append(s.get("canaryWeight"))
        return s.get("phase") == "Succeeded"

    s = r.wait("promotion", record, timeout=90)
    assert 10 in weights and 50 in weights, weights
    assert weights == sorted(weights), "the weight only ever grows during a healthy rollout"
    new = s["stableRevision"]
    assert new != old and s["previousRevision"] == old and s["canaryWeight"] == 100
    # The previous version is kept warm in primary while the new one serves.
    assert r.image("primary") == "registry.example/app:1"
    s = r.wait("handover to primary", stable, timeout=60)
    assert s["stableRevision"] == new
    assert r.image("primary") == "registry.example/app:2"
    assert r.replicas("canary") == 0
    assert s["history"][0]["outcome"] == "Promoted" and s["history"][0]["revision"] == new


def test_abort_puts_everything_back_on_the_stable_version(make_route, kubectl: KubectlFn) -> None:
    r = make_route(route("abort", steps=[{"weight": 30, "pause": {}}, {"weight": 60}]))
    old = r.wait("Stable", stable)["stableRevision"]
    r.set_image("registry.example/app:2")
    r.wait(
        "waiting at the indefinite pause",
        lambda s: s.get("phase") == "Paused" and s["canaryWeight"] == 30,
    )
    assert r.replicas("canary") == 1
    svc = get_json(kubectl, "service", "abort", "-n", r.ns)
    assert svc["spec"]["selector"].get("shadowroute.io/live") == "true"  # both versions serve
    r.gate("abort")
    s = r.wait("RolledBack", lambda s: s.get("phase") == "RolledBack")
    assert s["canaryWeight"] == 0 and s["stableRevision"] == old
    assert s["rollbackReason"] == "Aborted" and s["history"][0]["outcome"] == "RolledBack"
    assert r.condition("Degraded")["status"] == "True"
    wait_for(lambda: r.replicas("canary") == 0, 30, what="canary scaled down")
    assert r.image("primary") == "registry.example/app:1"
    svc = get_json(kubectl, "service", "abort", "-n", r.ns)
    assert svc["spec"]["selector"]["shadowroute.io/role"] == "primary"
    # It stays rolled back: the same revision is not retried by itself...
    time.sleep(2)
    assert r.status()["phase"] == "RolledBack"
    # ...until the retry gate.
    r.gate("retry")
    r.wait(
        "retried", lambda s: s.get("phase") in ("Progressing", "Paused") and s.get("canaryRevision")
    )


def test_promote_gate_skips_the_remaining_steps(make_route) -> None:
    r = make_route(route("prom", steps=[{"weight": 20, "pause": {}}, {"weight": 40, "pause": {}}]))
    r.wait("Stable", stable)
    r.set_image("registry.example/app:2")
    r.wait("at step 1", lambda s: s.get("phase") == "Paused" and s["currentStep"] == 0)
    r.gate("resume")  # one step on
    r.wait(
        "at step 2",
        lambda s: s.get("phase") == "Paused" and s["currentStep"] == 1 and s["canaryWeight"] == 40,
    )
    r.gate("promote")
    r.wait(
        "Stable on the new image", lambda s: stable(s) and s["history"][0]["outcome"] == "Promoted"
    )
    assert r.image("primary") == "registry.example/app:2"


def test_template_change_mid_rollout_restarts_it(make_route) -> None:
    r = make_route(route("restart", steps=[{"weight": 25, "pause": {}}]))
    r.wait("Stable", stable)
    r.set_image("registry.example/app:2")
    first = r.wait("paused at the step", lambda s: s.get("phase") == "Paused")["canaryRevision"]
    r.set_image("registry.example/app:3")
    s = r.wait("restarted", lambda s: s.get("canaryRevision") not in ("", None, first))
    assert s["history"][0]["outcome"] == "Superseded" and s["history"][0]["revision"] == first
    wait_for(lambda: r.image("canary") == "registry.example/app:3", 30, what="canary on app:3")
    # And back to the stable template cancels the rollout cleanly.
    r.set_image("registry.example/app:1")
    s = r.wait("cancelled", stable)
    assert s["history"][0]["outcome"] == "Cancelled"
    wait_for(lambda: r.replicas("canary") == 0, 30, what="canary scaled down")


def test_pause_holds_and_resume_continues(make_route) -> None:
    r = make_route(
        route("hold", steps=[{"weight": 10, "pause": {"duration": "1s"}}, {"weight": 90}])
    )
    r.wait("Stable", stable)
    r.gate("pause")
    r.set_image("registry.example/app:2")
    r.wait("held", lambda s: s.get("phase") == "Paused" and s.get("userPaused"))
    time.sleep(3)  # well past the 1 s pause: still held
    s = r.status()
    assert s["phase"] == "Paused" and s["currentStep"] == 0
    r.gate("resume")
    r.wait(
        "finished",
        lambda s: stable(s) and s["history"] and s["history"][0]["outcome"] == "Promoted",
    )


def test_unready_canary_is_rolled_back_past_the_progress_deadline(make_route) -> None:
    r = make_route(route("deadline", progressDeadline="4s"))
    r.wait("Stable", stable)
    # A pod that can never be scheduled is never ready.
    r.body["spec"]["template"]["spec"]["nodeSelector"] = {"no-such-node": "true"}
    r.apply()
    s = r.wait("RolledBack", lambda s: s.get("phase") == "RolledBack", timeout=60)
    assert s["rollbackReason"] == "ProgressDeadlineExceeded"
    assert s["canaryWeight"] == 0
    assert r.condition("Degraded")["reason"] == "ProgressDeadlineExceeded"


def test_shadow_then_blue_green(make_route, kubectl: KubectlFn) -> None:
    body = route(
        "bg",
        strategy={
            "shadow": {"duration": "2s", "mirrorPercent": 50},
            "blueGreen": {"previewDuration": "2s"},
        },
        # Mirroring needs a route: provider none cannot copy requests. The Gateway need
        # not exist for the HTTPRoute to be written.
        traffic={"provider": "gatewayapi", "gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
    )
    r = make_route(body)
    r.wait("Stable", stable)
    r.set_image("registry.example/app:2")
    r.wait("shadowing", lambda s: s.get("phase") == "Shadowing" and s["mirrorPercent"] == 50)
    assert r.replicas("shadow") == 1 and r.image("shadow") == "registry.example/app:2"
    r.wait("preview", lambda s: s.get("phase") == "Progressing" and s["mirrorPercent"] == 0)
    assert r.status()["canaryWeight"] == 0
    r.wait(
        "promoted",
        lambda s: s.get("phase") in ("Succeeded", "Stable") and s["stableRevision"] != "",
    )
    r.wait("Stable", stable)
    assert r.image("primary") == "registry.example/app:2" and r.replicas("shadow") == 0


def test_operator_killed_mid_rollout_finishes_it(make_route, operator: OperatorProcess) -> None:
    r = make_route(
        route(
            "crash",
            steps=[
                {"weight": 20, "pause": {"duration": "3s"}},
                {"weight": 60, "pause": {"duration": "3s"}},
            ],
        )
    )
    r.wait("Stable", stable)
    r.set_image("registry.example/app:2")
    before = r.wait(
        "at step 1", lambda s: s.get("phase") == "Progressing" and s["canaryWeight"] == 20
    )
    operator.kill()
    try:
        time.sleep(4)  # the pause ends while nobody watches
        assert r.status()["canaryWeight"] == 20
    finally:
        operator.start()
    # Resumed, not started over: the same rollout of the same revision moves on.
    s = r.wait("step 2 after restart", lambda s: s.get("canaryWeight") == 60 or stable(s))
    if not stable(s):
        assert s["rolloutStartedAt"] == before["rolloutStartedAt"]
        assert s["canaryRevision"] == before["canaryRevision"]
        assert s["currentStep"] == 1
    s = r.wait(
        "finished after restart",
        lambda s: stable(s) and s["history"] and s["history"][0]["outcome"] == "Promoted",
        timeout=90,
    )
    assert r.image("primary") == "registry.example/app:2"
    assert [h["outcome"] for h in s["history"]] == ["Promoted"]


def test_unchanged_resource_makes_no_writes(
    make_route, operator: OperatorProcess, kubectl: KubectlFn, cluster, tmp_path
) -> None:
    r = make_route(route("quiet"))
    r.wait("Stable", stable)

    def versions() -> dict[str, str]:
        """resourceVersion of the ShadowRoute and every child."""
        items = get_json(kubectl, "shadowroute,deployments,services", "-n", r.ns)["items"]
        return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
                for o in items}  # fmt: skip

    wait_for(lambda: r.condition("Ready")["status"] == "True", 30, what="Ready")
    # An operator of its own for this namespace: its write counter sees only this route.
    own = OperatorProcess(cluster.kubeconfig, tmp_path, "--namespace", r.ns)
    own.start()
    try:
        wait_for(lambda: own.reconciles() >= 1, 30, what="the first reconcile")
        time.sleep(1)
        done = own.reconciles()
        assert own.writes() == 0, "a restart on an up-to-date route writes nothing"
        before = versions()
        # Events that make it reconcile without changing anything it decides on.
        kubectl("label", "-n", r.ns, "shadowroute/quiet", "touched=yes")
        rv = "-o=jsonpath={.metadata.resourceVersion}"
        sr_rv = kubectl("annotate", "-n", r.ns, "shadowroute/quiet", "note=hello", rv).stdout
        kubectl("label", "-n", r.ns, "deployment/quiet-primary", "touched=yes")
        wait_for(lambda: own.reconciles() >= done + 2, 30, what="reconciles after the events")
        time.sleep(2)
        writes = [m for m in own.metrics().splitlines() if m.startswith("shadowroute_api_writes")]
        assert own.writes() == 0, "\n".join(writes) + json.dumps(r.status(), indent=1)
        # And by the API server's own account: no object changed but by our hand.
        after = versions()
        del before["Deployment/quiet-primary"], after["Deployment/quiet-primary"]
        assert after == {**before, "ShadowRoute/quiet": sr_rv}
    finally:
        own.stop()
