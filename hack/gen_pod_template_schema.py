"""Vendor the structural schema of a Kubernetes PodTemplateSpec for the ShadowRoute CRD.

    python hack/gen_pod_template_schema.py            # from the local cluster (make cluster-up)
    python hack/gen_pod_template_schema.py --from F   # from a saved /openapi/v3/api/v1 document
    python hack/gen_pod_template_schema.py --check    # exit 1 if the vendored file differs

The source is the OpenAPI v3 document the pinned kube-apiserver (KUBERNETES_VERSION in
hack/versions.env) serves at /openapi/v3/api/v1. The document is not structural as a
CRD needs it, so `convert` rewrites io.k8s.api.core.v1.PodTemplateSpec:

- every $ref (bare, or the `allOf: [$ref]` of a field with its own description) is
  inlined; the API server accepts no $ref in a CRD;
- descriptions are dropped (kubectl explain of the Deployment has them; they would
  triple the size), and so are defaults: a default in a CRD is written into every
  stored ShadowRoute, which would change the template hash of routes that exist and
  start a rollout nobody asked for; the Deployment's own defaulting still applies;
- enums are dropped: a newer API server accepts values the pinned one does not know,
  and the Deployment's validation refuses wrong ones anyway (`plan` dry-runs it);
- IntOrString becomes `x-kubernetes-int-or-string`; a Quantity is a number (`cpu:
  0.5` included) or a string matching the API server's quantity pattern (`cpu: abc`
  is refused at apply); the finer checks are the Deployment's;
- the metadata of the pod template carries only labels and annotations (string maps);
- `x-kubernetes-list-type: map` is kept only where every key is required (a CRD
  refuses a map key that is neither required nor defaulted, and defaults are
  dropped); such a list becomes atomic. The map and set list types, and the map types,
  are kept otherwise: duplicate container names are refused at apply;
- an object with neither properties nor additionalProperties keeps any field.

The output is sorted JSON, so a diff shows what a new Kubernetes version changed.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "operator" / "shadowroute" / "api" / "pod_template_schema.json"
ROOT_TYPE = "io.k8s.api.core.v1.PodTemplateSpec"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
# The API server's own first check of a quantity's text (resource.ParseQuantity); a
# pattern constrains strings only, so a number (`cpu: 0.5`) passes as it does there.
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
TEMPLATE_METADATA = {
    "type": "object",
    "properties": {"labels": _STRING_MAP, "annotations": _STRING_MAP},
}
# Dropped on purpose (see the module docstring); anything not listed here or in
# _KEPT is an error, so a new keyword in a new Kubernetes version is looked at.
_DROPPED = frozenset(
    {
        "description",
        "default",
        "enum",
        "x-kubernetes-patch-merge-key",
        "x-kubernetes-patch-strategy",
        "x-kubernetes-unions",
    }
)
_KEPT = frozenset(
    {
        "type",
        "format",
        "required",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
    }
)
# Formats the CRD validator knows and checks cheaply; others say nothing to it.
_FORMATS = frozenset({"int32", "int64", "double", "float", "byte"})


class ConvertError(ValueError):
    """The OpenAPI document holds something this converter cannot express."""


def convert(document: dict[str, Any], root: str = ROOT_TYPE) -> dict[str, Any]:
    """The structural CRD schema of `root` in an OpenAPI v3 document."""
    schemas = document["components"]["schemas"]
    out = _node(schemas[root], schemas, root, ())
    out["properties"]["metadata"] = json.loads(json.dumps(TEMPLATE_METADATA))
    return out


def _ref_name(ref: str) -> str:
    return ref.removeprefix("#/components/schemas/")


def _node(
    node: dict[str, Any], schemas: dict[str, Any], path: str, stack: tuple[str, ...]
) -> dict[str, Any]:
    node = dict(node)
    ref = node.pop("$ref", None)
    all_of = node.pop("allOf", None)
    if all_of is not None:
        if len(all_of) != 1 or set(all_of[0]) != {"$ref"}:
            raise ConvertError(f"{path}: allOf other than one $ref")
        ref = all_of[0]["$ref"]
    if ref is not None:
        name = _ref_name(ref)
        if name == INT_OR_STRING:
            return {"x-kubernetes-int-or-string": True}
        if name == QUANTITY:
            return {"x-kubernetes-preserve-unknown-fields": True, "pattern": QUANTITY_PATTERN}
        if name in stack:
            raise ConvertError(f"{path}: {name} refers to itself")
        return _node(schemas[name], schemas, path, (*stack, name))
    if "oneOf" in node or "anyOf" in node:
        raise ConvertError(f"{path}: a union other than IntOrString or Quantity")

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {
                name: _node(prop, schemas, f"{path}.{name}", stack) for name, prop in value.items()
            }
        elif key == "items":
            out[key] = _node(value, schemas, f"{path}[]", stack)
        elif key == "additionalProperties":
            if not isinstance(value, dict):
                raise ConvertError(f"{path}: additionalProperties {value!r}")
            out[key] = _node(value, schemas, f"{path}{{}}", stack)
        elif key == "format":
            if value in _FORMATS:
                out[key] = value
        elif key in _KEPT:
            out[key] = value
        else:
            raise ConvertError(f"{path}: keyword {key!r} is not handled")
    if (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("x-kubernetes-list-type") == "map":
        required = set((out.get("items") or {}).get("required") or [])
        if not set(out.get("x-kubernetes-list-map-keys") or []) <= required:
            del out["x-kubernetes-list-type"]
            out.pop("x-kubernetes-list-map-keys", None)
    if "type" not in out and not (
        out.get("x-kubernetes-int-or-string") or out.get("x-kubernetes-preserve-unknown-fields")
    ):
        raise ConvertError(f"{path}: no type")
    return out


def render(document: dict[str, Any]) -> str:
    return json.dumps(convert(document), indent=1, sort_keys=True) + "\n"


def pinned_version() -> str:
    for line in (ROOT / "hack" / "versions.env").read_text().splitlines():
        if line.startswith("KUBERNETES_VERSION="):
            return line.split("=", 1)[1].strip()
    raise SystemExit("hack/versions.env has no KUBERNETES_VERSION")


def _kubectl(*args: str) -> str:
    kubeconfig = os.environ.get("KUBECONFIG") or str(ROOT / ".cluster" / "kubeconfig")
    kubectl = ROOT / ".venv" / "bin" / "kubectl"
    cmd = [str(kubectl) if kubectl.exists() else "kubectl", "--kubeconfig", kubeconfig, *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def from_cluster() -> dict[str, Any]:
    """The OpenAPI document of the cluster the kubeconfig names, which must run the
    pinned Kubernetes version."""
    served = json.loads(_kubectl("get", "--raw", "/version"))["gitVersion"]
    if served != pinned_version():
        raise SystemExit(f"the cluster runs {served}, hack/versions.env pins {pinned_version()}")
    return json.loads(_kubectl("get", "--raw", "/openapi/v3/api/v1"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", help="a saved /openapi/v3/api/v1 document")
    parser.add_argument("--check", action="store_true", help="fail if the vendored file differs")
    args = parser.parse_args(argv)
    document = json.loads(Path(args.source).read_text()) if args.source else from_cluster()
    wanted = render(document)
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current == wanted:
            return 0
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                wanted.splitlines(keepends=True),
                "vendored",
                "generated",
            )
        )
        print(f"\n{OUT.relative_to(ROOT)} is stale: run `python hack/gen_pod_template_schema.py`")
        return 1
    OUT.write_text(wanted)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(wanted)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
