"""The shadow comparison as the operator sees it: the resource's rules, the children it
renders, the verdict from the comparator's counters, and what the stage does with it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from shadowroute.api import ShadowRouteSpec
from shadowroute.api.models import ComparisonVerdict, ShadowCompare, ShadowRoute
from shadowroute.compare import gate
from shadowroute.names import BASELINE, COMPARATOR, LIVE_LABEL, ROLE_LABEL, Stage
from shadowroute.reasons import Reason
from shadowroute.render.comparison import stale_comparison_children
from shadowroute.rollout.observe import AnalysisSignal, Health

from .sim import OWNER, Sim, spec_dict

COMPARE = {"maxMismatchRate": 0.02, "minCompared": 50}


def compared_spec(**compare: Any) -> dict[str, Any]:
    return spec_dict(
        shadow={"duration": "1m", "mirrorPercent": 100, "compare": {**COMPARE, **compare}}
    )


def shadowing(sim: Sim) -> Sim:
    sim.set_image("web:2")
    sim.run_until(lambda s: s.status.stage == Stage.SHADOWING and s.status.stage_ready_at)
    return sim


def by_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def rendered(sim: Sim) -> dict[tuple[str, str], dict[str, Any]]:
    from shadowroute.wanted import wanted

    return by_name(wanted(sim.spec, sim.status, sim.seen(), OWNER, sim.now).objects)


# ------------------------------------------------------------------ the resource


def test_compare_defaults_to_safe_methods_against_a_baseline_of_two() -> None:
    c = ShadowCompare()
    assert [m.value for m in c.methods] == ["GET", "HEAD", "OPTIONS"]
    assert (c.against.value, c.baseline_replicas, c.compare_bodies) == ("baseline", 2, True)
    assert c.max_latency_ratio is None


def test_compare_needs_copies_to_compare() -> None:
    raw = spec_dict(shadow={"duration": "1m", "mirrorPercent": 0, "compare": {}})
    with pytest.raises(ValidationError, match="mirrorPercent above 0"):
        ShadowRouteSpec.model_validate(raw)


@pytest.mark.parametrize(
    "field, value",
    [
        ("maxMismatchRate", 1.5),
        ("minCompared", 0),
        ("methods", ["FETCH"]),
        ("ignorePaths", ["meta.id"]),
        ("ignoreHeaders", ["X-Request-Id"]),
        ("maxLatencyRatio", 0.5),
        ("baselineReplicas", 0),
        ("against", "secondary"),
    ],
)
def test_bad_compare_fields_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        ShadowRouteSpec.model_validate(compared_spec(**{field: value}))


def test_a_comparing_route_name_leaves_room_for_the_comparator() -> None:
    body = {"metadata": {"name": "a" * 53}, "spec": compared_spec()}
    with pytest.raises(ValidationError, match="at most 52 characters"):
        ShadowRoute.model_validate(body)
    ShadowRoute.model_validate({"metadata": {"name": "a" * 52}, "spec": compared_spec()})
    ShadowRoute.model_validate({"metadata": {"name": "a" * 55}, "spec": spec_dict()})


# ------------------------------------------------------------------ the children


def test_the_comparator_is_the_mirror_target_and_asks_the_shadow_and_the_baseline() -> None:
    sim = shadowing(
        Sim(compared_spec(ignorePaths=["body.at"], ignoreHeaders=["x-request-id"])).stable()
    )
    objs = rendered(sim)
    route = objs[("HTTPRoute", "web")]
    mirrors = [
        f["requestMirror"]["backendRef"]["name"]
        for rule in route["spec"]["rules"]
        for f in rule.get("filters", [])
        if f["type"] == "RequestMirror"
    ]
    assert mirrors == ["web-comparator"]
    dep = objs[("Deployment", "web-comparator")]
    assert dep["spec"]["replicas"] == 1
    pod = dep["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    assert c["command"] == ["shadowroute-compare"] and c["image"] == "shadowroute:test"
    assert "--candidate=http://web-shadow:80" in c["args"]
    assert "--baseline=http://web-baseline:80" in c["args"]
    assert f"--revision={sim.status.canary_revision}" in c["args"]
    assert {"--ignore-path=body.at", "--ignore-header=x-request-id", "--method=GET"} <= set(
        c["args"]
    )
    assert "--method=POST" not in c["args"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8071"
    svc = objs[("Service", "web-comparator")]
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("mirror", 80, 8070),
        ("admin", 8071, 8071),
    ]


def test_the_baseline_runs_the_stable_template_and_never_takes_live_traffic() -> None:
    sim = Sim(compared_spec()).stable()
    stable = sim.status.stable_revision
    shadowing(sim)
    objs = rendered(sim)
    baseline = objs[("Deployment", "web-baseline")]
    primary = objs[("Deployment", "web-primary")]
    assert baseline["spec"]["replicas"] == 2
    pod = baseline["spec"]["template"]
    assert pod["spec"] == primary["spec"]["template"]["spec"]
    assert pod["metadata"]["labels"][ROLE_LABEL] == BASELINE
    assert pod["metadata"]["labels"]["shadowroute.io/revision"] == stable
    assert LIVE_LABEL not in pod["metadata"]["labels"]
    assert ("Service", "web-baseline") in objs


def test_against_primary_asks_the_primary_and_runs_no_baseline() -> None:
    sim = shadowing(Sim(compared_spec(against="primary")).stable())
    objs = rendered(sim)
    (c,) = objs[("Deployment", "web-comparator")]["spec"]["template"]["spec"]["containers"]
    assert "--baseline=http://web-primary:80" in c["args"]
    assert objs[("Deployment", "web-baseline")]["spec"]["replicas"] == 0


def test_the_comparison_runs_pods_only_while_shadowing() -> None:
    sim = Sim(compared_spec()).stable()
    objs = rendered(sim)
    assert objs[("Deployment", "web-comparator")]["spec"]["replicas"] == 0
    assert objs[("Deployment", "web-baseline")]["spec"]["replicas"] == 0
    sim.comparison = AnalysisSignal(Health.HEALTHY, Reason.COMPARISON_PASSED, "ok")
    shadowing(sim)
    sim.run_until(lambda s: s.status.stage == Stage.PROGRESSING, seconds=10)
    objs = rendered(sim)
    assert objs[("Deployment", "web-comparator")]["spec"]["replicas"] == 0
    assert objs[("Deployment", "web-baseline")]["spec"]["replicas"] == 0


def test_no_comparison_no_children_and_old_ones_are_stale() -> None:
    sim = Sim(spec_dict(shadow={"duration": "1m"})).stable()
    objs = rendered(sim)
    assert not [k for k in objs if k[1] in ("web-baseline", "web-comparator")]
    route = objs[("HTTPRoute", "web")]
    assert "web-comparator" not in str(route)
    live = {
        "Deployment": {"web-comparator": {"metadata": {"name": "web-comparator", "uid": "u1"}}},
        "Service": {
            "web-baseline": {"metadata": {"name": "web-baseline", "uid": "u2"}},
            "web-primary": {"metadata": {"name": "web-primary", "uid": "u3"}},
        },
    }
    stale = stale_comparison_children(OWNER, sim.spec, list(objs.values()), live)
    assert stale_comparison_children(OWNER, Sim(compared_spec()).spec, [], live) == []
    assert sorted((o["kind"], o["metadata"]["name"]) for o in stale) == [
        ("Deployment", "web-comparator"),
        ("Service", "web-baseline"),
    ]


# ------------------------------------------------------------------ the stage


def test_the_shadow_stage_waits_for_the_comparator_and_the_baseline() -> None:
    sim = Sim(compared_spec()).stable()
    sim.ready_after[COMPARATOR] = 3
    sim.set_image("web:2")
    sim.tick()
    sim.tick()
    assert sim.status.stage == Stage.SHADOWING and not sim.status.stage_ready_at
    assert sim.status.mirror_percent == 0
    assert "comparator of revision" in sim.status.message
    sim.run_until(lambda s: s.status.stage_ready_at)
    assert sim.status.mirror_percent == 100


def test_too_few_compared_requests_hold_the_stage_past_its_duration() -> None:
    sim = shadowing(Sim(compared_spec()).stable())
    sim.comparison = AnalysisSignal(
        Health.PENDING, Reason.COMPARISON_PENDING, "3 requests compared, 50 needed"
    )
    for _ in range(30):
        sim.tick(10)
    assert sim.status.stage == Stage.SHADOWING and sim.status.mirror_percent == 100
    assert "waiting for the comparison to pass: 3 requests compared" in sim.status.message


def test_a_mismatch_rolls_back_at_once_with_the_fields_named() -> None:
    sim = shadowing(Sim(compared_spec()).stable())
    sim.comparison = AnalysisSignal(
        Health.FAILED, Reason.SHADOW_MISMATCH, "6 of 100 differ; most differing fields: body.total"
    )
    since = len(sim.events)
    sim.tick()
    s = sim.status
    assert s.stage == Stage.ROLLED_BACK and s.rollback_reason == Reason.SHADOW_MISMATCH
    assert (s.canary_weight, s.mirror_percent) == (0, 0)
    assert "body.total" in s.history[0].message
    (event,) = [e for e in sim.events[since:] if e.reason == Reason.SHADOW_MISMATCH]
    assert event.type == "Warning" and "body.total" in event.message


def test_a_passing_comparison_lets_the_shadow_stage_end() -> None:
    sim = shadowing(Sim(compared_spec()).stable())
    sim.comparison = AnalysisSignal(Health.HEALTHY, Reason.COMPARISON_PASSED, "ok")
    sim.run_until(lambda s: s.status.stage == Stage.PROGRESSING, seconds=10)
    assert Reason.SHADOW_PASSED in sim.reasons()


# ------------------------------------------------------------------ the verdict


def judge(counts: gate.Counts, **compare: Any) -> tuple[Any, Health]:
    spec = ShadowCompare.model_validate({**COMPARE, **compare})
    return gate.judge(spec, "abc", counts, "2026-12-01T00:00:00Z")


def test_too_few_compared_is_not_enough_data_whatever_the_rate() -> None:
    status, health = judge(gate.Counts(compared=49, mismatched=49, raw={"status": 49}))
    assert health is Health.PENDING and status.verdict == ComparisonVerdict.NOT_ENOUGH_DATA
    assert "49 requests compared, 50 needed" in status.message


def test_no_series_at_all_holds() -> None:
    status, health = judge(gate.Counts())
    assert health is Health.PENDING and status.compared == 0 and status.mismatch_rate is None


def test_a_mismatch_beyond_the_rate_fails_and_names_the_field() -> None:
    counts = gate.Counts(
        compared=1000,
        mismatched=50,
        raw={"body.total": 50, "header:x-request-id": 1000},
        noise={"header:x-request-id": 1000},
    )
    status, health = judge(counts)
    assert health is Health.FAILED and status.reason == Reason.SHADOW_MISMATCH
    assert status.mismatch_rate == 0.05
    assert [f.name for f in status.top_fields] == ["body.total"]
    assert status.top_fields[0].real
    assert "body.total" in status.message and "x-request-id" not in status.message


def test_a_rate_within_the_maximum_passes() -> None:
    status, health = judge(gate.Counts(compared=1000, mismatched=20, raw={"body.a": 20}))
    assert health is Health.HEALTHY and status.reason == Reason.COMPARISON_PASSED


def test_a_slow_shadow_fails_on_the_latency_budget() -> None:
    counts = gate.Counts(compared=100, mismatched=0, shadow_p95=0.3, baseline_p95=0.1)
    status, health = judge(counts, maxLatencyRatio=2)
    assert health is Health.FAILED and status.reason == Reason.SHADOW_TOO_SLOW
    assert "300 ms" in status.message
    _, health = judge(counts, maxLatencyRatio=4)
    assert health is Health.HEALTHY
    _, health = judge(counts)  # no budget
    assert health is Health.HEALTHY


def test_the_queries_select_the_route_and_revision() -> None:
    q = gate.queries("shop", "web", "abc123")
    for text in q.all():
        assert 'namespace="shop"' in text and 'route="web"' in text and 'revision="abc123"' in text
    assert 'side="candidate"' in q.shadow_p95 and 'side="baseline"' in q.baseline_p95


@given(
    compared=st.integers(min_value=1, max_value=10_000),
    counts=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 10_000)),
)
def test_a_field_differing_as_often_in_noise_never_counts(
    compared: int, counts: dict[str, int]
) -> None:
    counts = {k: min(v, compared) for k, v in counts.items()}
    top = gate.top_fields(gate.Counts(compared=compared, raw=counts, noise=counts), compared)
    assert top == ()


@pytest.mark.parametrize(
    "traffic",
    [
        {"provider": "istio", "istio": {"hosts": ["web.example"]}},
        {"provider": "nginx", "nginx": {"host": "web.example"}},
    ],
)
def test_every_mirroring_provider_sends_the_copies_to_the_comparator(traffic: dict) -> None:
    raw = compared_spec()
    raw["traffic"] = traffic
    sim = shadowing(Sim(raw).stable())
    routes = [o for o in rendered(sim).values() if o["kind"] in ("VirtualService", "Ingress")]
    text = str(routes)
    assert "web-comparator" in text and "web-shadow" not in text


def test_a_pass_from_before_the_stage_began_does_not_end_it() -> None:
    sim = shadowing(Sim(compared_spec()).stable())
    ready = sim.status.stage_ready_at
    assert ready is not None
    from shadowroute.api.models import parse_timestamp

    stale = parse_timestamp(ready)  # the same second: before the copies began
    sim.comparison = AnalysisSignal(Health.HEALTHY, Reason.COMPARISON_PASSED, "ok", stale)
    for _ in range(12):
        sim.tick(10)
    assert sim.status.stage == Stage.SHADOWING


def test_a_comparison_holding_past_the_duration_is_told_once_in_an_event() -> None:
    sim = shadowing(Sim(compared_spec()).stable())
    sim.comparison = AnalysisSignal(Health.PENDING, Reason.COMPARISON_PENDING, "3 of 50 needed")
    since = len(sim.events)
    for _ in range(12):
        sim.tick(10)
    held = [e for e in sim.events[since:] if e.reason == Reason.COMPARISON_PENDING]
    assert len(held) == 1 and held[0].type == "Warning" and "3 of 50 needed" in held[0].message
