"""`analysis.evaluate` in the loop with the pure state machine: a scripted Prometheus
client answers, the fake cluster of tests/unit/sim.py rolls out, and every reconcile is
evaluate -> decide, as in the reconciler (minus the API server)."""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any

import pytest
from shadowroute import analysis
from shadowroute.analysis import secrets
from shadowroute.analysis.judge import Answer, Sample
from shadowroute.analysis.prometheus import Client, Endpoint, InvalidQuery, Unavailable
from shadowroute.analysis.scope import run_time
from shadowroute.api.models import ShadowRouteStatus, Verdict, parse_timestamp
from shadowroute.api_errors import ApiError
from shadowroute.rollout.observe import Health

from .sim import Sim, spec_dict

STEPS = [{"weight": 10, "pause": {"duration": "20s"}}, {"weight": 50}]


class Scripted(Client):
    """Answers by the kind of query: error rate, latency or request count."""

    def __init__(self) -> None:
        super().__init__()
        self.error_rate: float | None = 0.01
        self.latency: float | None = 0.1
        self.requests: float | None = 500.0
        self.down: str = ""
        self.asked: list[tuple[str, dt.datetime]] = []
        self.endpoints: list[Endpoint] = []

    async def query(self, endpoint: Endpoint, promql: str, at: dt.datetime) -> tuple[Sample, ...]:
        self.asked.append((promql, at))
        self.endpoints.append(endpoint)
        if self.down:
            raise Unavailable(self.down, "ConnectionError")
        if "bad(" in promql:
            raise InvalidQuery("bad_data: unknown function bad")
        if promql.startswith("sum(increase("):
            value = self.requests
        elif promql.startswith("histogram_quantile"):
            value = self.latency
        else:
            value = self.error_rate
        return () if value is None else (Sample((), value),)


def analysis_spec(**extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "prometheus": {"address": "http://prometheus.test:9090"},
        "interval": "10s",
        "failureLimit": 1,
        "window": "30s",
        "metrics": [
            {"name": "errors", "preset": "error-rate", "max": 0.05, "minRequests": 20},
            {"name": "p95", "preset": "latency-p95", "max": 0.5},
        ],
    }
    spec.update(extra)
    return spec


class Loop:
    """The reconciler's order: evaluate, then decide on the signal and the new status."""

    def __init__(self, sim: Sim, client: Scripted, kube: Any = None) -> None:
        self.sim, self.client, self.kube = sim, client, kube
        self.secrets = secrets.Secrets()  # the operator's: its cache lives as long as it
        self.evaluations: list[analysis.Evaluation] = []

    async def tick(self, seconds: float = 1) -> analysis.Evaluation:
        self.sim.advance(seconds)
        return await self.reconcile()

    async def reconcile(self) -> analysis.Evaluation:
        s = self.sim
        ev = await analysis.evaluate(
            s.spec,
            s.status,
            "shop",
            "web",
            s.now,
            kube=self.kube,
            client=self.client,
            secrets=self.secrets,
        )
        self.evaluations.append(ev)
        s.analysis = ev.signal
        s.status = s.status.model_copy(update={"analysis": ev.status})
        s.reconcile()
        return ev

    async def until(self, predicate: Any, seconds: float = 1, limit: int = 300) -> None:
        for _ in range(limit):
            if predicate(self.sim.status):
                return
            await self.tick(seconds)
        raise AssertionError(f"not reached: {self.sim.status.stage} {self.sim.status.message}")


async def rolled_out(client: Scripted | None = None, **analysis_extra: Any) -> Loop:
    sim = Sim(
        spec_dict(replicas=4, steps=STEPS, keepWarm="30s", analysis=analysis_spec(**analysis_extra))
    )
    loop = Loop(sim, client or Scripted())
    await loop.reconcile()
    await loop.until(lambda s: s.stage == "Stable")
    sim.set_image("web:2")
    return loop


def condition(loop: Loop) -> tuple[str, str]:
    c = loop.sim.status.condition("AnalysisHealthy")
    assert c is not None
    return str(c.status), c.reason


# --------------------------------------------------------------------------- healthy


async def test_a_healthy_revision_is_promoted_through_every_step() -> None:
    loop = await rolled_out()
    weights = []

    def seen(s: ShadowRouteStatus) -> bool:
        weights.append(s.canary_weight)
        return s.stage == "Stable" and s.history and s.history[0].outcome == "Promoted"

    await loop.until(seen)
    assert [w for i, w in enumerate(weights) if i == 0 or w != weights[i - 1]] == [
        0,
        10,
        50,
        100,
        0,
    ]
    assert condition(loop) == ("True", "AnalysisPassed")
    a = loop.sim.status.analysis
    assert a.verdict == Verdict.PASS and [m.name for m in a.metrics] == ["errors", "p95"]
    assert a.metrics[0].requests == 500 and 'service="web-canary"' in a.metrics[0].query


async def test_runs_happen_every_interval_not_every_reconcile() -> None:
    loop = await rolled_out()
    await loop.until(lambda s: s.canary_weight == 10)
    await loop.until(lambda s: s.analysis.verdict == Verdict.PASS)  # the window covered
    await loop.tick()
    asked = len(loop.client.asked)
    ev = await loop.tick(3)
    assert len(loop.client.asked) == asked, "not due yet: no query"
    assert ev.signal.health is Health.HEALTHY and 0 < ev.requeue_after <= 10
    await loop.tick(ev.requeue_after)
    assert len(loop.client.asked) == asked + 3  # errors + its request count + p95


async def test_a_step_advances_only_on_a_run_made_after_its_traffic_was_set() -> None:
    """Step 2 has no pause: the passing run of step 1 must not let it through at once."""
    loop = await rolled_out()
    await loop.until(lambda s: s.current_step == 1 and s.stage_ready_at, seconds=0.5)
    ready = parse_timestamp(loop.sim.status.stage_ready_at)
    held = len(loop.evaluations)
    await loop.until(lambda s: s.stage != "Progressing", seconds=0.5)
    assert loop.sim.status.stage == "Promoting"
    first_pass_after = parse_timestamp(loop.sim.status.analysis.last_run_at)
    assert first_pass_after >= ready + dt.timedelta(seconds=1)
    # Not vacuous: meanwhile the standing verdict was Healthy, from before the weight.
    stale = [
        e
        for e in loop.evaluations[held - 1 : -1]
        if e.signal.health is Health.HEALTHY
        and e.signal.evidence_at < ready + dt.timedelta(seconds=1)
    ]
    assert stale, "the older passing run was there and was not enough"


async def test_nothing_is_asked_before_the_new_revision_gets_traffic() -> None:
    client = Scripted()
    loop = await rolled_out(client)
    loop.sim.ready_after["canary"] = 5
    ev = await loop.tick()
    assert loop.sim.status.stage == "Progressing" and loop.sim.status.canary_weight == 0
    ev = await loop.tick()
    assert client.asked == [] and ev.signal.health is Health.PENDING
    assert ev.signal.reason == "AnalysisPending" and ev.requeue_after == 10
    assert condition(loop) == ("Unknown", "AnalysisPending")


async def test_no_analysis_means_no_signal() -> None:
    sim = Sim(spec_dict())
    ev = await analysis.evaluate(sim.spec, sim.status, "shop", "web", sim.now)
    assert ev.signal is None and ev.requeue_after is None


async def test_idle_stages_ask_nothing() -> None:
    client = Scripted()
    loop = await rolled_out(client)
    loop.sim.set_image("web:1")  # back to stable before anything ran
    await loop.until(lambda s: s.stage == "Stable")
    ev = await loop.tick(60)
    assert client.asked == [] and ev.signal.reason == "AnalysisIdle" and ev.requeue_after is None


# --------------------------------------------------------------------------- failing


async def test_failed_runs_past_the_limit_roll_back_in_the_same_reconcile() -> None:
    client = Scripted()
    loop = await rolled_out(client)
    await loop.until(lambda s: s.canary_weight == 10)
    client.error_rate = 0.2
    await loop.until(lambda s: s.analysis.consecutive_failures == 1)
    assert loop.sim.status.stage == "Progressing" and condition(loop) == ("False", "AnalysisFailed")
    ev = await loop.tick(10)
    s = loop.sim.status
    assert ev.signal.health is Health.FAILED
    assert (
        s.stage == "RolledBack" and s.canary_weight == 0 and s.rollback_reason == "AnalysisFailed"
    )
    message = s.history[0].message
    assert "errors = 0.2 above max 0.05" in message and 'service="web-canary"' in message
    assert "2 failed runs in a row, more than failureLimit 1" in message


async def test_the_failure_count_survives_a_restart() -> None:
    client = Scripted()
    loop = await rolled_out(client)
    await loop.until(lambda s: s.canary_weight == 10)
    client.error_rate = 0.2
    await loop.until(lambda s: s.analysis.consecutive_failures == 1)
    # A new operator reads the status back from the API server: nothing else carries over.
    wire = loop.sim.status.to_k8s()
    loop.sim.status = ShadowRouteStatus.from_body(wire)
    assert loop.sim.status.analysis.consecutive_failures == 1
    await loop.until(lambda s: s.stage == "RolledBack")
    assert loop.sim.status.analysis.consecutive_failures == 2


async def test_a_pass_restarts_the_count_and_no_data_keeps_it() -> None:
    client = Scripted()
    loop = await rolled_out(client, failureLimit=3)
    await loop.until(lambda s: s.canary_weight == 10)
    client.error_rate = 0.2
    await loop.until(lambda s: s.analysis.consecutive_failures == 2)
    client.requests = 3  # below minRequests: no data, hold
    await loop.tick(10)
    assert loop.sim.status.analysis.consecutive_failures == 2
    assert condition(loop) == ("Unknown", "NoData")  # no evidence either way: it holds
    client.requests, client.error_rate = 500, 0.0
    held = []
    await loop.until(
        lambda s: held.append(s.analysis.reason) or s.analysis.verdict == Verdict.PASS, 10
    )
    assert loop.sim.status.analysis.consecutive_failures == 0
    # Until the window was covered, the runs within bounds were no pass: the count stayed.
    assert "PartialWindow" in held and set(held[1:-1]) <= {"PartialWindow"}, held


@pytest.mark.parametrize("policy,outcome", [("fail", "RolledBack"), ("pass", "Promoted")])
async def test_no_traffic_follows_the_no_data_policy(policy: str, outcome: str) -> None:
    client = Scripted()
    client.requests, client.error_rate, client.latency = None, None, None
    metrics = [
        {"name": "errors", "preset": "error-rate", "max": 0.05, "minRequests": 20, "noData": policy}
    ]
    loop = await rolled_out(client, metrics=metrics)
    await loop.until(lambda s: s.history and s.history[0].outcome == outcome)
    assert loop.sim.status.analysis.metrics[0].reason == "TooFewRequests"


async def test_no_traffic_with_the_hold_policy_holds() -> None:
    client = Scripted()
    client.requests = 0
    metrics = [{"name": "errors", "preset": "error-rate", "max": 0.05, "minRequests": 20}]
    loop = await rolled_out(client, metrics=metrics)
    await loop.until(lambda s: s.canary_weight == 10)
    for _ in range(30):
        await loop.tick(10)
    s = loop.sim.status
    assert s.stage == "Progressing" and s.current_step == 0 and s.canary_weight == 10
    assert condition(loop) == ("Unknown", "NoData") and s.analysis.consecutive_failures == 0


async def test_a_failure_in_the_warm_window_puts_the_previous_revision_back() -> None:
    client = Scripted()
    loop = await rolled_out(client)
    await loop.until(lambda s: s.stage == "Succeeded")
    old = loop.sim.status.previous_revision
    client.latency = 3.0
    await loop.until(lambda s: s.stage != "Succeeded", seconds=1)
    s = loop.sim.status
    assert (
        s.stable_revision == old and s.canary_weight == 0 and s.rollback_reason == "AnalysisFailed"
    )
    assert "p95 = 3 above max 0.5" in s.history[0].message


async def test_the_handover_waits_for_a_passing_run() -> None:
    client = Scripted()
    loop = await rolled_out(client)
    await loop.until(lambda s: s.stage == "Succeeded")
    client.down = "connection refused"
    await loop.tick(60)  # the warm period is over, but Prometheus does not answer
    await loop.tick(10)
    s = loop.sim.status
    assert s.stage == "Succeeded" and s.primary_revision == s.previous_revision
    assert "kept warm until the analysis passes" in s.message
    client.down = ""
    await loop.until(lambda s: s.stage == "Stable")


# --------------------------------------------------------------------------- Prometheus down


async def test_prometheus_down_holds_and_resumes() -> None:
    client = Scripted()
    loop = await rolled_out(client)
    await loop.until(lambda s: s.canary_weight == 10)
    client.down = "Cannot connect to host prometheus.test:9090"
    for _ in range(10):
        await loop.tick(10)
    s = loop.sim.status
    assert s.stage == "Progressing" and s.current_step == 0
    assert condition(loop) == ("False", "PrometheusUnavailable")
    assert s.analysis.unreachable_since and "unreachable since" in s.analysis.message
    assert "policy hold" in s.analysis.message and s.analysis.consecutive_failures == 0
    client.down = ""
    await loop.until(lambda s: s.stage == "Stable")
    assert loop.sim.status.analysis.unreachable_since is None


async def test_prometheus_down_past_the_timeout_rolls_back_with_policy_rollback() -> None:
    client = Scripted()
    loop = await rolled_out(client, unreachable={"timeout": "45s", "policy": "rollback"})
    await loop.until(lambda s: s.canary_weight == 10)
    client.down = "Cannot connect"
    ev = await loop.tick(10)
    since = dt.datetime.fromisoformat(
        loop.sim.status.analysis.unreachable_since.replace("Z", "+00:00")
    )
    assert (
        ev.signal.health is Health.PENDING
        and "rolled back if still unreachable" in ev.signal.message
    )
    await loop.until(lambda s: s.stage == "RolledBack")
    s = loop.sim.status
    assert s.rollback_reason == "PrometheusUnavailable"
    assert loop.sim.now - since >= dt.timedelta(seconds=45)
    assert loop.sim.now - since < dt.timedelta(seconds=45 + 11), "no later than a run after"


# --------------------------------------------------------------------------- queries


async def test_a_template_that_cannot_render_is_an_invalid_query_and_holds() -> None:
    client = Scripted()
    metrics = [{"name": "custom", "query": "sum by ({{ name }}) (up)", "max": 1}]
    loop = await rolled_out(client, metrics=metrics)
    await loop.until(lambda s: s.canary_weight == 10)
    await loop.tick(30)
    s = loop.sim.status
    assert client.asked == [] and s.current_step == 0
    assert condition(loop) == ("False", "InvalidQuery")
    assert "outside a string" in s.analysis.metrics[0].message


async def test_a_query_prometheus_refuses_is_an_invalid_query() -> None:
    client = Scripted()
    metrics = [{"name": "custom", "query": 'bad(x{a="{{ target }}"})', "max": 1}]
    loop = await rolled_out(client, metrics=metrics)
    await loop.until(lambda s: s.canary_weight == 10)
    await loop.tick(10)
    assert condition(loop) == ("False", "InvalidQuery")
    assert "unknown function bad" in loop.sim.status.analysis.message


async def test_the_shadow_stage_looks_at_the_shadow() -> None:
    client = Scripted()
    sim = Sim(spec_dict(replicas=2, shadow={"duration": "30s"}, analysis=analysis_spec()))
    loop = Loop(sim, client)
    await loop.reconcile()
    await loop.until(lambda s: s.stage == "Stable")
    sim.set_image("web:2")
    await loop.until(lambda s: s.mirror_percent == 100)
    await loop.tick()
    assert 'service="web-shadow"' in client.asked[-1][0]
    await loop.until(lambda s: s.stage == "Progressing" and s.canary_weight == 50)
    await loop.tick()
    assert 'service="web-canary"' in client.asked[-1][0]


# --------------------------------------------------------------------------- credentials


class FakeSecrets:
    """The one call the analysis makes on the API client: read a Secret."""

    def __init__(self, data: dict[str, str] | None) -> None:
        self.data = data

    async def read_secret(self, namespace: str, name: str) -> Any:
        if self.data is None:
            raise ApiError(status=404, reason="Not Found")
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in self.data.items()}
        return {"data": encoded}


async def test_a_bearer_token_from_the_secret_is_sent() -> None:
    client = Scripted()
    extra = {"prometheus": {"address": "https://prom.test", "secretRef": {"name": "prom"}}}
    loop = await rolled_out(client, **extra)
    loop.kube = FakeSecrets({"token": "t0ken\n"})
    await loop.until(lambda s: s.canary_weight == 10)
    await loop.tick()
    assert client.endpoints[-1].headers == {"Authorization": "Bearer t0ken"}


async def test_basic_auth_from_the_secret_is_sent() -> None:
    kube = FakeSecrets({"username": "ops", "password": "pw"})
    spec = Sim(
        spec_dict(
            analysis=analysis_spec(prometheus={"address": "http://p", "secretRef": {"name": "s"}})
        )
    ).spec
    where = await secrets.endpoint(spec.analysis, "shop", kube)
    assert where.headers == {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}


async def test_a_missing_secret_holds_without_showing_anything_secret() -> None:
    client = Scripted()
    extra = {"prometheus": {"address": "https://prom.test", "secretRef": {"name": "prom"}}}
    loop = await rolled_out(client, **extra)
    loop.kube = FakeSecrets(None)
    await loop.until(lambda s: s.canary_weight == 10)
    await loop.tick()
    assert client.asked == [] and condition(loop) == ("False", "PrometheusUnavailable")
    assert "Secret shop/prom not found" in loop.sim.status.analysis.message


async def test_a_secret_without_credentials_is_reported() -> None:
    spec = Sim(
        spec_dict(
            analysis=analysis_spec(prometheus={"address": "http://p", "secretRef": {"name": "s"}})
        )
    ).spec
    with pytest.raises(secrets.CredentialsError, match="none of the keys"):
        await secrets.endpoint(spec.analysis, "shop", FakeSecrets({"other": "x"}))
    with pytest.raises(secrets.CredentialsError, match="needs both username and password"):
        await secrets.endpoint(spec.analysis, "shop", FakeSecrets({"username": "x"}))
    with pytest.raises(secrets.CredentialsError, match="not a PEM CA bundle"):
        await secrets.endpoint(spec.analysis, "shop", FakeSecrets({"ca.crt": "nope"}))


async def test_without_an_address_the_operator_default_is_used(monkeypatch) -> None:
    spec = Sim(spec_dict(analysis={"metrics": []})).spec
    monkeypatch.delenv(secrets.ADDRESS_ENV, raising=False)
    with pytest.raises(secrets.CredentialsError, match="no Prometheus address"):
        await secrets.endpoint(spec.analysis, "shop", None)
    monkeypatch.setenv(secrets.ADDRESS_ENV, "http://default:9090")
    assert (await secrets.endpoint(spec.analysis, "shop", None)).address == "http://default:9090"


async def test_the_window_never_reaches_back_before_the_revision_got_traffic() -> None:
    """Behind the same <name>-canary Service, the samples of the previous revision would
    dilute the new one's error rate: the window starts when this one's traffic did."""
    client = Scripted()
    loop = await rolled_out(client)  # window 30s, interval 10s
    await loop.until(lambda s: s.canary_weight == 10)
    ready = parse_timestamp(loop.sim.status.stage_ready_at)
    for _ in range(6):
        await loop.tick(10)
    windows = []
    for query, at in client.asked:
        if query.startswith("sum(increase("):
            span = re.search(r"\[(\d+)(ms|s)\]", query).groups()
            seconds = int(span[0]) / (1000 if span[1] == "ms" else 1)
            windows.append(seconds)
            assert seconds <= max((at - ready).total_seconds() - 1, 0.001) + 1e-9
    assert windows[0] < 10 and windows[-1] == 30, windows
    assert windows == sorted(windows)
    assert loop.sim.status.analysis.traffic_since == run_time(ready + dt.timedelta(seconds=1))


async def test_each_run_is_counted_by_result_and_skipped_ticks_are_not() -> None:
    from prometheus_client import REGISTRY

    def runs(result: str) -> float:
        return REGISTRY.get_sample_value("shadowroute_analysis_runs_total", {"result": result}) or 0

    client = Scripted()
    loop = await rolled_out(client)
    await loop.until(lambda s: s.canary_weight == 10)
    await loop.until(lambda s: s.analysis.verdict == Verdict.INCONCLUSIVE)  # PartialWindow
    await loop.until(lambda s: s.analysis.verdict == Verdict.PASS)
    passed, unavailable = runs("Pass"), runs("Unavailable")
    ev = await loop.tick(10)
    assert runs("Pass") == passed + 1
    await loop.tick(min(ev.requeue_after or 1, 1) / 2)  # not due: no run
    assert runs("Pass") == passed + 1
    client.down = "Cannot connect"
    await loop.tick(10)
    assert runs("Unavailable") == unavailable + 1


# --------------------------------------------------------------------------- whatever fails


class Raising(Scripted):
    """A client whose every query raises what it is given (not one of the client's own
    errors): what aiohttp does with a header it refuses, or any bug below."""

    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc = exc

    async def query(self, endpoint: Endpoint, promql: str, at: dt.datetime) -> tuple[Sample, ...]:
        self.asked.append((promql, at))
        raise self.exc


def overflowing(loop: Loop) -> None:
    """analysis.interval 99999999999h, set past the models' validation (the schema may
    refuse it; whatever gets through must not stop the gates)."""
    spec = loop.sim.spec
    a = spec.analysis.model_copy(update={"interval": "99999999999h"})
    loop.sim.spec = spec.model_copy(update={"analysis": a})


FORBIDDEN = "Forbidden control character detected in headers. Potential header injection attack."


@pytest.mark.parametrize("gate,stage", [("abort", "RolledBack"), ("promote", "Promoting")])
async def test_an_interval_that_overflows_holds_and_the_gates_still_act(
    gate: str, stage: str
) -> None:
    loop = await rolled_out()
    await loop.until(lambda s: s.canary_weight == 10)
    await loop.tick(10)  # a run: from now on the next one is timed by the interval
    overflowing(loop)
    ev = await loop.tick(10)
    s = loop.sim.status
    assert ev.signal.health is Health.PENDING and ev.signal.reason == "AnalysisError"
    assert condition(loop) == ("False", "AnalysisError")
    assert "longer than a Go duration" in s.analysis.message and "the gates" in s.analysis.message
    assert s.stage == "Progressing" and s.canary_weight == 10
    assert ev.requeue_after == analysis.ERROR_RETRY_SECONDS
    loop.sim.gate(gate)
    await loop.tick()
    assert loop.sim.status.stage == stage
    if gate == "abort":
        assert loop.sim.status.canary_weight == 0
        assert loop.sim.status.rollback_reason == "Aborted"


async def test_any_failure_inside_the_analysis_holds_is_logged_once_and_abort_wins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = Scripted()
    loop = await rolled_out(client)
    await loop.until(lambda s: s.canary_weight == 10)
    loop.client = Raising(ValueError(FORBIDDEN))
    caplog.clear()
    with caplog.at_level("ERROR", logger="shadowroute.analysis"):
        for _ in range(3):  # past the step's pause (20 s): only the analysis holds it
            await loop.tick(10)
        held = loop.sim.status.to_k8s()
        assert "waiting for the analysis" in loop.sim.status.message
        for _ in range(5):
            await loop.tick(10)
    assert loop.client.asked, "the run was made, and raised"
    s = loop.sim.status
    assert s.to_k8s() == held, "the same failure again: the same status, no write"
    assert s.stage == "Progressing" and s.canary_weight == 10 and s.current_step == 0
    assert condition(loop) == ("False", "AnalysisError")
    assert f"ValueError: {FORBIDDEN}" in s.analysis.message
    assert s.analysis.consecutive_failures == 0, "no answer is not a failed check"
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "Traceback" in errors[0].getMessage()
    loop.sim.gate("abort")
    await loop.tick()
    s = loop.sim.status
    assert s.stage == "RolledBack" and s.canary_weight == 0 and s.rollback_reason == "Aborted"


async def test_a_failure_is_counted_as_an_error_run() -> None:
    from prometheus_client import REGISTRY

    def errors() -> float:
        sample = REGISTRY.get_sample_value("shadowroute_analysis_runs_total", {"result": "Error"})
        return sample or 0

    loop = await rolled_out(Raising(RuntimeError("boom")))
    before = errors()
    await loop.until(lambda s: s.canary_weight == 10)
    await loop.tick(10)
    assert errors() > before


# --------------------------------------------------------------------------- bad credentials


SECRET_REF = {"prometheus": {"address": "https://prom.test", "secretRef": {"name": "prom"}}}


@pytest.mark.parametrize(
    "data,why",
    [
        ({"token": "s3cr3t-part-one\ns3cr3t-part-two"}, "key token holds a line break"),
        ({"token": "s3cr3t-part-one\rs3cr3t-part-two"}, "key token holds a line break"),
        ({"token": "s3cr3t\x00value"}, "key token holds a line break or another control"),
        ({"token": "s3cr3t-part-one s3cr3t-part-two"}, "key token holds a space"),
        ({"token": " \n"}, "key token is empty"),
        ({"username": "", "password": "s3cr3t-pw"}, "key username is empty"),
        ({"username": "ops:admin", "password": "s3cr3t-pw"}, "key username holds a colon"),
        ({"username": "ops", "password": "s3cr3t\npw\n"}, "key password holds a line break"),
        ({"username": "ops", "password": ""}, "key password is empty"),
        ({"username": "ops"}, "needs both username and password"),
        ({"other": "x"}, "none of the keys"),
    ],
)
async def test_a_credential_that_cannot_be_sent_is_refused_before_any_request(
    data: dict[str, str], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = Scripted()
    loop = await rolled_out(client, **SECRET_REF)
    loop.kube = FakeSecrets(data)
    with caplog.at_level("DEBUG"):
        await loop.until(lambda s: s.canary_weight == 10)
        for _ in range(3):
            await loop.tick(10)
    s = loop.sim.status
    assert client.asked == [], "nothing was sent"
    assert condition(loop) == ("False", "CredentialsInvalid")
    assert s.analysis.reason == "CredentialsInvalid" and why in s.analysis.message
    assert "Secret shop/prom" in s.analysis.message
    assert "until the Secret is fixed" in s.analysis.message
    shown = s.model_dump_json() + caplog.text
    for value in data.values():
        for part in value.split():
            assert len(part) < 4 or part not in shown.replace("Secret shop/prom", ""), part
    assert s.stage == "Progressing" and s.canary_weight == 10
    loop.sim.gate("abort")
    await loop.tick()
    assert loop.sim.status.stage == "RolledBack" and loop.sim.status.canary_weight == 0


async def test_invalid_credentials_follow_the_unreachable_policy() -> None:
    loop = await rolled_out(
        Scripted(), **SECRET_REF, unreachable={"timeout": "30s", "policy": "rollback"}
    )
    loop.kube = FakeSecrets({"token": "a\nb"})
    await loop.until(lambda s: s.stage == "RolledBack", seconds=5)
    assert loop.sim.status.rollback_reason == "CredentialsInvalid"


async def test_a_fixed_secret_is_used_once_read_again() -> None:
    client = Scripted()
    loop = await rolled_out(client, **SECRET_REF)
    loop.kube = FakeSecrets({"token": "t0ken-one\nt0ken-two"})
    await loop.until(lambda s: s.canary_weight == 10)
    await loop.tick(10)
    assert condition(loop) == ("False", "CredentialsInvalid")
    loop.kube.data = {"token": "t0ken-one"}
    loop.secrets.forget("shop", "prom")  # as the cache expiring would
    await loop.until(lambda s: s.stage == "Stable")
    assert client.endpoints[-1].headers == {"Authorization": "Bearer t0ken-one"}
    assert loop.sim.status.analysis.unreachable_since is None


async def test_a_credential_quoted_in_an_error_is_redacted_from_status_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0"
    loop = await rolled_out(Scripted(), **SECRET_REF)
    loop.kube = FakeSecrets({"token": token + "\n"})
    await loop.until(lambda s: s.canary_weight == 10)
    loop.client = Raising(ValueError(f"cannot send header 'Authorization: Bearer {token}'"))
    with caplog.at_level("DEBUG"):
        await loop.tick(10)
    s = loop.sim.status
    assert condition(loop) == ("False", "AnalysisError")
    assert "Bearer [redacted]" in s.analysis.message
    assert token not in s.model_dump_json() and token not in caplog.text
    assert "Bearer [redacted]" in caplog.text


def test_a_planned_query_is_answered_by_prometheus_and_a_known_answer_without() -> None:
    asked = Answer(samples=(Sample((), 1.0),))
    known = Answer(error="cannot render the query template: x")
    assert analysis.Planned(query="up").answered({"up": asked}) is asked
    assert analysis.Planned(answer=known).answered({"up": asked}) is known
    assert analysis.Planned().answered({}) == Answer()


async def test_a_query_two_checks_share_is_asked_once_a_run() -> None:
    client = Scripted()
    metrics = [
        {"name": "errors", "preset": "error-rate", "max": 0.05, "minRequests": 20},
        {"name": "p95", "preset": "latency-p95", "max": 0.5, "minRequests": 20},
    ]
    loop = await rolled_out(client, metrics=metrics)
    await loop.until(lambda s: s.canary_weight == 10)
    before = len(client.asked)
    await loop.tick(10)
    run = [q for q, _ in client.asked[before:]]
    assert len(run) == len(set(run)) == 3, run
    assert [m.requests for m in loop.sim.status.analysis.metrics] == [500.0, 500.0]
