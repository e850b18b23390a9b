"""`kubectl shadowroute plan` finds what applying would find: the API server's dry run
of every child the operator would write, on a real API server.

The pod template errors here are ones the CRD schema cannot catch (only the
Deployment's validation knows a container name must be a DNS label, or a port
number's range): plan reports every cause, stores nothing, and says clearly when the
identity may only read.
"""

from __future__ import annotations

import pytest
import yaml
from shadowroute.cli import exit_codes

from .conftest import Cluster, KubectlFn
from .test_rbac import sa_kubeconfig

pytestmark = pytest.mark.e2e


def manifest(name: str, containers: list[dict]) -> dict:
    return {
        "apiVersion": "shadowroute.io/v1alpha1",
        "kind": "ShadowRoute",
        "metadata": {"name": name},
        "spec": {
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}},
            "service": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            "strategy": {"canary": {"steps": [{"weight": 50}, {"weight": 100}]}},
        },
    }


BAD_CONTAINERS = [
    {"name": "Bad_Name", "image": "registry.example/app:1"},
    {"name": "side", "image": "registry.example/side:1", "ports": [{"containerPort": 70000}]},
]


def test_plan_reports_every_cause_the_deployment_validation_gives(
    plugin, kubectl: KubectlFn, namespace: str, crds_installed: None
) -> None:
    body = manifest("invalid-pods", BAD_CONTAINERS)
    res = plugin("plan", "-f", "-", "-n", namespace, input=yaml.safe_dump(body))
    assert res.returncode == exit_codes.USAGE, res.stdout + res.stderr
    out = res.stdout
    # The ShadowRoute itself passes its CRD; the Deployment it renders does not.
    assert "server-side dry run: accepted" in out
    line = next(x for x in out.splitlines() if "create Deployment invalid-pods-primary:" in x)
    assert "invalid-pods-primary: refused:" in line
    assert "spec.template.spec.containers[0].name" in line and "Bad_Name" in line
    assert "spec.template.spec.containers[1].ports[0].containerPort" in line, "all causes"
    assert "and 1 more" not in out
    assert "create Service invalid-pods: accepted" in out
    assert "APPLYING WOULD FAIL" in out and "refuses" in res.stderr
    # Read-only: nothing was created, not even on the first apply's create.
    for kind in ("shadowroute", "deployment", "service"):
        got = kubectl("get", kind, "-n", namespace, "-o", "name", check=False).stdout
        assert "invalid-pods" not in got, f"plan created a {kind}"

    good = manifest("fine-pods", [{"name": "app", "image": "registry.example/app:1"}])
    res = plugin("plan", "-f", "-", "-n", namespace, input=yaml.safe_dump(good))
    assert res.returncode == exit_codes.OK, res.stdout + res.stderr
    assert "create Deployment fine-pods-primary: accepted" in res.stdout


def test_plan_lists_every_model_error(plugin, namespace: str, crds_installed: None) -> None:
    body = manifest("two-errors", [{"name": "app", "image": "registry.example/app:1"}])
    body["spec"]["replicas"] = -1
    body["spec"]["strategy"]["canary"]["steps"][0]["weight"] = 0
    res = plugin("plan", "-f", "-", "-n", namespace, input=yaml.safe_dump(body))
    assert res.returncode == exit_codes.USAGE
    assert "2 errors" in res.stderr and "more)" not in res.stderr
    assert "spec.replicas" in res.stderr and "spec.strategy.canary.steps[0].weight" in res.stderr


def test_plan_says_when_a_read_only_identity_may_not_dry_run(
    plugin, kubectl: KubectlFn, cluster: Cluster, namespace: str, crds_installed: None, tmp_path
) -> None:
    kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubectl(
        "create", "role", "reader", "-n", namespace, "--verb=get,list,watch",
        "--resource=shadowroutes.shadowroute.io,deployments.apps,services",
    )  # fmt: skip
    kubectl(
        "create", "rolebinding", "reader", "-n", namespace, "--role=reader",
        f"--serviceaccount={namespace}:reader",
    )  # fmt: skip
    kubeconfig = sa_kubeconfig(kubectl, cluster, namespace, "reader", tmp_path / "kc")
    body = manifest("read-only", BAD_CONTAINERS)
    res = plugin(
        "plan", "-f", "-", "--kubeconfig", str(kubeconfig), "-n", namespace,
        input=yaml.safe_dump(body),
    )  # fmt: skip
    assert res.returncode == exit_codes.OK, res.stdout + res.stderr
    assert "server-side dry run: skipped: a dry run needs the rights of a write" in res.stdout
    line = next(x for x in res.stdout.splitlines() if "Deployment read-only-primary:" in x)
    assert "skipped: a dry run needs the rights of a write" in line and "forbidden" in line
