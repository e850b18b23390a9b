"""The pydantic models: defaults, the rules the CRD also enforces, tolerant status
reading, and round trips to exactly what the API server stores."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from shadowroute.api import (
    HISTORY_LIMIT,
    CanaryStrategy,
    ConditionStatus,
    HistoryEntry,
    MetricResult,
    Outcome,
    Phase,
    ServicePort,
    ShadowRoute,
    ShadowRouteSpec,
    ShadowRouteStatus,
    Stage,
    TrafficProvider,
    Verdict,
    format_timestamp,
    parse_timestamp,
)

NOW = "2026-11-25T05:00:00Z"
LATER = "2026-11-25T05:01:00Z"


def minimal_spec() -> dict[str, Any]:
    return {
        "template": {"spec": {"containers": [{"name": "app", "image": "web:1"}]}},
        "service": {"ports": [{"port": 80}]},
        "strategy": {"canary": {"steps": [{"weight": 50}]}},
    }


class KopfLikeMapping(Mapping[str, Any]):
    """kopf hands bodies over as read-only Mapping views, not dicts."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        return KopfLikeMapping(value) if isinstance(value, dict) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


# --------------------------------------------------------------------------- spec


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = ShadowRouteSpec.model_validate(minimal_spec())
    assert spec.replicas == 1
    assert spec.progress_deadline == "10m"
    assert spec.keep_warm == "5m"
    assert spec.rollback.cooldown == "5m"
    assert spec.paused is False
    assert spec.traffic.provider is TrafficProvider.NONE
    assert spec.analysis is None
    assert spec.strategy.shadow is None
    port = spec.service.ports[0]
    assert (port.target_port, port.protocol, port.name) == (80, "TCP", None)


def test_optional_sections_get_their_own_defaults() -> None:
    raw = minimal_spec()
    raw["strategy"]["shadow"] = {"duration": "5m"}
    raw["traffic"] = {"provider": "istio"}  # provider none cannot mirror
    raw["analysis"] = {"metrics": [{"name": "errors", "query": "sum(x)", "max": 1}]}
    spec = ShadowRouteSpec.model_validate(raw)
    assert spec.strategy.shadow is not None and spec.strategy.shadow.mirror_percent == 100
    assert spec.analysis is not None
    assert (spec.analysis.interval, spec.analysis.failure_limit) == ("30s", 2)


def test_to_k8s_is_camel_case_and_round_trips() -> None:
    raw = minimal_spec()
    raw["strategy"]["shadow"] = {"duration": "1h30m", "mirrorPercent": 25}
    raw["traffic"] = {"provider": "istio"}  # provider none cannot mirror
    raw["service"]["ports"][0].update(targetPort="http", appProtocol="h2c")
    spec = ShadowRouteSpec.model_validate(raw)
    wire = spec.to_k8s()
    assert wire["progressDeadline"] == "10m"
    assert wire["strategy"]["shadow"] == {"duration": "1h30m", "mirrorPercent": 25}
    assert wire["service"]["ports"][0]["targetPort"] == "http"
    assert "analysis" not in wire  # unset optional sections are left out, not null
    assert ShadowRouteSpec.model_validate(wire) == spec


def test_fields_can_be_given_by_python_name() -> None:
    port = ServicePort(port=443, target_port=8443, app_protocol="https")
    assert port.to_k8s() == {
        "port": 443,
        "targetPort": 8443,
        "protocol": "TCP",
        "appProtocol": "https",
    }


def test_spec_is_immutable() -> None:
    spec = ShadowRouteSpec.model_validate(minimal_spec())
    with pytest.raises(ValidationError):
        spec.replicas = 3  # type: ignore[misc]


def test_pod_template_keeps_unknown_fields() -> None:
    raw = minimal_spec()
    raw["template"] = {
        "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
        "spec": {
            "serviceAccountName": "web",
            "containers": [{"name": "app", "image": "web:1", "env": [{"name": "X", "value": "1"}]}],
        },
    }
    spec = ShadowRouteSpec.model_validate(raw)
    assert spec.to_k8s()["template"] == raw["template"]
    assert spec.template.containers[0]["env"] == [{"name": "X", "value": "1"}]


def test_target_port_accepts_a_port_name_but_not_a_bool_or_digits() -> None:
    assert ServicePort(port=80, target_port="http").target_port == "http"
    for bad in (True, "8080", "http--alt", "a-very-long-port-name", 0, 65536):
        with pytest.raises(ValidationError):
            ServicePort(port=80, target_port=bad)


def test_pause_without_duration_waits_for_promotion() -> None:
    steps = CanaryStrategy.model_validate(
        {
            "steps": [
                {"weight": 10, "pause": {}},
                {"weight": 50, "pause": {"duration": "1m"}},
                {"weight": 90},
            ]
        }
    ).steps
    assert [step.waits_for_promotion for step in steps] == [True, False, False]


@given(st.lists(st.integers(1, 100), min_size=1, max_size=20))
def test_canary_steps_are_valid_exactly_when_strictly_increasing(weights: list[int]) -> None:
    strictly_increasing = all(a < b for a, b in itertools.pairwise(weights))
    raw = {"steps": [{"weight": w} for w in weights]}
    if strictly_increasing:
        assert [s.weight for s in CanaryStrategy.model_validate(raw).steps] == weights
    else:
        with pytest.raises(ValidationError, match="strictly increasing"):
            CanaryStrategy.model_validate(raw)


def test_spec_from_body_reads_a_kopf_mapping() -> None:
    body = {"metadata": {"name": "web"}, "spec": minimal_spec(), "status": {}}
    spec = ShadowRoute.spec_from_body(KopfLikeMapping(body))
    assert spec == ShadowRouteSpec.model_validate(minimal_spec())


def test_spec_from_body_rejects_a_bad_spec() -> None:
    raw = minimal_spec()
    raw["strategy"] = {}
    with pytest.raises(ValidationError, match="exactly one of"):
        ShadowRoute.spec_from_body({"spec": raw})


def test_from_body_parses_the_whole_object_and_tolerates_status_extras() -> None:
    body = {
        "apiVersion": "shadowroute.io/v1alpha1",
        "kind": "ShadowRoute",
        "metadata": {"name": "web", "namespace": "shop", "generation": 3},
        "spec": minimal_spec(),
        "status": {"phase": "Stable", "kopf": {"progress": {}}, "fromTheFuture": 1},
    }
    route = ShadowRoute.from_body(KopfLikeMapping(body))
    assert route.metadata["namespace"] == "shop"
    assert route.status.phase is Phase.STABLE
    assert "kopf" not in route.to_k8s()["status"]


def _strings(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from ((f"{key}.{k}", v) for k, v in _strings(item))
            if not isinstance(item, Mapping | list):
                yield key, item
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_status_wire_form_has_no_empty_strings_and_reads_back_the_same() -> None:
    """`kubectl describe` must not show `Abort: ""` (issue 14, item 9)."""
    status = ShadowRouteStatus(stable_revision="aaa", message="")
    status.gates.pause = "t1"
    status.set_condition("Ready", ConditionStatus.TRUE, "Available", "", NOW)
    status.record(HistoryEntry(revision="aaa", outcome=Outcome.PROMOTED, at=NOW))
    wire = status.to_k8s()
    assert [k for k, v in _strings(wire) if v == ""] == []
    assert wire["gates"] == {"pause": "t1"} and "canaryRevision" not in wire
    assert "gates" not in ShadowRouteStatus().to_k8s()  # nothing set: no empty map either
    assert ShadowRouteStatus.from_body(wire) == status


@pytest.mark.parametrize("name", ["a" * 56, "1web", "web.shop", "Web", "web-"])
def test_resource_name_must_fit_the_children_names(name: str) -> None:
    with pytest.raises(ValidationError, match=r"metadata\.name"):
        ShadowRoute.model_validate({"metadata": {"name": name}, "spec": minimal_spec()})


def test_resource_name_of_55_characters_is_fine() -> None:
    route = ShadowRoute.model_validate({"metadata": {"name": "a" * 55}, "spec": minimal_spec()})
    assert route.metadata["name"] == "a" * 55


# --------------------------------------------------------------------------- status


def test_empty_status_reads_as_initializing() -> None:
    for stored in (None, {}):
        status = ShadowRouteStatus.from_body(stored)
        assert status.phase is Phase.INITIALIZING
        assert (status.canary_revision, status.canary_weight, status.current_step) == ("", 0, 0)
        assert status.conditions == [] and status.history == []


def test_status_ignores_unknown_keys_everywhere() -> None:
    status = ShadowRouteStatus.from_body(
        {
            "phase": "Progressing",
            "newTopLevel": True,
            "gates": {"promote": "t1", "newGate": "x"},
            "conditions": [{"type": "Ready", "status": "True", "severity": "Info"}],
        }
    )
    assert status.gates.promote == "t1"
    assert status.condition("Ready") is not None
    assert "newTopLevel" not in status.to_k8s()


def full_status() -> ShadowRouteStatus:
    status = ShadowRouteStatus(
        observed_generation=2,
        phase=Phase.SHADOWING,
        stable_revision="aaa",
        canary_revision="bbb",
        mirror_percent=50,
        stage_started_at=NOW,
        rollout_started_at=NOW,
        message="shadowing bbb",
    )
    status.set_condition("Ready", ConditionStatus.TRUE, "Available", "ok", NOW, 2)
    status.analysis.metrics = [
        MetricResult(name="errors", value=0.5, verdict=Verdict.PASS, query="q", checked_at=NOW)
    ]
    status.record(HistoryEntry(revision="zzz", outcome=Outcome.ROLLED_BACK, at=NOW))
    return status


def test_status_round_trips_through_its_wire_form() -> None:
    status = full_status()
    wire = status.to_k8s()
    assert wire["stageStartedAt"] == NOW
    assert wire["conditions"][0]["lastTransitionTime"] == NOW
    assert wire["history"][0]["outcome"] == "RolledBack"
    assert "promotedAt" not in wire  # unset timestamps are left out, not null
    json.dumps(wire, allow_nan=False)
    assert ShadowRouteStatus.from_body(wire) == status
    assert ShadowRouteStatus.from_body(wire).to_k8s() == wire


def test_rollout_bookkeeping_fields_persist() -> None:
    status = ShadowRouteStatus()
    status.stage = "Shadowing"  # type: ignore[assignment]
    status.user_paused = True
    status.waiting_for_promotion = True
    status.stage_ready_at = NOW
    status.primary_revision = "abc"
    status.rollback_reason = "AnalysisFailed"
    status.analysis.consecutive_failures = 2
    wire = status.to_k8s()
    assert wire["stage"] == "Shadowing" and wire["analysis"]["consecutiveFailures"] == 2
    assert "analysisFailures" not in wire  # one counter, not two
    again = ShadowRouteStatus.from_body(wire)
    assert again == status and again.stage is Stage.SHADOWING
    assert again.analysis.consecutive_failures == 2


def test_status_assignments_are_validated() -> None:
    status = ShadowRouteStatus()
    with pytest.raises(ValidationError):
        status.canary_weight = 101
    with pytest.raises(ValidationError):
        status.stage_started_at = "yesterday"
    status.phase = "Paused"  # type: ignore[assignment]
    assert status.phase is Phase.PAUSED


def test_set_condition_keeps_transition_time_while_status_holds() -> None:
    status = ShadowRouteStatus()
    status.set_condition("Ready", ConditionStatus.FALSE, "Starting", "primary starting", NOW)
    status.set_condition("Degraded", ConditionStatus.FALSE, "AsExpected", "", NOW)
    same = status.set_condition("Ready", ConditionStatus.FALSE, "Waiting", "still", LATER, 4)
    assert same.last_transition_time == NOW and same.reason == "Waiting"
    assert same.observed_generation == 4
    flipped = status.set_condition("Ready", ConditionStatus.TRUE, "Available", "up", LATER)
    assert flipped.last_transition_time == LATER
    assert [c.type for c in status.conditions] == ["Ready", "Degraded"]  # order kept


def test_condition_reason_must_be_camel_case() -> None:
    status = ShadowRouteStatus()
    with pytest.raises(ValidationError):
        status.set_condition("Ready", ConditionStatus.TRUE, "not camel case", "", NOW)


def test_history_keeps_only_the_latest_entries() -> None:
    status = ShadowRouteStatus()
    for i in range(HISTORY_LIMIT + 5):
        status.record(HistoryEntry(revision=f"r{i}", outcome=Outcome.PROMOTED, at=NOW))
    assert len(status.history) == HISTORY_LIMIT
    assert status.history[0].revision == f"r{HISTORY_LIMIT + 4}"  # newest first
    assert status.history[-1].revision == "r5"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_metric_values_are_stored_as_absent(value: float) -> None:
    result = MetricResult(name="errors", value=value, verdict=Verdict.INCONCLUSIVE)
    assert result.value is None
    assert "value" not in result.to_k8s()


# --------------------------------------------------------------------------- timestamps


def test_timestamps_format_like_the_api_server() -> None:
    moment = datetime(2026, 11, 25, 6, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(moment) == NOW
    assert parse_timestamp(NOW) == datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
    assert parse_timestamp("2026-11-25T06:00:00.5+01:00") == datetime(
        2026, 11, 25, 5, 0, 0, 500000, tzinfo=UTC
    )


def test_naive_datetimes_and_malformed_timestamps_are_refused() -> None:
    with pytest.raises(ValueError):
        format_timestamp(datetime(2026, 11, 25, 5, 0))
    for bad in ("2026-11-25", "2026-11-25 05:00:00Z", "2026-11-25T05:00:00", "now"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


@given(st.datetimes(timezones=st.just(UTC)))
def test_timestamps_round_trip_to_the_second(moment: datetime) -> None:
    text = format_timestamp(moment)
    assert parse_timestamp(text) == moment.replace(microsecond=0)
    assert format_timestamp(parse_timestamp(text)) == text
