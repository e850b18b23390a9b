"""The chart's files without Helm: the CRD copy it ships, the values against their
schema, and the dashboard and alert rules against the metrics the operator exports.
(Helm, promtool and the API server check the chart in tests/e2e/test_chart.py.)"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from shadowroute import __version__
from shadowroute.observability import metrics

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "shadowroute"


def test_chart_ships_the_generated_crd() -> None:
    shipped = (CHART / "crds" / "shadowroute.io_shadowroutes.yaml").read_text()
    generated = (ROOT / "crds" / "shadowroute.io_shadowroutes.yaml").read_text()
    assert shipped == generated, "charts/shadowroute/crds/ differs from crds/: make crd"


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__


# --------------------------------------------------------------------------- values


def _check(value: Any, schema: dict[str, Any], defs: dict[str, Any], path: str) -> list[str]:
    """The subset of JSON Schema the chart's schema uses; enough to catch a value
    without a schema entry or of the wrong type (Helm does the full check)."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    errors = []
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int}
    want = schema.get("type")
    if want and not isinstance(value, types[want]):
        return [f"{path}: {value!r} is not {want}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                errors += _check(item, props[key], defs, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}.{key}: not in the schema")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += _check(item, schema["additionalProperties"], defs, f"{path}.{key}")
        errors += [f"{path}.{r}: required" for r in schema.get("required", []) if r not in value]
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += _check(item, schema["items"], defs, f"{path}[{i}]")
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: above {schema['maximum']}")
    return errors


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def test_default_values_satisfy_the_schema(schema) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert _check(values, schema, schema["definitions"], "values") == []


def test_every_top_level_value_has_a_schema_entry(schema) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"])


def test_schema_refuses_negative_replicas_and_unknown_leader_election_keys(schema) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    values["replicaCount"] = -1
    values["leaderElection"]["leaseDuration"] = "15s"  # the key is leaseDurationSeconds
    assert _check(values, schema, schema["definitions"], "values") == [
        "values.replicaCount: below 0",
        "values.leaderElection.leaseDuration: not in the schema",
    ]


# --------------------------------------------------------------------------- observability


def exported_names() -> set[str]:
    names = set()
    for collector in REGISTRY.collect():
        for sample in collector.samples:
            names.add(sample.name)
        names.add(collector.name)
    return {n for n in names if n.startswith("shadowroute_")}


def referenced(text: str) -> set[str]:
    return set(re.findall(r"\bshadowroute_[a-z_]+\b", text))


def _with_suffixes(names: set[str]) -> set[str]:
    out = set(names)
    for n in names:
        out |= {n + s for s in ("_total", "_bucket", "_count", "_sum")}
    return out


def test_dashboard_and_alerts_use_only_exported_metrics() -> None:
    """A renamed metric breaks the dashboard silently; here it breaks a test."""
    from shadowroute.api.models import HistoryEntry, MetricResult, ShadowRouteStatus

    # Every labelled series at least once, so that collect() lists its samples.
    rm = metrics.RouteMetrics()
    s = ShadowRouteStatus(phase="RolledBack")
    s.analysis.metrics = [MetricResult(name="m", value=1.0, verdict="Pass")]
    s.history = [
        HistoryEntry(revision="r", outcome="RolledBack", reason="X", at="2999-01-01T00:00:00Z")
    ]
    rm.observe("unit-chart", "x", s)
    metrics.observe_query(0.1, ok=False, reason="Test")
    known = _with_suffixes(exported_names())
    dashboard = (CHART / "files" / "dashboard.json").read_text()
    alerts = (CHART / "files" / "alerts.yaml").read_text()
    used = referenced(dashboard) | referenced(alerts)
    assert used, "no metric found in the dashboard and alerts"
    assert used <= known, f"not exported: {sorted(used - known)}"
    rm.forget("unit-chart", "x")


def test_dashboard_is_well_formed() -> None:
    dash = json.loads((CHART / "files" / "dashboard.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "namespace", "route"}
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and panel["description"], panel["title"]
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]


def test_every_alert_has_a_severity_summary_and_description() -> None:
    groups = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) >= 8
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
    docs = (ROOT / "docs" / "operations.md").read_text()
    missing = [r["alert"] for r in rules if r["alert"] not in docs]
    assert not missing, f"alerts not explained in docs/operations.md: {missing}"


# --------------------------------------------------------------------------- image and kind


def test_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    """It cannot be built here (no Docker); what can be checked without building is."""
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base[1])
    assert len(re.findall(r"^FROM ", text, re.M)) == 2
    assert "COPY --from=build /opt/shadowroute /opt/shadowroute" in text
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and not user[-1].startswith(("0", "root"))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pod = values["podSecurityContext"]
    assert user[-1] == f"{pod['runAsUser']}:{pod['runAsGroup']}", "image and chart agree"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ignored[ignored.index("*") :][:4] == ["*", "!pyproject.toml", "!README.md", "!operator/"]


def test_kind_up_script_parses() -> None:
    res = subprocess.run(
        ["bash", "-n", str(ROOT / "hack" / "kind-up.sh")], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
