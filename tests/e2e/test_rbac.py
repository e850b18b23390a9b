"""The operator under the chart's RBAC and nothing more: a ServiceAccount token (not
the admin certificate) and exactly the Roles or ClusterRole `helm template` renders,
through whole rollouts — first apply, promotion, abort, a switch of traffic provider
and back — with no request refused.

Namespaced mode runs the operator with the very arguments of the rendered Deployment.
ClusterRole mode binds the rendered ClusterRole, but the operator still watches only
this test's namespace: other sessions share this cluster, and an operator watching all
namespaces would reconcile their ShadowRoutes too.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import (
    ROOT,
    SESSION_PREFIX,
    Cluster,
    KubectlFn,
    OperatorProcess,
    get_json,
    wait_for,
)
from .test_rollout import Route, route, stable
from .traffic_support import ROUTE_RESOURCES

pytestmark = pytest.mark.e2e

CHART = ROOT / "charts" / "shadowroute"


def _versions() -> dict[str, str]:
    out = {}
    for line in (ROOT / "hack" / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.strip().split("=", 1)
            out[key] = value
    return out


def helm_binary() -> str:
    """Helm as hack/build.sh builds it (pinned in versions.env, cached)."""
    cache = Path(os.environ.get("SHADOWROUTE_CACHE", Path.home() / ".cache" / "shadowroute"))
    exe = cache / "bin" / f"helm-{_versions()['HELM_VERSION']}"
    assert exe.exists(), f"{exe} is missing: run `bash hack/build.sh helm` (make build)"
    return str(exe)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {res.returncode}:\n{res.stderr}")
    return res


def render(release: str, namespace: str, *sets: str) -> list[dict[str, Any]]:
    """`helm template` of the chart: the manifests, parsed."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def sa_kubeconfig(
    kubectl: KubectlFn, cluster: Cluster, namespace: str, sa: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount with a minted token."""
    token = kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    current = admin.get("current-context")
    context = next((c["context"] for c in admin["contexts"] if c["name"] == current), None)
    context = context or admin["contexts"][0]["context"]
    server = next(c["cluster"] for c in admin["clusters"] if c["name"] == context["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": server}],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [
                    {"name": "c", "context": {"cluster": "c", "user": sa, "namespace": namespace}}
                ],
                "current-context": "c",
            }
        )
    )
    path.chmod(0o600)
    return path


def operator_args(manifests: list[dict[str, Any]]) -> list[str]:
    """The rendered Deployment's arguments, less the metrics address the test sets."""
    dep = next(m for m in manifests if m["kind"] == "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    return [a for a in args if not a.startswith(("--metrics-port", "--metrics-address"))]


def can_i(kubectl: KubectlFn, who: str, *what: str) -> bool:
    res = kubectl("auth", "can-i", *what, f"--as={who}", check=False)
    return res.stdout.strip() == "yes"


SUITE = (
    "import os, sys\n"
    "print('suite of check', os.environ['SHADOWROUTE_CHECK'], flush=True)\n"
    "sys.exit(int(os.environ.get('FAIL', '0')))\n"
)


def job_check(fail: bool = False) -> dict[str, Any]:
    """A job check run as a real process: it passes, or exits 1 (FAIL)."""
    container = {
        "name": "suite",
        "image": "shadowroute.local/shadowroute",
        "command": ["python", "-c", SUITE],
        "env": [{"name": "FAIL", "value": "1" if fail else "0"}],
    }
    return {
        "name": "suite",
        "when": "BeforePromotion",
        "timeout": "60s",
        "job": {"template": {"spec": {"containers": [container]}}},
    }


def drive_rollouts(kubectl: KubectlFn, namespace: str, name: str) -> Route:
    """First apply, a promoted rollout (its job check passing), a rollout aborted by
    the gate, then one rolled back by its failing job check (Jobs created and listed,
    the failed pod's last lines read)."""
    r = Route(
        kubectl,
        namespace,
        route(
            name,
            steps=[{"weight": 25, "pause": {"duration": "1s"}}, {"weight": 50}],
            keepWarm="1s",
            checks=[job_check()],
        ),
    )
    r.apply()
    r.wait("Stable", stable, timeout=60)
    r.set_image("registry.example/app:2")
    r.wait(
        "promoted and handed over",
        lambda s: stable(s) and (s.get("history") or [{}])[0].get("outcome") == "Promoted",
        timeout=90,
    )
    r.body["spec"]["strategy"]["canary"]["steps"][0]["pause"] = {}  # wait for a person
    r.set_image("registry.example/app:3")
    r.wait("waiting at step 1", lambda s: s.get("phase") == "Paused" and s["canaryWeight"] == 25)
    r.gate("abort")
    r.wait("RolledBack", lambda s: s.get("phase") == "RolledBack" and s["canaryWeight"] == 0)
    wait_for(lambda: r.replicas("canary") == 0, 30, what="canary scaled down")
    r.body["spec"]["strategy"]["canary"]["steps"][0]["pause"] = {"duration": "1s"}
    r.body["spec"]["checks"] = [job_check(fail=True)]
    r.set_image("registry.example/app:4")
    s = r.wait("rolled back by the check", lambda s: s.get("rollbackReason") == "CheckFailed", 90)
    assert "last lines: suite of check suite" in s["history"][0]["message"], s["history"][0]
    return r


def switch_providers(kubectl: KubectlFn, r: Route) -> None:
    """Provider gatewayapi, nginx, istio, then none again: each provider's route is
    created and the previous one deleted (list, watch, create, patch and delete of
    every route kind under the Role)."""

    def routes() -> list[str]:
        found = get_json(kubectl, ",".join(ROUTE_RESOURCES.values()), "-n", r.ns,
                         "-l", f"shadowroute.io/name={r.name}")["items"]  # fmt: skip
        return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in found)

    for traffic, want in (
        (
            {
                "provider": "gatewayapi",
                "gatewayAPI": {"parentRefs": [{"name": "gateway"}], "hostnames": ["least.example"]},
            },
            [f"HTTPRoute/{r.name}"],
        ),
        (
            {"provider": "nginx", "nginx": {"ingressClassName": "nginx", "host": "least.example"}},
            [f"Ingress/{r.name}", f"Ingress/{r.name}-canary"],
        ),
        (
            {"provider": "istio", "istio": {"hosts": ["least.example"]}},
            [f"VirtualService/{r.name}"],
        ),
    ):
        r.body["spec"]["traffic"] = traffic
        r.apply()
        wait_for(lambda want=want: routes() == want, 30,
                 what=f"the operator's {traffic['provider']} route alone")  # fmt: skip
    r.body["spec"]["traffic"] = {"provider": "none"}
    r.apply()
    wait_for(lambda: routes() == [], 30, what="the routes deleted after the switch")


def assert_clean_log(op: OperatorProcess) -> list[dict[str, Any]]:
    """Every line is JSON (--log-format json) and no request was refused."""
    text = "".join(p.read_text() for p in op.log_dir.glob(f"operator-{id(op)}-*.log"))
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    refused = [r for r in records if "forbidden" in json.dumps(r).lower() or " 403" in r["message"]]
    assert not refused, "the API server refused requests:\n" + "\n".join(map(str, refused))
    return records


def events_by_operator(kubectl: KubectlFn, namespace: str) -> set[str]:
    items = json.loads(
        kubectl("get", "events.events.k8s.io", "-n", namespace, "-o", "json").stdout
    )["items"]
    return {e["reason"] for e in items if e.get("reportingController") == "shadowroute.io/operator"}


def test_full_rollouts_under_the_namespaced_roles_of_the_chart(
    kubectl: KubectlFn, cluster: Cluster, namespace: str, crds_installed: None, tmp_path: Path
) -> None:
    release = f"rbac-{uuid.uuid4().hex[:6]}"
    manifests = render(release, namespace, f"watch.namespaces={{{namespace}}}")
    kinds = sorted(m["kind"] for m in manifests)
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds, kinds
    rbac = [m for m in manifests if m["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    assert [m["kind"] for m in rbac].count("Role") == 1
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(rbac))
    sa = next(m for m in rbac if m["kind"] == "ServiceAccount")["metadata"]["name"]
    who = f"system:serviceaccount:{namespace}:{sa}"

    # What the identity may not do: write specs, read cluster scope, delete what is not
    # a child (it deletes Deployments and Services only when a ShadowRoute stops
    # comparing its shadow: <name>-baseline and <name>-comparator go).
    assert can_i(
        kubectl,
        who,
        "patch",
        "shadowroutes.shadowroute.io",
        "--subresource=status",
        "-n",
        namespace,
    )
    assert not can_i(kubectl, who, "update", "shadowroutes.shadowroute.io", "-n", namespace)
    assert not can_i(kubectl, who, "patch", "shadowroutes.shadowroute.io", "-n", namespace)
    assert can_i(kubectl, who, "delete", "deployments", "-n", namespace)
    assert not can_i(kubectl, who, "delete", "pods", "-n", namespace)
    assert not can_i(kubectl, who, "delete", "configmaps", "-n", namespace)
    assert not can_i(kubectl, who, "list", "namespaces")
    assert not can_i(kubectl, who, "list", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i(kubectl, who, "get", "secrets", "-n", "default")
    # Job checks: Jobs created and listed, never deleted; their pods listed (the
    # termination message), their logs never read.
    assert can_i(kubectl, who, "create", "jobs.batch", "-n", namespace)
    assert not can_i(kubectl, who, "delete", "jobs.batch", "-n", namespace)
    assert can_i(kubectl, who, "list", "pods", "-n", namespace)
    assert not can_i(kubectl, who, "get", "pods", "--subresource=log", "-n", namespace)
    assert not can_i(kubectl, who, "get", "pods", "-n", namespace)

    args = operator_args(manifests)
    assert f"--namespace={namespace}" in args and "--no-cluster-scope" in args
    assert "--log-format=json" in args
    kubeconfig = sa_kubeconfig(kubectl, cluster, namespace, sa, tmp_path / "sa.kubeconfig")
    op = OperatorProcess(str(kubeconfig), tmp_path, *args)
    op.start()
    try:
        r = drive_rollouts(kubectl, namespace, "least")
        switch_providers(kubectl, r)
    finally:
        op.stop()
    records = assert_clean_log(op)
    assert any("watching " + namespace in r["message"] for r in records)
    assert {"Available", "RolloutStarted", "Promoted", "Aborted"} <= events_by_operator(
        kubectl, namespace
    )


def test_a_rollout_under_the_cluster_role_of_the_chart(
    kubectl: KubectlFn, cluster: Cluster, namespace: str, crds_installed: None, tmp_path: Path
) -> None:
    release = f"{SESSION_PREFIX}-cw-{uuid.uuid4().hex[:4]}"  # cluster-scoped names: unique
    manifests = render(release, namespace)
    cluster_scoped = [m for m in manifests if m["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert len(cluster_scoped) == 2 and all(
        release in m["metadata"]["name"] for m in cluster_scoped
    )
    assert not [m for m in manifests if m["kind"] in ("Role", "RoleBinding")]
    rbac = [m for m in manifests if m["kind"] == "ServiceAccount"] + cluster_scoped
    try:
        kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(rbac))
        sa = rbac[0]["metadata"]["name"]
        who = f"system:serviceaccount:{namespace}:{sa}"
        # kopf's own needs in this mode: CRDs listed and watched, namespaces not at all.
        assert can_i(kubectl, who, "watch", "customresourcedefinitions.apiextensions.k8s.io")
        assert not can_i(kubectl, who, "list", "namespaces")
        assert not can_i(kubectl, who, "update", "shadowroutes.shadowroute.io", "-A")
        assert can_i(kubectl, who, "get", "secrets", "-n", "kube-system")  # rbac.secrets
        kubeconfig = sa_kubeconfig(kubectl, cluster, namespace, sa, tmp_path / "sa.kubeconfig")
        op = OperatorProcess(
            str(kubeconfig), tmp_path, "--namespace", namespace, "--no-cluster-scope",
            "--log-format", "json",
        )  # fmt: skip
        op.start()
        try:
            r = Route(kubectl, namespace, route("wide", keepWarm="1s"))
            r.apply()
            r.wait("Stable", stable)
            r.set_image("registry.example/app:2")
            r.wait(
                "promoted",
                lambda s: stable(s) and (s.get("history") or [{}])[0].get("outcome") == "Promoted",
                timeout=90,
            )
        finally:
            op.stop()
        assert_clean_log(op)
    finally:
        for m in cluster_scoped:
            kubectl("delete", m["kind"].lower(), m["metadata"]["name"], "--ignore-not-found")


def test_without_secrets_access_the_rule_is_gone(kubectl: KubectlFn) -> None:
    manifests = render("x", "ops", "rbac.secrets=false", "watch.namespaces={a}")
    role = next(m for m in manifests if m["kind"] == "Role")
    assert not [r for r in role["rules"] if "secrets" in r["resources"]]


def test_two_replicas_elect_one_leader_and_fail_over(
    kubectl: KubectlFn,
    cluster: Cluster,
    namespace: str,
    crds_installed: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """replicaCount=2 under the chart's RBAC (the leader-election Role included): one
    replica reconciles, the other stands by; the leader is killed and the other takes
    over and finishes the rollout; a replica that sees its Lease taken stops at once."""
    release = f"ha-{uuid.uuid4().hex[:6]}"
    manifests = render(
        release, namespace, f"watch.namespaces={{{namespace}}}", "replicaCount=2",
        "leaderElection.leaseDurationSeconds=4", "leaderElection.renewDeadlineSeconds=3",
        "leaderElection.retryPeriodSeconds=1",
    )  # fmt: skip
    rbac = [m for m in manifests if m["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    assert [m["kind"] for m in rbac].count("Role") == 2  # the watched namespace's, the Lease's
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(rbac))
    sa = next(m for m in rbac if m["kind"] == "ServiceAccount")["metadata"]["name"]
    kubeconfig = str(sa_kubeconfig(kubectl, cluster, namespace, sa, tmp_path / "sa.kubeconfig"))
    args = operator_args(manifests)
    assert "--leader-elect" in args
    monkeypatch.setenv("POD_NAMESPACE", namespace)  # the chart sets it from the downward API
    replicas = [OperatorProcess(kubeconfig, tmp_path, *args) for _ in range(2)]

    def leaders() -> list[OperatorProcess]:
        out = []
        for op in replicas:
            if op.proc and op.proc.poll() is None and "shadowroute_leader 1.0" in op.metrics():
                out.append(op)
        return out

    try:
        for op in replicas:
            op.start()
        (first,) = wait_for(lambda: len(leaders()) == 1 and leaders(), 20, what="one leader")
        second = next(op for op in replicas if op is not first)
        r = Route(kubectl, namespace, route("ha", keepWarm="1s"))
        r.apply()
        r.wait("Stable", stable)
        assert second.reconciles() == 0, "the stand-by replica reconciled"

        first.kill()  # no release: the other waits out the lease
        wait_for(lambda: leaders() == [second], 20, what="the stand-by taking over")
        r.set_image("registry.example/app:2")
        r.wait(
            "promoted by the new leader",
            lambda s: stable(s) and (s.get("history") or [{}])[0].get("outcome") == "Promoted",
            timeout=90,
        )

        def lease() -> dict[str, Any]:
            return json.loads(kubectl("get", "lease", release + "-shadowroute", "-n", namespace,
                                      "-o", "json").stdout)  # fmt: skip

        assert lease()["spec"]["leaseTransitions"] >= 1

        # Someone else holds the Lease now: the leader must stop reconciling and exit.
        # The leader renews every second, so a read-modify-write may meet a newer
        # resourceVersion (409): read again and retry, as any client would.
        def take_over() -> bool:
            taken = lease()
            taken["spec"]["holderIdentity"] = "someone-else"
            done = kubectl("replace", "-f", "-", input=json.dumps(taken), check=False)
            assert done.returncode == 0 or "Conflict" in done.stderr, done.stderr
            return done.returncode == 0

        wait_for(take_over, 20, 0.1, what="the Lease taken over")
        assert second.proc is not None
        assert second.proc.wait(20) == 3, "exit code 3: lost the lease"
    finally:
        for op in replicas:
            op.stop()
    log = "".join(p.read_text() for p in tmp_path.glob(f"operator-{id(second)}-*.log"))
    assert "lost the lease" in log and "became the leader" in log
    for op in replicas:
        assert_clean_log(op)
