"""Durations have bounds (issue 9, defect 4): declared once per field, enforced by the
CRD's CEL rule and by the models with the same verdict; a value stored before the
bounds existed is an InvalidSpec condition, never a crash; and any spec the models
accept is decided and rendered without an exception."""

from __future__ import annotations

import copy
import os
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from shadowroute import traffic
from shadowroute.api import DURATION_PATTERN, ShadowRouteSpec, parse_duration
from shadowroute.api.crd import build_crd
from shadowroute.api.duration import (
    DURATION_CEILING,
    DurationBounds,
    go_nanoseconds,
)
from shadowroute.names import Owner
from shadowroute.reconciler import reconcile
from shadowroute.render.workloads import deployments, services
from shadowroute.rollout.machine import template_dict

from .sim import Sim, spec_dict
from .spec_strategies import accepted, durations, raw_specs
from .test_machine_properties import act, actions
from .test_traffic_reconcile import NAME, NS, FakeKube

SCHEMA = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
GO_MAX_NS = (1 << 63) - 1


def duration_fields(node: dict[str, Any], path: str = "spec") -> list[tuple[str, dict]]:
    """Every duration field of the spec's schema, with its path."""
    out = []
    if node.get("pattern") == DURATION_PATTERN:
        out.append((path, node))
    for name, child in (node.get("properties") or {}).items():
        out += duration_fields(child, f"{path}.{name}")
    if "items" in node:
        out += duration_fields(node["items"], f"{path}[]")
    return out


FIELDS = duration_fields(SCHEMA["properties"]["spec"])
EXPECTED_BOUNDS = {
    "spec.strategy.shadow.duration": ("1s", "8760h"),
    "spec.strategy.shadow.compare.timeout": ("100ms", "5m"),
    "spec.strategy.canary.steps[].pause.duration": ("0s", "8760h"),
    "spec.strategy.blueGreen.previewDuration": ("0s", "8760h"),
    "spec.progressDeadline": ("1s", "8760h"),
    "spec.keepWarm": ("0s", "8760h"),
    "spec.rollback.cooldown": ("0s", "8760h"),
    "spec.traffic.stickiness.cookie.maxAge": ("1s", "8760h"),
    "spec.analysis.prometheus.timeout": ("100ms", "5m"),
    "spec.analysis.interval": ("1s", "8760h"),
    "spec.analysis.window": ("1s", "8760h"),
    "spec.analysis.unreachable.timeout": ("0s", "8760h"),
    "spec.analysis.notifications.cooldown": ("0s", "8760h"),
    "spec.analysis.notifications.holdAfter": ("0s", "8760h"),
    "spec.notifications.cooldown": ("0s", "8760h"),
    "spec.notifications.holdAfter": ("0s", "8760h"),
    "spec.checks[].timeout": ("1s", "24h"),
    "spec.checks[].http.expect.maxLatency": ("1ms", "5m"),
}


def test_every_duration_field_has_the_bounds_the_reference_documents() -> None:
    found = {}
    for path, node in FIELDS:
        rules = [DurationBounds.from_rule(r["rule"]) for r in node["x-kubernetes-validations"]]
        (bounds,) = [b for b in rules if b is not None]
        found[path] = (bounds.minimum, bounds.maximum)
    assert found == EXPECTED_BOUNDS


def test_the_cel_rule_has_no_backslash() -> None:
    """CEL string literals know no ``\\.`` escape: the API server would refuse the CRD."""
    for _, node in FIELDS:
        for rule in node["x-kubernetes-validations"]:
            assert "\\" not in rule["rule"]


# --------------------------------------------------------------------------- Go's arithmetic


@given(durations())
def test_go_nanoseconds_is_the_exact_value_truncated(text: str) -> None:
    """Go truncates each term's fraction to the nanosecond (through a float64): never
    more than the exact value, and less by under a nanosecond per term."""
    exact = sum(
        Decimal(n) * {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}[u]
        for n, u in re.findall(r"([0-9.]+)(ms|s|m|h)", text)
    )
    terms = len(re.findall(r"(ms|s|m|h)", text))
    try:
        ns = go_nanoseconds(text)
    except OverflowError:
        assert exact > GO_MAX_NS - terms
        return
    assert exact - terms <= ns <= exact + 1  # +1: a float64 rounding up, never more


@pytest.mark.parametrize(
    "text,ns",
    [
        ("0s", 0),
        ("1.5h", 5_400_000_000_000),
        ("0.3ms", 300_000),
        ("8760.000000000001h", 31_536_000_000_000_003),  # 3.6 ns, truncated
        ("0.0000000009s", 0),
        ("2562047h47m16.854775807s", GO_MAX_NS),
    ],
)
def test_go_nanoseconds_examples(text: str, ns: int) -> None:
    """Values checked against Go 1.26's time.ParseDuration."""
    assert go_nanoseconds(text) == ns


@pytest.mark.parametrize("text", ["2562047h47m16.854775808s", "99999999h", "9" * 31 + "s"])
def test_what_go_cannot_hold_overflows_and_parse_duration_refuses_it(text: str) -> None:
    with pytest.raises(OverflowError):
        go_nanoseconds(text)
    with pytest.raises(ValueError, match="longer than a Go duration"):
        parse_duration(text)


@given(durations())
def test_parse_duration_never_gives_what_a_timer_cannot_add(text: str) -> None:
    """Whatever parses can be added to any moment of this millennium without overflow."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert datetime(2999, 12, 31, tzinfo=UTC) + timedelta(seconds=seconds) > datetime.now(UTC)


# --------------------------------------------------------------------------- one rule, two forms


FITS = re.search(r"self\.matches\('(\^\(\[0-9\]\{1,5\}[^']*)'\)", DurationBounds("1s").cel_rule)


def cel_verdict(bounds: DurationBounds, text: str) -> bool:
    """What the CEL rule concludes, evaluated by hand: its guard regex, then Go's value."""
    assert FITS is not None
    if not re.fullmatch(DURATION_PATTERN.strip("^$"), text):
        return True  # left to the pattern
    if not re.fullmatch(FITS.group(1).strip("^$"), text):
        return False
    ns = go_nanoseconds(text)  # the guard means this never overflows
    return go_nanoseconds(bounds.minimum) <= ns <= go_nanoseconds(bounds.maximum)


@pytest.mark.parametrize(
    "bounds", list(dict.fromkeys(DurationBounds(*b) for b in EXPECTED_BOUNDS.values())), ids=str
)
@given(text=durations())
def test_the_python_check_agrees_with_the_cel_rule(bounds: DurationBounds, text: str) -> None:
    try:
        bounds.check(text)
        python = True
    except ValueError as exc:
        assert str(exc) == bounds.message
        python = False
    assert python == cel_verdict(bounds, text)


def test_bounds_above_the_ceiling_are_refused() -> None:
    with pytest.raises(ValueError):
        DurationBounds("0s", "8761h")
    with pytest.raises(ValueError):
        DurationBounds("2m", "1m")
    assert DurationBounds("0s").maximum == DURATION_CEILING


# ---------------------------------------------------------------- stored before the bounds


STORED_BEFORE_THE_BOUNDS = {
    "progressDeadline": {"progressDeadline": "99999999h"},
    "keepWarm": {"keepWarm": "99999999999h"},
    "interval-zero": {"analysis": {"interval": "0s"}},
    "interval-huge": {"analysis": {"interval": "99999999999h"}},
    "prometheus-timeout-zero": {
        "analysis": {"prometheus": {"address": "http://127.0.0.1:9", "timeout": "0s"}}
    },
    "pause": {"steps": [{"weight": 50, "pause": {"duration": "99999999h"}}]},
}


@pytest.mark.parametrize(
    "extra", STORED_BEFORE_THE_BOUNDS.values(), ids=list(STORED_BEFORE_THE_BOUNDS)
)
async def test_a_stored_spec_out_of_bounds_is_invalid_spec_not_a_crash(extra: dict) -> None:
    """An object stored before the bounds existed (etcd keeps it) gets Degraded
    InvalidSpec naming the field, an Event, and no child is written."""
    kube = FakeKube(spec_dict(**copy.deepcopy(extra)))
    outcome = await reconcile(kube, NS, NAME)
    degraded = kube.degraded()
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    field = next(iter(extra)) if "steps" not in extra else "pause"
    assert field in degraded["message"] and "must be a duration" in degraded["message"]
    assert [c[2] for c in kube.writes("event")] == ["InvalidSpec"]
    assert not kube.writes("apply")
    assert outcome.requeue_after is None
    kube.calls.clear()
    await reconcile(kube, NS, NAME)
    assert kube.calls == [], "the same invalid spec again: no write at all"


# --------------------------------------------------------------------------- any accepted spec


PROPS = settings(
    max_examples=int(os.environ.get("SHADOWROUTE_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
OWNER = Owner("shadowroute.io/v1alpha1", "ShadowRoute", "web", "shop", "uid-1")
HUGE = st.tuples(st.just("tick"), st.sampled_from([86_400, 31_536_000]))


@PROPS
@given(raw=raw_specs(), script=st.lists(st.one_of(actions, HUGE), max_size=30))
def test_any_accepted_spec_is_decided_and_rendered_without_an_exception(
    raw: dict[str, Any], script: list[Any]
) -> None:
    """The models decide what is accepted (the API server holds the same rules): any
    spec they accept goes through every stage of the pure core, timers included, over
    random histories and clock jumps of up to a year, without an exception."""
    spec = accepted(raw)
    if spec is None:
        with pytest.raises(ValidationError):
            ShadowRouteSpec.model_validate(raw)
        return
    sim = Sim(raw)
    sim.reconcile()
    for action in [("image", "web:3"), *script]:
        dt = act(sim, action)
        sim.advance(dt)
        decision = sim.reconcile()
        status = decision.status
        templates = {sim.desired: template_dict(sim.spec)}
        deployments(OWNER, sim.spec, status, sim.desired, templates)
        services(OWNER, sim.spec, status)
        traffic.render_routes(OWNER, sim.spec, status)
        traffic.note_approximation(sim.spec, status.model_copy(deep=True))
        assert decision.requeue_after is None or decision.requeue_after > 0
