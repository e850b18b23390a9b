"""The generated CRD: committed and current, structural, cheap enough for the CEL cost
estimator, consistent with the models; and the duration parser it relies on."""

from __future__ import annotations

import copy
import importlib.util
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from shadowroute.api import (
    DURATION_PATTERN,
    MAX_NAME_LENGTH,
    ShadowRoute,
    format_duration,
    parse_duration,
)
from shadowroute.api.crd import PRINTER_COLUMNS, SchemaError, build_crd, structural

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gen_crd = _load("gen_crd", ROOT / "hack" / "gen_crd.py")
QUANTITY_PATTERN = _load(
    "gen_pod_template_schema", ROOT / "hack" / "gen_pod_template_schema.py"
).QUANTITY_PATTERN
# The end-to-end case table, replayed here against the models (no cluster needed).
cases = _load("crd_validation_cases", ROOT / "tests" / "e2e" / "test_crd_validation.py")

CRD = build_crd()
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its field path, like "spec.strategy.canary.steps[]"."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}" if path else name)
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


# --------------------------------------------------------------------------- the file


def test_committed_crd_is_what_the_models_generate() -> None:
    committed = gen_crd.CRD_PATH.read_text()
    assert committed == gen_crd.render(), "stale CRD: run `python hack/gen_crd.py`"
    assert yaml.safe_load(committed) == build_crd()


def test_gen_crd_check_passes_on_the_committed_file() -> None:
    assert gen_crd.main(["--check"]) == 0


def test_names_scope_and_subresources() -> None:
    assert CRD["metadata"]["name"] == "shadowroutes.shadowroute.io"
    assert CRD["spec"]["group"] == "shadowroute.io"
    assert CRD["spec"]["scope"] == "Namespaced"
    assert CRD["spec"]["names"] == {
        "kind": "ShadowRoute",
        "listKind": "ShadowRouteList",
        "plural": "shadowroutes",
        "singular": "shadowroute",
        "shortNames": ["sr"],
        "categories": ["shadowroute"],
    }
    assert [v["name"] for v in CRD["spec"]["versions"]] == ["v1alpha1"]
    assert VERSION["served"] and VERSION["storage"]
    assert VERSION["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }


def test_printer_columns() -> None:
    columns = {c["name"]: (c["type"], c["jsonPath"]) for c in VERSION["additionalPrinterColumns"]}
    assert list(columns)[:7] == ["Phase", "Stable", "Canary", "Weight", "Mirror", "Ready", "Age"]
    assert columns["Weight"] == ("integer", ".status.canaryWeight")
    assert columns["Mirror"] == ("integer", ".status.mirrorPercent")
    assert columns["Ready"] == ("string", '.status.conditions[?(@.type=="Ready")].status')
    assert columns["Age"] == ("date", ".metadata.creationTimestamp")
    assert VERSION["additionalPrinterColumns"] == PRINTER_COLUMNS
    wide = {c["name"]: c["jsonPath"] for c in PRINTER_COLUMNS if c.get("priority") == 1}
    assert wide == {  # only in -o wide; jsonPaths the status has (item 7 of issue 14)
        "Stable Image": ".status.stableImage",
        "Canary Image": ".status.canaryImage",
        "Message": ".status.message",
    }
    paths = {path for path, _ in nodes(SCHEMA)}
    for _, json_path in columns.values():
        field = json_path.removeprefix(".").split("[")[0]
        assert field in paths or field == "metadata.creationTimestamp"


# --------------------------------------------------------------------------- structural


TEMPLATE = "spec.template"
"""Where the PodTemplateSpec schema vendored from Kubernetes sits."""
FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "nullable", "const"}


@pytest.mark.parametrize(
    "path,node", list(nodes(SCHEMA)), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_node_is_structural(path: str, node: dict[str, Any]) -> None:
    assert not FORBIDDEN & node.keys(), f"{path}: {FORBIDDEN & node.keys()}"
    if "additionalProperties" in node:  # a typed map: only Kubernetes' own, no fields beside
        assert path.startswith(TEMPLATE) and "properties" not in node, path
    if node.get("x-kubernetes-int-or-string"):
        assert "type" not in node
    elif "type" not in node:  # any JSON value: only a leaf that keeps whatever it is given
        assert node.get("x-kubernetes-preserve-unknown-fields") is True, path
        assert not {"properties", "items"} & node.keys(), path
    else:
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}
    if node.get("type") == "array":
        assert "items" in node
    for name in node.get("required", []):
        assert name in node.get("properties", {}), f"{path}: required {name} is not declared"
    if node.get("x-kubernetes-list-type") == "map":
        # The API server refuses a list-map key that is neither required nor defaulted.
        items = node["items"]
        for key in node["x-kubernetes-list-map-keys"]:
            assert key in items.get("required", []) or "default" in items["properties"][key]
    if "pattern" in node:
        assert not re.search(r"\(\?[=!<]|\\[1-9]", node["pattern"]), "RE2 has no lookaround"
        re.compile(node["pattern"])


def test_every_field_is_described() -> None:
    undocumented = [
        path
        for path, node in nodes(SCHEMA)
        if path
        and not path.endswith(("[]", "}"))
        and not path.startswith(f"{TEMPLATE}.spec.")  # kubectl explain deployment.spec.template
        and not node.get("description", "").strip()
    ]
    assert undocumented == ["metadata"]  # the API server documents ObjectMeta itself


def test_optional_fields_are_simply_not_required() -> None:
    strategy = SCHEMA["properties"]["spec"]["properties"]["strategy"]
    assert "required" not in strategy
    assert strategy["properties"]["shadow"]["type"] == "object"
    assert SCHEMA["required"] == ["spec"]
    assert SCHEMA["properties"]["spec"]["required"] == ["template", "service", "strategy"]


def test_status_carries_no_defaults_and_no_unknown_fields() -> None:
    for path, node in nodes(SCHEMA["properties"]["status"], "status"):
        assert "default" not in node, path
        assert not node.get("x-kubernetes-preserve-unknown-fields"), path


def test_only_pod_templates_and_expected_json_values_preserve_unknown_fields() -> None:
    preserving = [
        path for path, node in nodes(SCHEMA) if node.get("x-kubernetes-preserve-unknown-fields")
    ]
    # In the pod template, only Kubernetes' quantities (a number, or a string of the
    # quantity pattern) and its free-form fieldsV1.
    in_template = [p for p in preserving if p.startswith(TEMPLATE)]
    for path in in_template:
        node = dict(nodes(SCHEMA))[path]
        assert path.endswith("fieldsV1") or node["pattern"] == QUANTITY_PATTERN, path
    assert "spec.template.spec.containers[].resources.limits{}" in in_template
    job = "spec.checks[].job.template"
    assert [p for p in preserving if not p.startswith(TEMPLATE)] == [
        "spec.checks[].http.expect.json[].value",
        f"{job}.metadata",
        f"{job}.spec",
        f"{job}.spec.containers[]",
    ]


def test_conditions_are_a_map_keyed_by_type() -> None:
    conditions = SCHEMA["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_service_ports_are_a_map_keyed_by_port_and_protocol() -> None:
    """As Kubernetes does for a Service's ports: two field managers can each own an
    entry (issue 9, defect 8), and an entry written without protocol is the TCP one."""
    ports = SCHEMA["properties"]["spec"]["properties"]["service"]["properties"]["ports"]
    assert ports["x-kubernetes-list-type"] == "map"
    assert ports["x-kubernetes-list-map-keys"] == ["port", "protocol"]
    assert ports["items"]["required"] == ["port"]
    assert ports["items"]["properties"]["protocol"]["default"] == "TCP"


def test_converter_refuses_what_it_cannot_express() -> None:
    with pytest.raises(SchemaError, match="union"):
        structural({"anyOf": [{"type": "integer"}, {"type": "string"}]})
    with pytest.raises(SchemaError, match="exclusiveMinimum"):
        structural({"type": "integer", "exclusiveMinimum": 0})
    with pytest.raises(SchemaError, match="needs a type"):
        structural({"description": "untyped"})


# --------------------------------------------------------------------------- defaults


def schema_errors(value: Any, node: dict[str, Any], path: str = "") -> list[str]:
    """A small OpenAPI validator: enough to check defaults and examples offline."""
    errors: list[str] = []
    kind = node.get("type")
    if kind is None and node.get("x-kubernetes-preserve-unknown-fields"):
        return []  # any value (a quantity's pattern aside)
    if node.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            errors.append(f"{path}: not an int or string")
        return errors
    checks = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "number": int | float,
        "boolean": bool,
    }
    if not isinstance(value, checks[kind]) or (kind in {"integer", "number"} and value is True):
        return [f"{path}: {value!r} is not {kind}"]
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{path}: {value!r} not in enum")
    if "minimum" in node and value < node["minimum"]:
        errors.append(f"{path}: below minimum")
    if "maximum" in node and value > node["maximum"]:
        errors.append(f"{path}: above maximum")
    if kind == "string":
        if "pattern" in node and not re.fullmatch(node["pattern"].strip("^$"), value):
            errors.append(f"{path}: {value!r} does not match {node['pattern']}")
        if len(value) > node.get("maxLength", math.inf) or len(value) < node.get("minLength", 0):
            errors.append(f"{path}: length out of bounds")
    if kind == "array":
        if not node.get("minItems", 0) <= len(value) <= node.get("maxItems", math.inf):
            errors.append(f"{path}: item count out of bounds")
        for i, item in enumerate(value):
            errors += schema_errors(item, node["items"], f"{path}[{i}]")
    if kind == "object":
        properties = node.get("properties", {})
        for name in node.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: required")
        for name, item in value.items():
            if name in properties:
                errors += schema_errors(item, properties[name], f"{path}.{name}")
            elif isinstance(node.get("additionalProperties"), dict):
                errors += schema_errors(item, node["additionalProperties"], f"{path}.{name}")
            elif not node.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{path}.{name}: unknown field")
    return errors


@pytest.mark.parametrize(
    "path,node",
    [(p, n) for p, n in nodes(SCHEMA) if "default" in n],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_defaults_are_valid_for_their_field(path: str, node: dict[str, Any]) -> None:
    assert schema_errors(node["default"], node, path) == []


def test_defaults_in_the_schema_match_the_models() -> None:
    spec_schema = SCHEMA["properties"]["spec"]["properties"]
    minimal = cases.minimal_blue_green_manifest()
    parsed = ShadowRoute.spec_from_body(minimal).to_k8s()
    for name, node in spec_schema.items():
        if "default" in node:
            default = copy.deepcopy(node["default"])
            for inner, inner_node in node.get("properties", {}).items():
                if "default" in inner_node:
                    default.setdefault(inner, inner_node["default"])
            assert parsed[name] == default, name


@pytest.mark.parametrize("name", list(cases.VALID))
def test_valid_examples_match_the_schema(name: str) -> None:
    manifest = cases.VALID[name]()
    assert schema_errors(manifest["spec"], SCHEMA["properties"]["spec"], "spec") == []
    ShadowRoute.model_validate(manifest)


# --------------------------------------------------------------------------- CEL


def cel_nodes() -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    return [
        (path, node, rule)
        for path, node in nodes(SCHEMA)
        for rule in node.get("x-kubernetes-validations", [])
    ]


CEL_FUNCTIONS = {"has", "size", "all", "exists", "exists_one", "map", "filter"}
CEL_FUNCTIONS |= {"isSorted", "matches", "contains", "type", "duration"}


@pytest.mark.parametrize(
    "path,node,rule", cel_nodes(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_cel_rules_are_plausible(path: str, node: dict[str, Any], rule: dict[str, str]) -> None:
    expression = rule["rule"]
    assert rule.get("message"), "every rule explains itself"
    code = re.sub(r"'[^']*'", "''", expression)  # string literals hold regexes, not code
    assert code.count("(") == code.count(")")
    assert "self" in code
    calls = set(re.findall(r"([A-Za-z_]\w*)\s*\(", code))
    assert calls <= CEL_FUNCTIONS, f"unknown functions {calls - CEL_FUNCTIONS}"
    # Every field a rule reads exists in the schema where the rule sits.
    item_vars = set(re.findall(r"self\.(?:all|exists|exists_one|map|filter)\((\w+),", code))
    for var, field in re.findall(r"\b([a-z]\w*)\.([A-Za-z]\w*)\b(?!\s*\()", code):
        if var == "self":
            known = node.get("properties", {}).keys() | ({"metadata"} if path == "" else set())
        elif var in item_vars:
            known = node["items"].get("properties", {}).keys()
        else:
            continue
        assert field in known, f"{path}: rule reads {var}.{field}, which is not declared"


def _bounded(node: dict[str, Any]) -> bool:
    if node.get("type") == "array":
        return "maxItems" in node
    if node.get("type") == "string" or node.get("x-kubernetes-int-or-string"):
        return "maxLength" in node or "enum" in node
    return True


@pytest.mark.parametrize(
    "path,node,rule", cel_nodes(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_cel_rules_see_only_bounded_values(path: str, node: dict[str, Any], rule: dict) -> None:
    """The API server estimates a rule's worst case from the maxItems and maxLength of
    what it reads: an unbounded list or string there can get the whole CRD refused."""
    if path == "":
        return  # the root rules read only metadata.name, which the API server bounds
    code = re.sub(r"'[^']*'", "''", rule["rule"])
    assert _bounded(node), path
    # Every chain a rule reads (self.a.b[0].c, or x.a where a macro binds x to the items
    # of a list it walks) is resolved through the schema, each step checked.
    bound: dict[str, dict[str, Any]] = {}
    for chain, var in re.findall(
        r"\b(self(?:\.\w+)*)\.(?:all|exists|exists_one|map|filter)\((\w+),", code
    ):
        bound[var] = _resolve(node, chain.removeprefix("self"), path)["items"]
    for var, chain in re.findall(r"\b([a-z]\w*)((?:\.[A-Za-z]\w*\b(?!\s*\()|\[\d+\])+)", code):
        if var == "self":
            _resolve(node, chain, path)
        elif var in bound:
            _resolve(bound[var], chain, f"{path} {var}")


def _resolve(node: dict[str, Any], chain: str, where: str) -> dict[str, Any]:
    """The schema node a chain like ".a.b[0].c" reads, asserting each step is bounded."""
    for field, index in re.findall(r"\.(\w+)|\[(\d+)\]", chain):
        node = node["items"] if index else node["properties"][field]
        assert _bounded(node), f"{where}: {chain} reads an unbounded value at {field or index}"
    return node


def test_name_rules_use_the_limit_of_the_children() -> None:
    rules = [r["rule"] for r in SCHEMA["x-kubernetes-validations"]]
    assert f"size(self.metadata.name) <= {MAX_NAME_LENGTH}" in rules
    assert MAX_NAME_LENGTH + len("-primary") == 63


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("case", cases.INVALID, ids=[case.id for case in cases.INVALID])
def test_models_reject_what_the_api_server_rejects(case: Any) -> None:
    with pytest.raises(ValidationError):
        ShadowRoute.model_validate(case.manifest())


def test_the_case_table_covers_enough_cases() -> None:
    assert len(cases.INVALID) >= 24
    assert len({case.id for case in cases.INVALID}) == len(cases.INVALID)


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("0s", 0),
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        ("2h45m30s250ms", 9930.25),
        ("90m", 5400),
        ("1s1h", 3601),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "5", "10", "5 minutes", "-5m", "1d", "abc", ".5s", "5M", "5m ", "5m\n", "1" * 32 + "s"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "seconds,text",
    [
        (0, "0s"),
        (0.5, "500ms"),
        (90.5, "1m30s500ms"),
        (5400, "1h30m"),
        (3600, "1h"),
        (1.0004, "1s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_duration_refuses_negative() -> None:
    with pytest.raises(ValueError):
        format_duration(-1)


UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
terms = st.tuples(
    st.integers(0, 999),
    st.one_of(st.none(), st.integers(0, 99)),
    st.sampled_from(sorted(UNITS)),
)


def _spell(term: tuple[int, int | None, str]) -> str:
    whole, fraction, unit = term
    return f"{whole}{'' if fraction is None else f'.{fraction}'}{unit}"


@given(st.integers(0, 10**10))
def test_format_then_parse_is_exact_to_the_millisecond(milliseconds: int) -> None:
    seconds = milliseconds / 1000
    text = format_duration(seconds)
    assert re.fullmatch(DURATION_PATTERN, text)
    assert parse_duration(text) == seconds


@given(st.lists(terms, min_size=1, max_size=4))
def test_parse_adds_up_its_terms(parts: list[tuple[int, int | None, str]]) -> None:
    text = "".join(_spell(part) for part in parts)
    expected = sum(float(_spell(part)[: -len(part[2])]) * UNITS[part[2]] for part in parts)
    assert math.isclose(parse_duration(text), expected, rel_tol=1e-12, abs_tol=1e-9)
    assert abs(parse_duration(format_duration(parse_duration(text))) - expected) <= 0.0005 + 1e-9


@given(st.text(alphabet="0123456789.mshd -\n", max_size=16))
def test_parse_agrees_with_the_schema_pattern(text: str) -> None:
    """What the API server's pattern accepts is exactly what the operator can parse."""
    if re.fullmatch(DURATION_PATTERN.strip("^$"), text):
        assert parse_duration(text) >= 0
    else:
        with pytest.raises(ValueError):
            parse_duration(text)
