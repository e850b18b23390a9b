"""The kubectl plugin's pure parts: gate tokens and when a gate applies, the views,
the end of a rollout, the plan; and its argument and error handling."""

from __future__ import annotations

import copy
import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from shadowroute.api.models import ShadowRouteSpec
from shadowroute.cli import exit_codes, gates, plan, view
from shadowroute.cli.main import build_parser, main, rollout_ended
from shadowroute.rollout.machine import desired_revision

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 25, 5, 0, 0, tzinfo=dt.UTC)
# Shadowing needs a provider that can copy requests.
MIRRORING_TRAFFIC = {
    "provider": "gatewayapi",
    "gatewayAPI": {"parentRefs": [{"name": "gw"}], "hostnames": ["web.example"]},
}


def body(image: str = "app:1", **spec: Any) -> dict[str, Any]:
    out = {
        "apiVersion": "shadowroute.io/v1alpha1",
        "kind": "ShadowRoute",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 4,
            "template": {"spec": {"containers": [{"name": "app", "image": image}]}},
            "service": {"ports": [{"port": 80}]},
            "strategy": {
                "canary": {"steps": [{"weight": 25, "pause": {"duration": "1m"}}, {"weight": 50}]}
            },
        },
    }
    out["spec"].update(spec)
    return out


# --------------------------------------------------------------------------- gates


def test_token_is_rfc3339_utc_with_nanoseconds() -> None:
    assert gates.token(1_795_000_000_123_456_789) == "2026-11-18T11:06:40.123456789Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", gates.token())


@given(st.integers(0, 4 * 10**18), st.integers(0, 4 * 10**18))
def test_tokens_sort_like_the_times_they_name(a: int, b: int) -> None:
    """The operator orders pause against resume by comparing tokens as strings."""
    assert (gates.token(a) < gates.token(b)) == (a < b)


@pytest.mark.parametrize(
    ("gate", "status", "ok", "write"),
    [
        ("promote", {"stage": "Progressing", "phase": "Paused"}, True, True),
        ("promote", {"stage": "Shadowing"}, True, True),
        ("promote", {"stage": "Promoting"}, True, False),
        ("promote", {"stage": "Stable"}, False, False),
        ("abort", {"stage": "Progressing"}, True, True),
        ("abort", {"stage": "Stable"}, False, False),
        (
            "abort",
            {"stage": "Succeeded", "previousRevision": "a", "primaryRevision": "a"},
            True,
            True,
        ),
        (
            "abort",
            {"stage": "Succeeded", "previousRevision": "a", "primaryRevision": "b"},
            False,
            False,
        ),
        ("pause", {"stage": "Stable"}, True, True),
        ("pause", {"stage": "Progressing", "userPaused": True}, True, False),
        ("resume", {"stage": "Progressing", "userPaused": True}, True, True),
        ("resume", {"stage": "Progressing", "waitingForPromotion": True}, True, True),
        ("resume", {"stage": "Progressing", "phase": "Paused"}, False, False),
        ("resume", {"stage": "Stable"}, False, False),
        ("retry", {"stage": "RolledBack"}, True, True),
        ("retry", {"stage": "Progressing"}, False, False),
        # A rolled-back template brought back within its cooldown: the message says to
        # use the retry gate, so the plugin must let it through.
        (
            "retry",
            {"stage": "Stable", "conditions": [{"type": "Ready", "reason": "CoolingDown"}]},
            True,
            True,
        ),
        (
            "retry",
            {"stage": "Stable", "conditions": [{"type": "Ready", "reason": "Available"}]},
            False,
            False,
        ),
    ],
)
def test_gate_applies_only_where_it_does_something(gate, status, ok, write) -> None:
    verdict = gates.check(gate, status)
    assert (verdict.ok, verdict.write) == (ok, write), verdict.message
    assert verdict.message


def test_spec_paused_is_not_resumed_by_a_gate() -> None:
    verdict = gates.check("resume", {"stage": "Progressing", "phase": "Paused"})
    assert "spec.paused" in verdict.message


def test_retry_says_it_lifts_the_pause_gate_and_what_spec_paused_still_holds() -> None:
    rolled_back = {"stage": "RolledBack", "rolledBackRevision": "bbb", "userPaused": True}
    verdict = gates.check("retry", rolled_back)
    assert verdict.write and "lifts the pause gate" in verdict.message
    verdict = gates.check("retry", rolled_back, {"paused": True})
    assert "spec.paused still holds" in verdict.message
    assert "pause" not in gates.check("retry", {"stage": "RolledBack"}).message


def test_resume_wait_names_the_hold_that_keeps_a_noted_resume() -> None:
    status = {
        "phase": "Paused",
        "stage": "Progressing",
        "message": "canary step 1/2 (10%): waiting for the analysis to pass (resume noted)",
        "gates": {"resume": "t0", "resumeNoted": "t1"},
    }
    said = gates.seen("resume", "t1", status)
    assert said is not None and "noted by the operator" in said
    assert "waiting for the analysis to pass;" in said and "(resume noted)" not in said
    assert gates.seen("resume", "t2", status) is None  # another token: not seen yet
    assert gates.seen("resume", "t0", status).startswith("acknowledged by the operator")


# --------------------------------------------------------------------------- views


def test_age_is_kubectl_short() -> None:
    assert view.age("2026-11-25T04:59:18Z", NOW) == "42s"
    assert view.age("2026-11-25T04:55:00Z", NOW) == "5m"
    assert view.age("2026-11-22T05:00:00Z", NOW) == "3d"
    assert view.age(None, NOW) == "-" and view.age("garbage", NOW) == "-"


def live(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    obj = body(**spec)
    obj["metadata"].update(generation=3, creationTimestamp="2026-11-25T04:00:00Z")
    obj["status"] = {"observedGeneration": 3, **status}
    return obj


def test_get_rows() -> None:
    obj = live(
        {
            "phase": "Progressing",
            "stage": "Progressing",
            "currentStep": 1,
            "canaryWeight": 50,
            "stableRevision": "aaa",
            "canaryRevision": "bbb",
            "conditions": [{"type": "Ready", "status": "True"}],
            "message": "canary step 2/2",
        }
    )
    text = view.get_rows([obj], NOW, all_namespaces=True, wide=True)
    header, row = text.splitlines()
    assert header.split() == [
        "NAMESPACE", "NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "MIRROR", "STEP", "READY",
        "AGE", "STABLE-IMAGE", "CANARY-IMAGE", "MESSAGE",
    ]  # fmt: skip
    assert row.split()[:10] == [
        "shop", "web", "Progressing", "aaa", "bbb", "50%", "0%", "2/2", "True", "1h",
    ]  # fmt: skip


def test_status_view_shows_stage_weights_checks_and_events() -> None:
    obj = live(
        {
            "phase": "Paused",
            "stage": "Progressing",
            "canaryWeight": 25,
            "userPaused": True,
            "analysis": {
                "consecutiveFailures": 1,
                "lastRunAt": "2026-11-25T04:59:30Z",
                "metrics": [
                    {
                        "name": "error-rate",
                        "value": 0.0123456,
                        "verdict": "Fail",
                        "checkedAt": "2026-11-25T04:59:30Z",
                        "message": "above max 0.01",
                    },
                    {"name": "p95", "verdict": "Inconclusive", "message": "no data"},
                ],
            },
        },
        analysis={"failureLimit": 2, "metrics": []},
    )
    events = [
        {"type": "Normal", "reason": "StepReady", "message": "step 1",
         "lastTimestamp": "2026-11-25T04:59:00Z"},
        {"type": "Warning", "reason": "Paused", "note": "paused  by\nthe gate",
         "eventTime": "2026-11-25T04:59:50Z"},
    ]  # fmt: skip
    text = view.status_view(obj, view.sort_events(list(reversed(events))), NOW)
    assert "phase Paused (stage Progressing)" in text
    assert "canary step 1/2: weight 25%, pause 1m" in text
    obj["status"]["canaryWeight"] = 0  # not routed yet: the stage line says what is
    assert "canary step 1/2: weight 0% (25% once the step starts), pause 1m" in (
        view.status_view(obj, [], NOW)
    )
    assert "canary 25%" in text and "held by    pause gate" in text
    assert re.search(r"error-rate\s+0\.0123456\s+Fail\s+30s\s+above max 0.01", text)
    assert re.search(r"p95\s+-\s+Inconclusive", text)
    assert "failed runs in a row 1 (limit 2)" in text
    lines = text.splitlines()
    assert lines.index(next(x for x in lines if "StepReady" in x)) < lines.index(
        next(x for x in lines if "paused by the gate" in x)
    ), "events oldest first, whitespace folded"


def test_status_view_says_when_status_is_stale() -> None:
    obj = live({"phase": "Stable"})
    obj["metadata"]["generation"] = 4
    assert "spec is at 4" in view.status_view(obj, [], NOW)


def test_history_view() -> None:
    obj = live({"history": [{"revision": "bbb", "outcome": "RolledBack", "reason": "Aborted",
                             "message": "abort gate", "at": "2026-11-25T04:58:00Z",
                             "images": "app=web:2",
                             "changes": "image app: web:1 → web:2"}]})  # fmt: skip
    text = view.history_view(obj, NOW)
    assert re.search(
        r"2m\s+2026-11-25T04:58:00Z\s+RolledBack\s+bbb\s+app=web:2\s+image app: web:1 → web:2"
        r"\s+Aborted\s+abort gate",
        text,
    )


def test_status_and_get_wide_show_the_images() -> None:
    obj = live({"phase": "Progressing", "stage": "Progressing", "stableRevision": "aaa",
                "canaryRevision": "bbb", "stableImage": "app=web:1", "canaryImage": "app=web:2",
                "canaryChanges": "image app: web:1 → web:2"})  # fmt: skip
    text = view.status_view(obj, [], NOW)
    assert "stable aaa (app=web:1)   canary bbb (app=web:2)" in text
    assert "changes    image app: web:1 → web:2" in text
    row = view.get_rows([obj], NOW, all_namespaces=False, wide=True).splitlines()[1]
    assert re.search(r"app=web:1\s+app=web:2", row)
    assert "app=web" not in view.get_rows([obj], NOW, all_namespaces=False, wide=False)
    assert "no rollout" in view.history_view(live({}), NOW)


# --------------------------------------------------------------------------- rollout end


def test_rollout_ended() -> None:
    spec = ShadowRouteSpec.model_validate(body()["spec"])
    rev = desired_revision(spec)
    assert rollout_ended(live({"phase": "Progressing"}))[0] is None
    assert rollout_ended(live({"phase": "Succeeded", "stableRevision": rev}))[0] == 0
    assert rollout_ended(live({"phase": "Stable", "stableRevision": rev}))[0] == 0
    assert rollout_ended(live({"phase": "Stable", "stableRevision": "old"}))[0] is None
    assert rollout_ended(live({"phase": "RolledBack", "message": "x"}))[0] == exit_codes.ROLLED_BACK
    cooling = {"phase": "Stable", "stableRevision": "old", "rolledBackRevision": rev}
    assert rollout_ended(live(cooling))[0] == exit_codes.ROLLED_BACK
    stale = live({"phase": "Stable", "stableRevision": rev, "observedGeneration": 2})
    assert rollout_ended(stale)[0] is None, "a status from before the last apply says nothing"


# --------------------------------------------------------------------------- plan


def dep(role: str, revision: str, image: str, replicas: int, uid: str = "u1") -> dict[str, Any]:
    from shadowroute.names import Owner
    from shadowroute.render.workloads import deployment

    owner = Owner("shadowroute.io/v1alpha1", "ShadowRoute", "web", "shop", uid)
    tpl = {"spec": {"containers": [{"name": "app", "image": image}]}}
    obj = deployment(owner, role, revision, tpl, replicas)
    from shadowroute.render import diff

    obj = diff.with_applied_hash(obj)
    obj["status"] = {"replicas": replicas, "updatedReplicas": replicas,
                     "availableReplicas": replicas, "observedGeneration": 1}  # fmt: skip
    obj["metadata"]["generation"] = 1
    return obj


def stable_world(image: str = "app:1") -> tuple[dict[str, Any], dict[str, list]]:
    """A live, stable ShadowRoute and its children, as the operator leaves them."""
    from shadowroute.api.models import ShadowRouteStatus
    from shadowroute.names import Owner
    from shadowroute.render import diff
    from shadowroute.render.workloads import services

    rev = desired_revision(ShadowRouteSpec.model_validate(body(image)["spec"]))
    obj = live({"phase": "Stable", "stage": "Stable", "stableRevision": rev,
                "primaryRevision": rev}, )  # fmt: skip
    obj["metadata"]["uid"] = "u1"
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = image
    owner = Owner("shadowroute.io/v1alpha1", "ShadowRoute", "web", "shop", "u1")
    st_ = ShadowRouteStatus.from_body(obj["status"])
    spec = ShadowRouteSpec.model_validate(obj["spec"])
    children = {
        "Deployment": [dep("primary", rev, image, 4), dep("canary", rev, image, 0),
                       dep("shadow", rev, image, 0)],
        "Service": [diff.with_applied_hash(s) for s in services(owner, spec, st_)],
    }  # fmt: skip
    return obj, children


def test_plan_of_a_new_route_creates_everything() -> None:
    p = plan.make_plan(body(), "shop", None, {}, NOW)
    assert not p.exists and p.changes
    assert {(o.action, o.kind) for o in p.objects} == {
        ("create", "Deployment"),
        ("create", "Service"),
    }
    assert len(p.objects) == 5  # web, -primary, -canary Services and Deployments: no shadow
    text = plan.render(p, "accepted")
    assert "the first version" in text and "would change: yes" in text


def test_plan_of_the_same_manifest_changes_nothing() -> None:
    obj, children = stable_world()
    p = plan.make_plan(body(), "shop", obj, children, NOW)
    assert not p.spec_changes and not p.new_revision and not p.changes, plan.render(p)
    assert all(o.action == "unchanged" for o in p.objects)
    assert "no new revision" in plan.render(p)


def test_plan_of_a_new_image_shows_the_rollout() -> None:
    obj, children = stable_world()
    p = plan.make_plan(body("app:2"), "shop", obj, children, NOW)
    assert p.new_revision and p.changes
    assert p.spec_changes == ["spec.template.spec.containers[0].image: app:1 -> app:2"]
    assert p.stages[:2] == [
        "Progressing step 1/2: 25% of traffic, holds 1m",
        "Progressing step 2/2: 50% of traffic, advances when ready",
    ]
    assert [e[1] for e in p.events] == ["RolloutStarted"]
    canary = next(o for o in p.objects if (o.kind, o.name) == ("Deployment", "web-canary"))
    assert canary.action == "update"
    assert "spec.replicas: 0 -> 1" in canary.changes
    assert "spec.template.spec.containers[0].image: app:1 -> app:2" in canary.changes
    assert p.status_after["phase"] == "Progressing" and p.status_after["canaryWeight"] == 0


def test_plan_of_a_replica_change_is_not_a_new_revision() -> None:
    obj, children = stable_world()
    p = plan.make_plan(body(replicas=6), "shop", obj, children, NOW)
    assert not p.new_revision and p.spec_changes == ["spec.replicas: 4 -> 6"]
    primary = next(o for o in p.objects if (o.kind, o.name) == ("Deployment", "web-primary"))
    assert primary.action == "update" and primary.changes == ["spec.replicas: 4 -> 6"]


def test_plan_shows_the_shadow_stage_and_analysis() -> None:
    strategy = {"shadow": {"duration": "5m", "mirrorPercent": 20}, "blueGreen": {}}
    analysis = {"interval": "30s", "failureLimit": 1,
                "metrics": [{"name": "errors", "query": "x", "max": 0.1}]}  # fmt: skip
    manifest = body(strategy=strategy, analysis=analysis, traffic=MIRRORING_TRAFFIC)
    p = plan.make_plan(manifest, "shop", None, {}, NOW)
    assert p.stages[0].startswith("Shadowing: web-shadow gets 20% of requests mirrored for 5m")
    assert p.stages[1].startswith("Progressing: blue/green preview")
    assert any("errors every 30s, rolled back after 2 failed runs" in n for n in p.notes)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.update(kind="Deployment"), "not a ShadowRoute"),
        (lambda b: b["metadata"].pop("name"), "metadata.name is required"),
        (lambda b: b["spec"].update(replicas=-1), "spec.replicas"),
        (lambda b: b["spec"]["strategy"].update(blueGreen={}), "exactly one of"),
    ],
)
def test_plan_refuses_what_the_operator_would(mutate, message) -> None:
    b = copy.deepcopy(body())
    mutate(b)
    with pytest.raises(plan.PlanError, match=message):
        plan.make_plan(b, "shop", None, {}, NOW)


# --------------------------------------------------------------------------- the command


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_usage_errors_exit_2() -> None:
    assert run()[0] == exit_codes.USAGE
    assert run("promote")[0] == exit_codes.USAGE  # no NAME
    assert run("get", "-o", "xml")[0] == exit_codes.USAGE
    assert run("--help")[0] == exit_codes.OK


def test_plan_with_a_bad_file_exits_2_before_asking_the_cluster(tmp_path) -> None:
    code, _, err = run("plan", "-f", str(tmp_path / "missing.yaml"))
    assert code == exit_codes.USAGE and "cannot read" in err
    (tmp_path / "bad.yaml").write_text("kind: [unclosed")
    code, _, err = run("plan", "-f", str(tmp_path / "bad.yaml"), "-n", "x")
    assert code == exit_codes.USAGE and "not YAML" in err
    (tmp_path / "cm.yaml").write_text("kind: ConfigMap\napiVersion: v1\n")
    code, _, err = run("plan", "-f", str(tmp_path / "cm.yaml"), "-n", "x")
    assert code == exit_codes.USAGE and "no ShadowRoute" in err


def test_unreachable_cluster_exits_1(tmp_path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    code, _, err = run("get", "--kubeconfig", str(kubeconfig))
    assert code == exit_codes.ERROR and "cannot reach the API server" in err
    code, _, err = run("get", "--kubeconfig", str(tmp_path / "none"))
    assert code == exit_codes.ERROR and "kubeconfig" in err


def test_every_command_takes_namespace_anywhere() -> None:
    parser = build_parser()
    a = parser.parse_args(["-n", "one", "status", "web"])
    b = parser.parse_args(["status", "web", "-n", "two"])
    assert a.namespace == "one" and b.namespace == "two"


def test_exit_codes_are_documented() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    for code in exit_codes.ALL:
        assert re.search(rf"^\| {code} \|", doc, re.M), (
            f"exit code {code} not in docs/operations.md"
        )


def test_console_script_is_declared() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert 'kubectl-shadowroute = "shadowroute.cli:main"' in text


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("just some text\n", "is YAML, but not a Config with clusters, contexts and users"),
        ("garbage: [\n", "is not YAML at line 2"),
        ("apiVersion: v1\nkind: Config\nclusters: 3\n", "is YAML, but not a Config"),
    ],
)
def test_a_file_that_is_not_a_kubeconfig_is_a_one_line_error(tmp_path, text, said) -> None:
    """Issue 14, item 6: it was the client's traceback (TypeError, yaml.ParserError)."""
    path = tmp_path / "not-a-kubeconfig"
    path.write_text(text)
    for argv in (("get",), ("status", "shop")):
        code, out, err = run(*argv, "--kubeconfig", str(path))
        assert code == exit_codes.ERROR and out == ""
        assert err.startswith(f"error: cannot load kubeconfig: {path} {said}"), err
        assert err.count("\n") == 1, err


def test_status_view_never_says_last_run_and_no_run_at_once() -> None:
    """A run that measured no metric yet (no data) is a run: status names it and what it
    found; before any run it says so once."""
    spec = {"analysis": {"metrics": [{"name": "errors", "preset": "error-rate", "max": 0.01}]}}
    never = body(**spec)
    never["status"] = {"stage": "Progressing", "analysis": {}}
    text = view.status_view(never, [], NOW)
    assert "no run yet" in text and "no analysis run yet" in text and "last run" not in text
    ran = body(**spec)
    ran["status"] = {
        "stage": "Progressing",
        "analysis": {"lastRunAt": "2026-11-25T04:59:45Z", "message": "no data yet for errors"},
    }
    text = view.status_view(ran, [], NOW)
    assert "last run 15s ago" in text and "no data yet for errors" in text
    assert "no analysis run yet" not in text
