"""The traffic part of the models: the end-to-end refusal table replayed against the
pydantic models (every CEL rule has a Python twin with the same message), the
examples, and the generated schema of spec.traffic."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from pydantic import ValidationError
from shadowroute.api import ShadowRoute, ShadowRouteSpec
from shadowroute.api.crd import build_crd
from shadowroute.api.models import SPEC_TRAFFIC_RULES, TRAFFIC_RULES, TrafficSpec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


cases = _load("traffic_validation_cases", ROOT / "tests/e2e/test_traffic_validation.py")
SCHEMA = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("case", cases.INVALID, ids=[c.id for c in cases.INVALID])
def test_models_refuse_what_the_api_server_refuses(case) -> None:
    with pytest.raises(ValidationError) as error:
        ShadowRoute.model_validate(case.make())
    if not case.schema_only:
        assert case.says in str(error.value), "the Python twin says what the CEL rule says"


@pytest.mark.parametrize("make", cases.VALID.values(), ids=list(cases.VALID))
def test_models_accept_what_the_api_server_accepts(make) -> None:
    ShadowRoute.model_validate(make())


def test_every_rule_is_exercised_by_the_table() -> None:
    for r in TRAFFIC_RULES + SPEC_TRAFFIC_RULES:
        assert any(c.says in r.message for c in cases.INVALID if not c.schema_only), r.message


def test_rules_report_at_the_field_they_are_about() -> None:
    traffic = SCHEMA["properties"]["spec"]["properties"]["traffic"]
    for node, rules in (
        (traffic, TRAFFIC_RULES),
        (SCHEMA["properties"]["spec"], SPEC_TRAFFIC_RULES),
    ):
        by_rule = {r["rule"]: r for r in node["x-kubernetes-validations"]}
        for r in rules:
            expected = {"rule": r.rule(), "message": r.message, "fieldPath": r.field}
            assert by_rule[r.rule()] == expected


def test_the_traffic_section_of_the_schema() -> None:
    traffic = SCHEMA["properties"]["spec"]["properties"]["traffic"]
    assert traffic["default"] == {"provider": "none"}
    assert set(traffic["properties"]) == {
        "provider", "port", "gatewayAPI", "nginx", "istio", "preview", "stickiness",
    }  # fmt: skip
    assert traffic["properties"]["provider"]["enum"] == ["none", "gatewayapi", "nginx", "istio"]


def test_python_names_and_wire_names() -> None:
    traffic = TrafficSpec.model_validate(
        {"provider": "gatewayapi", "gatewayAPI": {"httpRoute": {"name": "site", "rule": "web"}}}
    )
    assert traffic.gateway_api is not None and traffic.gateway_api.http_route is not None
    assert traffic.to_k8s() == {
        "provider": "gatewayapi",
        "gatewayAPI": {"httpRoute": {"name": "site", "rule": "web"}},
    }


def test_no_traffic_section_means_provider_none() -> None:
    spec = ShadowRouteSpec.model_validate(
        {
            "template": {"spec": {"containers": [{"name": "a", "image": "b"}]}},
            "service": {"ports": [{"port": 80}]},
            "strategy": {"blueGreen": {}},
        }
    )
    assert spec.traffic.provider == "none" and spec.traffic.preview is None


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_are_valid_shadowroutes(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    routes = [d for d in docs if d["kind"] == "ShadowRoute"]
    assert routes, "every example has a ShadowRoute"
    for route in routes:
        ShadowRoute.model_validate(route)


def test_there_is_an_example_per_provider() -> None:
    providers = set()
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "ShadowRoute":
                providers.add((doc["spec"].get("traffic") or {}).get("provider", "none"))
    assert providers >= {"none", "gatewayapi", "nginx", "istio"}
