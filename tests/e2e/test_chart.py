"""The Helm chart with real tools: `helm lint`, `helm template`, the values schema
refusing bad values, the rendered manifests accepted by the API server (installed for
real in namespaced mode, server-side dry run in cluster mode), the alert rules
checked and unit-tested by promtool, and the dashboard's queries parsed by the real
Prometheus."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import SESSION_PREFIX, Cluster, KubectlFn
from .test_rbac import CHART, _versions, helm, render

pytestmark = pytest.mark.e2e

EVERYTHING = (
    "metrics.serviceMonitor.enabled=true",
    "metrics.comparatorPodMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.dashboard.enabled=true",
)


def test_helm_lint_passes_in_both_modes() -> None:
    helm("lint", "--strict", str(CHART))
    helm("lint", "--strict", str(CHART), "--set", "watch.namespaces={shop,web}")
    helm("lint", "--strict", str(CHART), "--set", ",".join(EVERYTHING))


def test_deployment_is_hardened() -> None:
    manifests = render("hard", "ops")
    dep = next(m for m in manifests if m["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    assert "affinity" not in pod
    assert pod["serviceAccountName"] == "hard-shadowroute"
    assert "--log-format=json" in container["args"]
    assert not [a for a in container["args"] if a.startswith("--namespace")]


def test_route_rules_are_what_the_providers_declare() -> None:
    """Rendered by Helm, in both modes: one rule per route kind a provider declares
    (group, plural, verbs), nothing more (hack/gen_rbac.py writes them)."""
    from shadowroute.traffic import ROUTE_RESOURCES

    declared = [
        {"apiGroups": [d.group], "resources": [d.plural], "verbs": list(d.verbs)}
        for d in ROUTE_RESOURCES.values()
    ]
    plurals = {d.plural for d in ROUTE_RESOURCES.values()}
    for sets in ((), ("watch.namespaces={shop,web}",)):
        roles = [
            m
            for m in render("routes", "ops", *sets)
            if m["kind"] in ("ClusterRole", "Role")
            and any("shadowroutes" in rule["resources"] for rule in m["rules"])
        ]
        assert len(roles) == (2 if sets else 1), [m["kind"] for m in roles]
        for role in roles:
            got = [rule for rule in role["rules"] if plurals & set(rule["resources"])]
            assert got == declared, role["metadata"]


def test_two_replicas_elect_a_leader() -> None:
    manifests = render("ha", "ops", "replicaCount=2")
    dep = next(m for m in manifests if m["kind"] == "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect" in args and "--leader-election-id=ha-shadowroute" in args
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    affinity = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    pdb = next(m for m in manifests if m["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    role = next(
        m
        for m in manifests
        if m["metadata"]["name"] == "ha-shadowroute-leader-election" and m["kind"] == "Role"
    )
    assert role["metadata"]["namespace"] == "ops"
    assert {"resourceNames": ["ha-shadowroute"], "verbs": ["get", "update"]}.items() <= role[
        "rules"
    ][0].items()
    single = render("one", "ops")
    assert not [m for m in single if m["kind"] in ("PodDisruptionBudget", "Role")]
    args = next(m for m in single if m["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert "--leader-elect" not in args["containers"][0]["args"]


def test_sharded_replicas_get_shards_lease_rights_and_no_leader_election() -> None:
    manifests = render("sh", "ops", "replicaCount=3", "sharding.shards=6",
                       "leaderElection.leaseDurationSeconds=20")  # fmt: skip
    dep = next(m for m in manifests if m["kind"] == "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--shards=6" in args and "--leader-election-id=sh-shadowroute" in args
    assert "--lease-duration=20" in args and "--leader-elect" not in args
    assert dep["spec"]["replicas"] == 3 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    role = next(m for m in manifests if m["kind"] == "Role"
                and m["metadata"]["name"] == "sh-shadowroute-leader-election")  # fmt: skip
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "create", "update", "delete"],
        }
    ]
    pdb = next(m for m in manifests if m["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    # One shard is leader election as before.
    one = render("one", "ops", "replicaCount=2", "sharding.shards=1")
    args = next(m for m in one if m["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert "--leader-elect" in args["containers"][0]["args"]
    assert not [a for a in args["containers"][0]["args"] if a.startswith("--shards")]
    res = helm("template", "x", str(CHART), "--set", "sharding.shards=0", check=False)
    assert res.returncode != 0 and "/sharding/shards" in res.stderr


def test_image_by_digest() -> None:
    digest = "sha256:" + "a" * 64
    dep = next(m for m in render("d", "ops", f"image.digest={digest}") if m["kind"] == "Deployment")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/shadowroute/shadowroute@{digest}"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ("replicaCount=-1", "replicaCount"),
        (
            "leaderElection.enabled=true,leaderElection.retryPeriodSeconds=20",
            "retryPeriodSeconds <",
        ),
        ("watch.namespaces={Shop_1}", "namespaces"),
        ("operator.logFormat=xml", "logFormat"),
        ("image.digest=latest", "digest"),
        ("metricsPort=80", "metricsPort"),
        ("replicas=1", "replicas"),  # a typo of replicaCount: unknown keys are refused
    ],
)
def test_values_schema_refuses_bad_values(values: str, complaint: str) -> None:
    res = helm("template", "x", str(CHART), "--set", values, check=False)
    assert res.returncode != 0, f"{values} was accepted"
    assert complaint in res.stderr, res.stderr


def test_service_monitor_needs_the_metrics_service() -> None:
    res = helm(
        "template", "x", str(CHART), "--set",
        "metrics.serviceMonitor.enabled=true,metrics.service.enabled=false", check=False,
    )  # fmt: skip
    assert res.returncode != 0 and "needs metrics.service.enabled" in res.stderr


def test_chart_installs_for_real_in_namespaced_mode(
    kubectl: KubectlFn, cluster: Cluster, namespace: str, crds_installed: None
) -> None:
    """`helm install` against the local API server: every object accepted and created,
    the operator Deployment available (kwok runs its pod), `helm uninstall` clean."""
    release = f"inst-{uuid.uuid4().hex[:6]}"
    env_kube = ["--kubeconfig", cluster.kubeconfig]
    helm(
        "install", release, str(CHART), "--namespace", namespace, *env_kube,
        "--set", f"watch.namespaces={{{namespace}}}", "--set", "metrics.dashboard.enabled=true",
        "--wait", "--timeout", "90s",
        "--skip-crds",  # the session's fixture installed it; other sessions share it
    )  # fmt: skip
    try:
        name = f"{release}-shadowroute"
        dep = json.loads(kubectl("get", "deploy", name, "-n", namespace, "-o", "json").stdout)
        assert dep["status"].get("availableReplicas") == 1
        for kind in ("serviceaccount", "role", "rolebinding", "configmap"):
            kubectl(
                "get", kind, name if kind != "configmap" else f"{name}-dashboard", "-n", namespace
            )
        svc = json.loads(
            kubectl("get", "svc", f"{name}-metrics", "-n", namespace, "-o", "json").stdout
        )
        assert svc["spec"]["ports"][0]["name"] == "http-metrics"
    finally:
        helm("uninstall", release, "--namespace", namespace, *env_kube)
    assert not kubectl("get", "role", "-n", namespace, "-o", "name").stdout.strip()


def _monitoring_crds(kubectl: KubectlFn) -> None:
    """ServiceMonitor, PodMonitor and PrometheusRule CRDs (fetched by hack/build.sh from
    the prometheus-operator module), so the API server validates those objects too."""
    cache = Path(os.environ.get("SHADOWROUTE_CACHE", Path.home() / ".cache" / "shadowroute"))
    crds = cache / "crds" / f"monitoring-{_versions()['PROMETHEUS_OPERATOR_VERSION']}.yaml"
    assert crds.exists(), f"{crds} is missing: run `bash hack/build.sh helm`"
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
    for crd in ("servicemonitors", "podmonitors", "prometheusrules"):
        kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            f"crd/{crd}.monitoring.coreos.com",
        )


def test_every_rendered_object_passes_a_server_side_dry_run(
    kubectl: KubectlFn, namespace: str, crds_installed: None
) -> None:
    _monitoring_crds(kubectl)
    release = f"{SESSION_PREFIX}-dry"
    for sets in (
        (),
        (f"watch.namespaces={{{namespace}}}", "replicaCount=2"),
        ("replicaCount=3", "sharding.shards=3"),  # the shards' Role and PodDisruptionBudget
    ):
        text = helm(
            "template", release, str(CHART), "--namespace", namespace, "--include-crds",
            *(a for s in (*EVERYTHING, *sets) for a in ("--set", s)),
        ).stdout  # fmt: skip
        docs = [d for d in yaml.safe_load_all(text) if d]
        kinds = {d["kind"] for d in docs}
        assert {
            "CustomResourceDefinition",
            "Deployment",
            "ServiceMonitor",
            "PodMonitor",
            "PrometheusRule",
        } <= kinds
        res = kubectl(
            "apply", "--server-side", "--force-conflicts", "--dry-run=server",
            "--field-manager=helm-dry-run", "-n", namespace, "-f", "-", input=text,
        )  # fmt: skip
        applied = [line for line in res.stdout.splitlines() if "(server dry run)" in line]
        assert len(applied) == len(docs), res.stdout


def test_chart_crd_is_the_generated_one() -> None:
    """Also a unit test; here the copy Helm ships is compared with what Helm renders."""
    text = helm("show", "crds", str(CHART)).stdout
    shipped = yaml.safe_load(text)
    generated = yaml.safe_load(
        (CHART.parents[1] / "crds" / "shadowroute.io_shadowroutes.yaml").read_text()
    )
    assert shipped == generated


# --------------------------------------------------------------------------- alerts


def held(instance: str, shard: int, values: str) -> dict[str, str]:
    """A replica's shadowroute_shard_held series (job "op")."""
    labels = f'job="op",instance="{instance}",shard="{shard}"'
    return {"series": f"shadowroute_shard_held{{{labels}}}", "values": values}


def expected(alert: str, value: str = "", **labels: str) -> dict[str, Any]:
    """An alert as promtool should see it: its labels, and its annotations with the
    templates filled in (the test's labels, and the value as the template formats it)."""
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())["groups"]
    rule = next(r for g in rules for r in g["rules"] if r["alert"] == alert)
    annotations = {}
    for key, text in rule["annotations"].items():
        for label, v in labels.items():
            text = text.replace("{{ $labels." + label + " }}", v)
        text = re.sub(r"\{\{ \$value[^}]*\}\}", value, text)
        annotations[key] = text
    return {"exp_labels": {**rule["labels"], **labels}, "exp_annotations": annotations}


WEB = 'namespace="shop",name="web"'
PROMTOOL_TESTS = {
    "rule_files": ["alerts.yaml"],
    "evaluation_interval": "1m",
    "tests": [
        {
            "interval": "1m",
            "input_series": [
                {"series": f'shadowroute_route_phase{{{WEB},phase="RolledBack"}}',
                 "values": "_ _ 1 1 1 1"},
                {"series": 'shadowroute_route_phase{namespace="shop",name="api",phase="Stable"}',
                 "values": "1 1 1 1 1 1"},
                {"series": 'shadowroute_build_info{version="0.1.0"}', "values": "1 1 1 1 1 1"},
                {"series": 'shadowroute_reconcile_errors_total{error="ApiError"}',
                 "values": "0+0x5"},
            ],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "ShadowRouteRolledBack", "exp_alerts": []},
                {"eval_time": "4m", "alertname": "ShadowRouteRolledBack",
                 "exp_alerts": [expected("ShadowRouteRolledBack", namespace="shop", name="web")]},
                {"eval_time": "5m", "alertname": "ShadowRouteOperatorAbsent", "exp_alerts": []},
                {"eval_time": "5m", "alertname": "ShadowRouteReconcileErrors", "exp_alerts": []},
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": 'shadowroute_reconcile_errors_total{error="ApiError"}',
                 "values": "0+60x30"},
                {"series": 'shadowroute_api_writes_total{kind="Deployment"}', "values": "0+600x40"},
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "ShadowRouteOperatorAbsent",
                 "exp_alerts": [expected("ShadowRouteOperatorAbsent")]},
                {"eval_time": "20m", "alertname": "ShadowRouteReconcileErrors",
                 "exp_alerts": [expected("ShadowRouteReconcileErrors", "1", error="ApiError")]},
                {"eval_time": "35m", "alertname": "ShadowRouteWriteStorm",
                 "exp_alerts": [expected("ShadowRouteWriteStorm", "10")]},
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": 'shadowroute_shards{job="op",instance="a"}', "values": "3x10"},
                {"series": 'shadowroute_shards{job="op",instance="b"}', "values": "3x10"},
                {"series": 'shadowroute_leader{job="op",instance="a"}', "values": "0x10"},
                {"series": 'shadowroute_leader{job="op",instance="b"}', "values": "0x10"},
                held("a", 0, "1x10"),
                held("b", 0, "0x4 1x6"),
                held("a", 1, "0x10"),
                held("b", 1, "1x10"),
                held("a", 2, "0x10"),
                held("b", 2, "0x10"),
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "ShadowRouteNoLeader", "exp_alerts": []},
                {"eval_time": "4m", "alertname": "ShadowRouteShardUnheld",
                 "exp_alerts": [expected("ShadowRouteShardUnheld", job="op", shard="2")]},
                {"eval_time": "4m", "alertname": "ShadowRouteShardSplitBrain", "exp_alerts": []},
                {"eval_time": "7m", "alertname": "ShadowRouteShardSplitBrain",
                 "exp_alerts": [expected("ShadowRouteShardSplitBrain", "2", job="op", shard="0")]},
            ],
        },
    ],
}  # fmt: skip


def _promtool() -> str:
    exe = shutil.which("promtool")
    assert exe, "promtool not found: it comes with Debian's prometheus (make deps)"
    return exe


def test_alert_rules_check_and_fire_as_documented(tmp_path: Path) -> None:
    shutil.copy(CHART / "files" / "alerts.yaml", tmp_path / "alerts.yaml")
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(PROMTOOL_TESTS))
    for args in (["check", "rules", "alerts.yaml"], ["test", "rules", "tests.yaml"]):
        res = subprocess.run(
            [_promtool(), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 0, res.stdout + res.stderr


def test_the_prometheus_rule_object_carries_the_same_rules(tmp_path: Path) -> None:
    rule = next(
        m for m in render("r", "ops", "metrics.prometheusRule.enabled=true")
        if m["kind"] == "PrometheusRule"
    )  # fmt: skip
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    (tmp_path / "rendered.yaml").write_text(yaml.safe_dump(rule["spec"]))
    res = subprocess.run(
        [_promtool(), "check", "rules", "rendered.yaml"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr


# --------------------------------------------------------------------------- dashboard


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard, variables replaced as Grafana would."""
    dash = json.loads((CHART / "files" / "dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dash["templating"]["list"] if v.get("definition")]
    out = []
    for e in exprs:
        e = e.replace("$namespace", ".*").replace("$route", ".*").replace("$__rate_interval", "1m")
        if e.startswith("label_values("):  # Grafana's helper: the series selector inside
            e = e[len("label_values(") : e.rindex(",")]
        out.append(e)
    return out


def prometheus_query(cluster: Cluster, expr: str) -> dict[str, Any]:
    assert cluster.prometheus, "no Prometheus (set SHADOWROUTE_PROMETHEUS)"
    url = f"{cluster.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def test_dashboard_queries_are_valid_promql(cluster: Cluster) -> None:
    bad = {}
    for expr in dashboard_queries():
        answer = prometheus_query(cluster, expr)
        if answer.get("status") != "success":
            bad[expr] = answer.get("error")
    assert not bad, bad
