"""spec.analysis at `kubectl apply`: the API server refuses what the CEL rules and
patterns can see (an unknown placeholder, credentials in a URL, a check with both or
neither of query and preset, ...), with the same message as the models' Python twins;
examples/analysis.yaml is accepted as written."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from shadowroute.api import ShadowRoute

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "analysis.yaml"


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def metric(**fields: Any) -> dict[str, Any]:
    return {"name": "m", **fields}


CASES = [
    (
        "unknown-placeholder",
        {"metrics": [metric(query='sum(x{a="{{ colour }}"})', max=1)]},
        "unknown or unclosed {{ placeholder }}",
    ),
    (
        "unclosed-placeholder",
        {"metrics": [metric(query='sum(x{a="{{ target "})', max=1)]},
        "unknown or unclosed {{ placeholder }}",
    ),
    (
        "query-and-preset",
        {"metrics": [metric(query="x", preset="error-rate", max=1)]},
        "exactly one of query and preset must be set",
    ),
    ("neither-query-nor-preset", {"metrics": [metric(max=1)]}, "exactly one of query and preset"),
    (
        "min-requests-without-a-count",
        {"metrics": [metric(query="x", max=1, minRequests=10)]},
        "minRequests needs a preset or a requestCountQuery",
    ),
    (
        "convention-without-preset",
        {"metrics": [metric(query="x", max=1, convention="istio")]},
        "convention is only used with a preset",
    ),
    (
        "unknown-no-data-policy",
        {"metrics": [metric(preset="error-rate", max=1, noData="skip")]},
        "noData",
    ),
    ("unknown-preset", {"metrics": [metric(preset="latency-p42", max=1)]}, "preset"),
    (
        "credentials-in-the-address",
        {"prometheus": {"address": "http://admin:secret@prometheus:9090"}},
        "prometheus.address",
    ),
    ("query-string-in-the-address", {"prometheus": {"address": "http://p:9090/?t=1"}}, "address"),
    (
        "webhook-without-url",
        {"notifications": {"webhooks": [{"name": "ops"}]}},
        "exactly one of url and urlSecretRef must be set",
    ),
    (
        "unreachable-policy",
        {"unreachable": {"timeout": "1m", "policy": "ignore"}},
        "unreachable.policy",
    ),
]


def mutated(changes: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(example())
    body["spec"]["analysis"].update(changes)
    return body


def apply(kubectl, body: dict[str, Any], namespace: str):
    body = copy.deepcopy(body)
    body["metadata"]["namespace"] = namespace
    return kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-",
        input=yaml.safe_dump(body), check=False,
    )  # fmt: skip


@pytest.mark.parametrize("case,changes,fragment", CASES, ids=[c[0] for c in CASES])
def test_the_api_server_and_the_models_refuse_it_alike(
    kubectl, namespace: str, crds_installed: None, case: str, changes: dict, fragment: str
) -> None:
    body = mutated(changes)
    result = apply(kubectl, body, namespace)
    assert result.returncode != 0, f"the API server accepted {case}"
    assert fragment in result.stderr, result.stderr
    with pytest.raises(ValidationError) as caught:
        ShadowRoute.model_validate(body)
    last = fragment.rsplit(".", 1)[-1]
    assert last in str(caught.value), str(caught.value)


def test_the_example_is_accepted(kubectl, namespace: str, crds_installed: None) -> None:
    result = apply(kubectl, example(), namespace)
    assert result.returncode == 0, result.stderr
    ShadowRoute.model_validate(example())
