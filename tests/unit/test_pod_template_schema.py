"""hack/gen_pod_template_schema.py: how Kubernetes' OpenAPI becomes the structural
schema of spec.template, and that the vendored file is in the CRD. (That the file is
what the pinned API server generates: tests/e2e/test_pod_template_schema.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from shadowroute.api.crd import POD_TEMPLATE_SCHEMA_FILE, build_crd, pod_template_schema

from .hack_scripts import load

gen = load("gen_pod_template_schema")
P = "#/components/schemas/"


def doc(**schemas: dict[str, Any]) -> dict[str, Any]:
    base = {
        gen.ROOT_TYPE: {
            "type": "object",
            "properties": {
                "metadata": {"allOf": [{"$ref": P + "Meta"}], "default": {}},
                "spec": {"description": "the spec", "allOf": [{"$ref": P + "Spec"}]},
            },
        },
        "Meta": {"type": "object", "properties": {"name": {"type": "string"}}},
    }
    return {"components": {"schemas": {**base, **schemas}}}


def spec(properties: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, **more}


def test_refs_are_inlined_and_metadata_is_labels_and_annotations() -> None:
    out = gen.convert(doc(Spec=spec({"n": {"$ref": P + "Num"}}), Num={"type": "integer"}))
    assert out["properties"]["spec"] == {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert set(out["properties"]["metadata"]["properties"]) == {"labels", "annotations"}
    assert "$ref" not in json.dumps(out) and "allOf" not in json.dumps(out)


def test_descriptions_defaults_and_enums_are_dropped() -> None:
    port = {"type": "string", "description": "d", "default": "TCP", "enum": ["TCP", "UDP"]}
    out = gen.convert(doc(Spec=spec({"protocol": port})))
    assert out["properties"]["spec"]["properties"]["protocol"] == {"type": "string"}


def test_int_or_string_and_quantity() -> None:
    out = gen.convert(
        doc(Spec=spec({"port": {"$ref": P + gen.INT_OR_STRING}, "cpu": {"$ref": P + gen.QUANTITY}}))
    )
    props = out["properties"]["spec"]["properties"]
    assert props["port"] == {"x-kubernetes-int-or-string": True}
    assert props["cpu"] == {
        "x-kubernetes-preserve-unknown-fields": True,
        "pattern": gen.QUANTITY_PATTERN,
    }


def test_a_list_map_is_kept_only_where_its_keys_are_required() -> None:
    item = spec({"name": {"type": "string"}, "protocol": {"type": "string"}}, required=["name"])
    by_name = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
    by_both = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name", "protocol"]}
    out = gen.convert(
        doc(
            Spec=spec(
                {
                    "a": {"type": "array", "items": item, **by_name},
                    "b": {"type": "array", "items": item, **by_both},
                }
            )
        )
    )
    props = out["properties"]["spec"]["properties"]
    assert props["a"]["x-kubernetes-list-type"] == "map"
    assert "x-kubernetes-list-type" not in props["b"], "protocol is neither required nor defaulted"


def test_shapeless_objects_keep_any_field() -> None:
    out = gen.convert(doc(Spec=spec({"raw": {"type": "object"}})))
    raw = out["properties"]["spec"]["properties"]["raw"]
    assert raw == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


@pytest.mark.parametrize(
    "node,error",
    [
        ({"oneOf": [{"type": "integer"}, {"type": "boolean"}]}, "union"),
        ({"type": "string", "x-new-keyword": 1}, "not handled"),
        ({"$ref": P + "Spec"}, "refers to itself"),
        ({"format": "int32"}, "no type"),
    ],
)
def test_what_it_cannot_express_is_an_error(node: dict[str, Any], error: str) -> None:
    with pytest.raises(gen.ConvertError, match=error):
        gen.convert(doc(Spec=spec({"x": node})))


def test_the_crd_embeds_the_vendored_schema_with_the_models_rules() -> None:
    template = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]["properties"]["template"]
    vendored = json.loads((gen.OUT.parent / POD_TEMPLATE_SCHEMA_FILE).read_text())
    assert gen.OUT.name == POD_TEMPLATE_SCHEMA_FILE
    assert set(template["properties"]["spec"]["properties"]) == set(
        vendored["properties"]["spec"]["properties"]
    )
    containers = pod_template_schema()["properties"]["spec"]["properties"]["containers"]
    assert containers["minItems"] == 1
    assert {"name", "image"} <= set(containers["items"]["required"])
    port = containers["items"]["properties"]["ports"]["items"]["properties"]
    assert "protocol" in port and "protocl" not in port
    assert '"default":' not in json.dumps(template), "a default would change stored templates"
