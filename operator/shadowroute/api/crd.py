"""The ShadowRoute CustomResourceDefinition, generated from the pydantic models.

pydantic's JSON Schema is close to what the API server wants but not the same: the API
server accepts only *structural* OpenAPI v3 schemas (a type on every node, no $ref, no
anyOf for optional fields, no additionalProperties beside properties). ``structural``
rewrites one into the other and refuses any keyword it does not know how to carry, so
a model change that the API server would reject fails here, in a unit test, instead.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

from .models import (
    CATEGORIES,
    CRD_NAME,
    GROUP,
    KIND,
    LIST_KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    ShadowRoute,
    ShadowRouteStatus,
)

# Keywords carried over unchanged. Anything else pydantic emits (exclusiveMinimum as a
# number, const, prefixItems, ...) is an error rather than a silently different schema.
_KEPT_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "format",
        "enum",
        "default",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "required",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
    }
)
_DROPPED_KEYWORDS = frozenset({"title"})

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Stable", "type": "string", "jsonPath": ".status.stableRevision"},
    {"name": "Canary", "type": "string", "jsonPath": ".status.canaryRevision"},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
    {"name": "Mirror", "type": "integer", "jsonPath": ".status.mirrorPercent"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    # -o wide only (priority 1): what each revision runs, and what the operator says.
    {"name": "Stable Image", "type": "string", "jsonPath": ".status.stableImage", "priority": 1},
    {"name": "Canary Image", "type": "string", "jsonPath": ".status.canaryImage", "priority": 1},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
]


class SchemaError(ValueError):
    """The models produce a schema the API server would not accept as structural."""


# `kubectl scale` and a HorizontalPodAutoscaler set spec.replicas (the primary's count;
# stages.replicas_for splits it) and read the primary's pods from status.
SCALE = {
    "specReplicasPath": ".spec.replicas",
    "statusReplicasPath": ".status.replicas",
    "labelSelectorPath": ".status.selector",
}


def structural(json_schema: dict[str, Any], *, keep_defaults: bool = True) -> dict[str, Any]:
    """Inline $defs and rewrite pydantic's JSON Schema into a structural OpenAPI v3 schema.

    Optional[X] becomes X (the field is simply not required), ``default: null`` is
    dropped, and ``additionalProperties: true`` becomes
    ``x-kubernetes-preserve-unknown-fields``.
    """
    definitions = json_schema.get("$defs", {})
    root = {key: value for key, value in json_schema.items() if key != "$defs"}
    return _convert(root, definitions, keep_defaults, path="<root>")


def _convert(
    node: dict[str, Any], definitions: dict[str, Any], keep_defaults: bool, path: str
) -> dict[str, Any]:
    node = dict(node)
    base: dict[str, Any] = {}
    if "$ref" in node:
        name = node.pop("$ref").removeprefix("#/$defs/")
        base = _convert(definitions[name], definitions, keep_defaults, path)
    elif "anyOf" in node:
        variants = [v for v in node.pop("anyOf") if v != {"type": "null"}]
        if len(variants) != 1:
            raise SchemaError(f"{path}: a union of several types is not structural")
        base = _convert(variants[0], definitions, keep_defaults, path)

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYWORDS:
            continue
        if key == "default" and (value is None or not keep_defaults):
            continue
        if key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif value is not False:  # false is the default for a structural schema
                raise SchemaError(f"{path}: typed additionalProperties are not supported")
            continue
        if key == "properties":
            out[key] = {
                name: _convert(prop, definitions, keep_defaults, f"{path}.{name}")
                for name, prop in value.items()
            }
            continue
        if key == "items":
            out[key] = _convert(value, definitions, keep_defaults, f"{path}[]")
            continue
        if key not in _KEPT_KEYWORDS:
            raise SchemaError(f"{path}: keyword {key!r} has no structural equivalent here")
        if key == "description":
            value = " ".join(value.split())  # docstrings wrap; kubectl explain does not
        out[key] = copy.deepcopy(value)

    merged = {**base, **out}  # the field's own description and default win over the model's
    rules = base.get("x-kubernetes-validations", []) + out.get("x-kubernetes-validations", [])
    if rules:
        merged["x-kubernetes-validations"] = rules
    # Untyped only where Kubernetes allows it: int-or-string, or any JSON value at all.
    untyped = merged.get("x-kubernetes-int-or-string") or merged.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if "type" not in merged and not untyped:
        raise SchemaError(f"{path}: every node of a structural schema needs a type")
    return merged


POD_TEMPLATE_SCHEMA_FILE = "pod_template_schema.json"
"""The structural schema of io.k8s.api.core.v1.PodTemplateSpec, vendored from the
pinned Kubernetes version by hack/gen_pod_template_schema.py."""


def pod_template_schema() -> dict[str, Any]:
    """The vendored PodTemplateSpec schema with the models' own rules on top: at least
    one container, each with a name and an image (Kubernetes requires the image of a
    Deployment's containers only in its validation, which runs after apply)."""
    text = resources.files(__package__).joinpath(POD_TEMPLATE_SCHEMA_FILE).read_text()
    schema = json.loads(text)
    containers = schema["properties"]["spec"]["properties"]["containers"]
    containers["minItems"] = 1
    item = containers["items"]
    item["required"] = sorted({*item.get("required", []), "name", "image"})
    for key in ("name", "image"):
        item["properties"][key]["minLength"] = 1
    return schema


def _typed_template(generated: dict[str, Any]) -> dict[str, Any]:
    """spec.template: the real PodTemplateSpec schema, so `kubectl apply` refuses a
    misspelt field; the models' descriptions stay."""
    typed = pod_template_schema()
    typed["description"] = generated["description"]
    typed["required"] = generated.get("required", ["spec"])
    for part in ("metadata", "spec"):
        typed["properties"][part]["description"] = generated["properties"][part]["description"]
    meta = typed["properties"]["metadata"]["properties"]
    meta["labels"]["description"] = "Labels of the pods (the operator adds its own)."
    meta["annotations"]["description"] = "Annotations of the pods."
    containers = typed["properties"]["spec"]["properties"]["containers"]
    containers["description"] = generated["properties"]["spec"]["properties"]["containers"][
        "description"
    ]
    return typed


def openapi_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the ShadowRoute resource."""
    schema = structural(ShadowRoute.model_json_schema(by_alias=True, mode="validation"))
    # Status is written by the operator alone: defaults applied by the API server would
    # only make the stored status differ from what was written.
    status = structural(
        ShadowRouteStatus.model_json_schema(by_alias=True, mode="validation"),
        keep_defaults=False,
    )
    properties = schema["properties"]
    spec = properties["spec"]["properties"]
    spec["template"] = _typed_template(spec["template"])
    status["description"] = properties["status"]["description"]
    properties["status"] = status
    # apiVersion and kind are set by clients and checked by the API server; a schema
    # default there would only mislead.
    for key in ("apiVersion", "kind"):
        properties[key] = {"type": "string", "description": properties[key]["description"]}
    properties["metadata"] = {"type": "object"}
    schema["required"] = ["spec"]
    return schema


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition object, ready to be dumped to YAML and applied."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "shadowroute"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": LIST_KIND,
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}, "scale": copy.deepcopy(SCALE)},
                    "additionalPrinterColumns": copy.deepcopy(PRINTER_COLUMNS),
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }
