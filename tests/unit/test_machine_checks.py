"""The state machine and the acceptance checks: a stage waits for its checks, a check
that fails past its retries rolls back with CheckFailed, after promotion it undoes the
promotion, and everything it needs to resume is in status.checks."""

from __future__ import annotations

from typing import Any

from shadowroute.api import ShadowRouteStatus
from shadowroute.rollout.observe import CheckResult

from .sim import Sim, spec_dict


def http(name: str, when: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "when": when, "timeout": "10s", "http": {"path": "/healthz"}, **more}


def sim_with(checks: list[dict[str, Any]], **spec: Any) -> Sim:
    spec.setdefault("steps", [{"weight": 20}, {"weight": 60}])
    return Sim(spec_dict(checks=checks, keepWarm="1m", **spec)).stable()


def record(sim: Sim, name: str, step: int | None = None) -> dict[str, Any]:
    revision = sim.status.canary_revision or sim.status.rolled_back_revision
    found = [
        c.to_k8s()
        for c in sim.status.checks
        if c.name == name
        and c.step == step
        and c.revision in (revision, sim.status.stable_revision)
    ]
    assert len(found) == 1, sim.status.checks
    return found[0]


def answer(sim: Sim, name: str, passed: bool, message: str = "", step: int | None = None) -> None:
    """The shell saw the running attempt of `name` end."""
    r = record(sim, name, step)
    sim.check_results = (
        CheckResult(name, r["hook"], r["revision"], r["attempts"], passed, message or "m", step),
    )


def test_before_traffic_holds_the_canary_at_zero_until_the_check_passes() -> None:
    sim = sim_with([http("smoke", "BeforeTraffic")])
    sim.set_image("web:2")
    sim.run_until(lambda s: bool(s.status.checks))
    sim.tick()
    assert sim.status.canary_weight == 0 and sim.status.stage == "Progressing"
    r = record(sim, "smoke")
    assert (r["state"], r["attempts"]) == ("Running", 1)
    assert "check smoke (BeforeTraffic) running: attempt 1 of 1" in sim.status.message
    assert "CheckRunning" in sim.reasons()
    answer(sim, "smoke", True, "GET '/healthz': status 200 in 0.01s")
    sim.tick()
    assert record(sim, "smoke")["state"] == "Passed"
    assert sim.status.canary_weight == 20
    assert "CheckPassed" in sim.reasons()


def test_a_failure_is_retried_after_a_delay_then_rolls_back_with_check_failed() -> None:
    sim = sim_with([http("smoke", "BeforeTraffic", retries=1)])
    sim.set_image("web:2")
    sim.run_until(lambda s: bool(s.status.checks))
    answer(sim, "smoke", False, "GET '/healthz': status 503 is not 2xx")
    sim.tick()
    r = record(sim, "smoke")
    assert (r["state"], r["attempts"]) == ("Pending", 1)
    assert "CheckRetrying" in sim.reasons()
    assert "retrying" in sim.status.message
    sim.run_until(lambda s: record(s, "smoke")["state"] == "Running")
    assert record(sim, "smoke")["attempts"] == 2
    answer(sim, "smoke", False, "GET '/healthz': status 503 is not 2xx")
    sim.tick()
    s = sim.status
    assert s.stage == "RolledBack" and s.rollback_reason == "CheckFailed"
    assert s.canary_weight == 0 and s.canary_revision == ""
    assert "check smoke (BeforeTraffic) failed: GET '/healthz': status 503" in s.history[0].message
    assert record(sim, "smoke")["state"] == "Failed"


def test_an_attempt_that_times_out_counts_as_failed() -> None:
    sim = sim_with([http("smoke", "BeforeTraffic")])
    sim.set_image("web:2")
    sim.run_until(lambda s: bool(s.status.checks))
    sim.run_until(lambda s: s.status.stage == "RolledBack", seconds=2)
    assert "timed out after 10s" in sim.status.history[0].message
    assert record(sim, "smoke")["state"] == "Failed"


def test_each_step_checks_run_once_per_step_before_it_advances() -> None:
    sim = sim_with([http("step", "EachStep")])
    sim.set_image("web:2")
    sim.run_until(lambda s: bool(s.status.checks))
    assert sim.status.canary_weight == 20 and record(sim, "step", 0)["state"] == "Running"
    answer(sim, "step", True, step=0)
    sim.run_until(lambda s: any(c.step == 1 for c in s.status.checks))
    assert sim.status.canary_weight == 60
    answer(sim, "step", True, step=1)
    sim.run_until(lambda s: s.status.stage == "Succeeded")
    assert [(c.step, c.state) for c in sim.status.checks] == [(0, "Passed"), (1, "Passed")]


def test_after_promotion_failure_puts_the_warm_version_back() -> None:
    sim = sim_with([http("after", "AfterPromotion")])
    old = sim.status.stable_revision
    sim.set_image("web:2")
    sim.run_until(lambda s: s.status.stage == "Succeeded")
    new = sim.status.stable_revision
    assert record(sim, "after")["state"] == "Running"
    answer(sim, "after", False, "GET '/healthz': status 503 is not 2xx")
    sim.tick()
    s = sim.status
    assert s.stage == "RolledBack" and s.rollback_reason == "CheckFailed"
    assert (s.stable_revision, s.rolled_back_revision) == (old, new)
    assert s.canary_weight == 0
    assert "after promotion, check after (AfterPromotion) failed" in s.history[0].message


def test_the_warm_version_stays_until_after_promotion_checks_pass() -> None:
    sim = sim_with([http("after", "AfterPromotion", timeout="1h")])
    sim.set_image("web:2")
    sim.run_until(lambda s: s.status.stage == "Succeeded")
    sim.tick(120)  # past keepWarm
    assert sim.status.stage == "Succeeded" and "until the checks pass" in sim.status.message
    answer(sim, "after", True)
    sim.run_until(lambda s: s.status.stage == "Stable")


def test_a_restart_reruns_no_check_that_passed() -> None:
    sim = sim_with([http("a", "BeforeTraffic"), http("b", "BeforeTraffic", timeout="1h")])
    sim.set_image("web:2")
    sim.run_until(lambda s: bool(s.status.checks))
    answer(sim, "a", True)
    sim.run_until(lambda s: len(s.status.checks) == 2)
    # A new operator reads the status back and nothing else.
    sim.status = ShadowRouteStatus.from_body(sim.status.to_k8s())
    sim.tick()
    assert record(sim, "a")["attempts"] == 1 and record(sim, "a")["state"] == "Passed"
    assert record(sim, "b")["state"] == "Running"


def test_the_retry_gate_reruns_the_checks_of_the_rolled_back_revision() -> None:
    sim = sim_with([http("smoke", "BeforeTraffic")])
    sim.set_image("web:2")
    sim.run_until(lambda s: bool(s.status.checks))
    answer(sim, "smoke", False)
    sim.run_until(lambda s: s.status.stage == "RolledBack")
    assert record(sim, "smoke")["state"] == "Failed"
    sim.gate("retry")
    sim.run_until(lambda s: s.status.stage == "Progressing" and bool(s.status.checks))
    assert (record(sim, "smoke")["state"], record(sim, "smoke")["attempts"]) == ("Running", 1)


def test_no_checks_no_records_and_nothing_changes() -> None:
    sim = sim_with([])
    sim.set_image("web:2")
    sim.run_until(lambda s: s.status.stage == "Succeeded")
    assert sim.status.checks == []


def test_a_spec_check_becomes_the_check_the_core_runs() -> None:
    from shadowroute.acceptance.spec import SecretValue, from_model
    from shadowroute.api.models import AcceptanceCheck

    model = AcceptanceCheck.model_validate(
        {
            "name": "smoke",
            "when": "EachStep",
            "timeout": "1m30s",
            "retries": 2,
            "http": {
                "method": "post",
                "path": "/orders",
                "port": 8080,
                "body": '{"item": "book"}',
                "headers": [
                    {"name": "authorization", "secretKeyRef": {"name": "tok", "key": "h"}},
                    {"name": "x-env", "value": "ci"},
                ],
                "expect": {
                    "statusCodes": [200, 201],
                    "bodyContains": "ok",
                    "json": [{"path": 'body["price"]', "value": 12}],
                    "maxLatency": "250ms",
                },
            },
        }
    )
    c = from_model(model)
    assert (c.name, str(c.hook), c.timeout_seconds, c.max_attempts) == ("smoke", "EachStep", 90, 3)
    h = c.action
    assert (h.method, h.path, h.port, h.body) == ("POST", "/orders", 8080, '{"item": "book"}')
    assert h.headers == {"authorization": SecretValue("tok", "h"), "x-env": "ci"}
    assert h.expect.status_codes == {200, 201} and h.expect.body_contains == "ok"
    assert dict(h.expect.json) == {"body.price": 12} and h.expect.max_latency_seconds == 0.25


def test_a_check_failure_is_notified_like_any_rollback() -> None:
    from shadowroute.api.models import NotificationEvent
    from shadowroute.notify import transitions

    sim = sim_with([http("smoke", "BeforeTraffic")])
    sim.set_image("web:2")
    sim.run_until(lambda s: bool(s.status.checks))
    before = sim.status.model_copy(deep=True)
    answer(sim, "smoke", False, "GET '/healthz': status 503 is not 2xx")
    sim.tick()
    failed, notice = transitions(before, sim.status, "ns", "web", 60.0)
    assert (failed.kind, failed.check) == (NotificationEvent.CHECK_FAILED, "smoke")
    assert notice.kind is NotificationEvent.ROLLED_BACK and notice.reason == "CheckFailed"
    assert "check smoke (BeforeTraffic) failed: GET '/healthz': status 503" in notice.message


# --------------------------------------------------------------------------- from the review


def test_a_failed_check_rolls_back_while_the_analysis_holds_the_step() -> None:
    from shadowroute.rollout.observe import AnalysisSignal, Health

    sim = sim_with([http("step", "EachStep")])
    sim.set_image("web:2")
    sim.run_until(lambda s: bool(s.status.checks))
    sim.analysis = AnalysisSignal(Health.PENDING, "NoData", "no data yet")
    answer(sim, "step", False, "GET '/healthz': status 500 is not 2xx", step=0)
    sim.tick()
    assert sim.status.stage == "RolledBack" and sim.status.rollback_reason == "CheckFailed"


def test_a_failed_check_rolls_back_while_paused() -> None:
    sim = sim_with([http("step", "EachStep")])
    sim.set_image("web:2")
    sim.run_until(lambda s: bool(s.status.checks))
    sim.gate("pause")
    sim.tick()
    answer(sim, "step", False, step=0)
    sim.tick()
    assert sim.status.stage == "RolledBack" and sim.status.rollback_reason == "CheckFailed"


def test_an_abort_in_the_warm_period_starts_no_new_attempt() -> None:
    sim = sim_with([http("after", "AfterPromotion", retries=3)])
    sim.set_image("web:2")
    sim.run_until(lambda s: s.status.stage == "Succeeded")
    answer(sim, "after", False)
    sim.tick()
    assert record(sim, "after")["state"] == "Pending"
    sim.advance(10)  # the retry is due
    sim.gate("abort")
    sim.reconcile()
    s = sim.status
    assert s.stage == "RolledBack" and s.rollback_reason == "Aborted"
    assert s.checks == []  # the unfinished attempt is dropped: the shell sends nothing


def test_the_promote_gate_skips_steps_but_not_the_checks_before_promotion() -> None:
    sim = sim_with([http("last", "BeforePromotion")])
    sim.set_image("web:2")
    sim.tick()
    sim.gate("promote")
    sim.run_until(lambda s: bool(s.status.checks))
    assert sim.status.stage == "Promoting" and sim.status.canary_weight < 100
    answer(sim, "last", True)
    sim.run_until(lambda s: s.status.stage == "Succeeded")


def test_each_step_runs_once_at_a_blue_green_preview() -> None:
    sim = Sim(
        spec_dict(blue_green={"previewDuration": "5s"}, checks=[http("step", "EachStep")])
    ).stable()
    sim.set_image("web:2")
    sim.run_until(lambda s: bool(s.status.checks))
    assert record(sim, "step", 0)["state"] == "Running" and sim.status.canary_weight == 0
    answer(sim, "step", True, step=0)
    sim.run_until(lambda s: s.status.stage == "Succeeded")


def test_before_traffic_runs_before_the_mirror_of_a_shadow_stage() -> None:
    sim = Sim(
        spec_dict(
            shadow={"duration": "5s", "mirrorPercent": 100},
            checks=[http("smoke", "BeforeTraffic")],
        )
    ).stable()
    sim.set_image("web:2")
    sim.run_until(lambda s: bool(s.status.checks))
    assert sim.status.stage == "Shadowing" and sim.status.mirror_percent == 0
    answer(sim, "smoke", True)
    sim.tick()
    assert sim.status.mirror_percent == 100
    sim.run_until(lambda s: s.status.stage == "Progressing")
    assert len(sim.status.checks) == 1  # passed once for the revision: not again


def test_two_spellings_of_one_json_path_are_refused_by_the_models() -> None:
    import pytest
    from pydantic import ValidationError
    from shadowroute.api import ShadowRouteSpec

    check = http("smoke", "BeforeTraffic")
    check["http"]["expect"] = {"json": [{"path": "body.a", "value": 1},
                                        {"path": 'body["a"]', "value": 1}]}  # fmt: skip
    with pytest.raises(ValidationError, match="json lists each path once"):
        ShadowRouteSpec.model_validate(spec_dict(checks=[check]))
    check["http"]["expect"] = {"json": [{"path": 'body["\\q"]', "value": 1}]}
    with pytest.raises(ValidationError):
        ShadowRouteSpec.model_validate(spec_dict(checks=[check]))
