"""The ShadowRoute CRD carries Kubernetes' own PodTemplateSpec schema: `kubectl apply`
refuses a misspelt pod template field, naming it; and the vendored schema is what
hack/gen_pod_template_schema.py generates from the pinned API server."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import KubectlFn
from .test_crd_validation import valid_manifest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from hack_scripts import load  # noqa: E402


def _with(namespace: str, mutate) -> str:
    manifest = copy.deepcopy(valid_manifest())
    manifest["metadata"]["namespace"] = namespace
    mutate(manifest["spec"]["template"])
    return yaml.safe_dump(manifest)


def _container(template: dict) -> dict:
    return template["spec"]["containers"][0]


def test_kubectl_apply_refuses_a_misspelt_port_field(
    kubectl: KubectlFn, namespace: str, crds_installed: None
) -> None:
    typo = _with(namespace, lambda t: _container(t)["ports"][0].update(protocl="TCP"))
    res = kubectl("apply", "-f", "-", input=typo, check=False)
    assert res.returncode != 0, res.stdout
    assert 'unknown field "spec.template.spec.containers[0].ports[0].protocl"' in res.stderr
    res = kubectl("apply", "--server-side", "-f", "-", input=typo, check=False)
    assert res.returncode != 0 and ".protocl: field not declared in schema" in res.stderr
    got = kubectl("get", "shadowroutes", "-n", namespace, "-o", "name").stdout
    assert got.strip() == "", "nothing was stored"


@pytest.mark.parametrize(
    "case,mutate,expected",
    [
        ("quantity", lambda t: _container(t).update(resources={"limits": {"cpu": "abc"}}),
         ("spec.template.spec.containers[0].resources.limits.cpu", "should match")),
        ("duplicate-container", lambda t: t["spec"]["containers"].append(
            {"name": "app", "image": "x:1"}), ("spec.template.spec.containers[1]", "Duplicate")),
        ("unknown-pod-field", lambda t: t["spec"].update(restartPolicyy="Always"),
         ('unknown field "spec.template.spec.restartPolicyy"',)),
        ("metadata-beyond-labels", lambda t: t["metadata"].update(finalizers=["x"]),
         ('unknown field "spec.template.metadata.finalizers"',)),
    ],
)  # fmt: skip
def test_the_pod_template_schema_names_the_field(
    case: str, mutate, expected: tuple[str, ...], kubectl: KubectlFn, namespace: str,
    crds_installed: None,
) -> None:  # fmt: skip
    res = kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-",
        input=_with(namespace, mutate), check=False,
    )  # fmt: skip
    assert res.returncode != 0, f"{case} accepted"
    missing = [e for e in expected if e not in res.stderr]
    assert not missing, res.stderr


def test_numbers_and_suffixes_stay_valid_quantities(
    kubectl: KubectlFn, namespace: str, crds_installed: None
) -> None:
    ok = _with(
        namespace,
        lambda t: _container(t).update(
            resources={"limits": {"cpu": 0.5, "memory": "128Mi"}, "requests": {"cpu": "250m"}}
        ),
    )
    kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=ok)


def test_vendored_schema_is_what_the_pinned_api_server_generates(kubectl: KubectlFn) -> None:
    gen = load("gen_pod_template_schema")
    served = json.loads(kubectl("get", "--raw", "/version").stdout)["gitVersion"]
    if served != gen.pinned_version():
        pytest.skip(f"the cluster runs {served}, not the pinned {gen.pinned_version()}")
    document = json.loads(kubectl("get", "--raw", "/openapi/v3/api/v1").stdout)
    assert gen.render(document) == gen.OUT.read_text(), (
        "stale: run python hack/gen_pod_template_schema.py"
    )


def test_crd_size_fits_client_side_apply(kubectl: KubectlFn, crds_installed: None) -> None:
    """kubectl's client-side apply stores the whole object in an annotation limited to
    256 KiB; the API server's object limit is ~1.5 MiB."""
    crd = yaml.safe_load((ROOT / "crds" / "shadowroute.io_shadowroutes.yaml").read_text())
    assert len(json.dumps(crd, separators=(",", ":"))) < 256 * 1024
    kubectl("apply", "--dry-run=server", "-f", str(ROOT / "crds"))
