"""The reconciler under crashes and in the presence of objects it did not create, against
a fake API (the same paths run against the real API server in
tests/e2e/test_ownership.py and tests/e2e/test_crash_points.py).

A crash is a `Killed` raised right after a write lands: nothing after it runs, as with
SIGKILL; the next `reconcile` is the restarted operator (a fresh Notifier: no memory).
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from shadowroute import reconciler
from shadowroute.analysis import Evaluation
from shadowroute.api import ShadowRouteStatus
from shadowroute.api.models import AnalysisStatus, Verdict
from shadowroute.kube.apiserver import Endpoint
from shadowroute.kube.client import Gone, Kube
from shadowroute.notify import Notifier
from shadowroute.reconciler import reconcile
from shadowroute.rollout.observe import AnalysisSignal, Health

from .test_traffic_reconcile import NAME, NS, UID, FakeKube, api_error
from .traffic_cases import spec_raw

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


class Killed(BaseException):
    """The operator process died (not an Exception: nothing catches it)."""


class CrashingKube(FakeKube):
    """FakeKube that can die right after a given write (`apply:HTTPRoute`, `status`,
    `event`) and keeps every HTTPRoute version it stored."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.kill_after: list[str] = []
        self.route_versions: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []  # (name, reason) of each Event recorded

    def _landed(self, key: str) -> None:
        if key in self.kill_after:
            self.kill_after.remove(key)
            raise Killed(key)

    async def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        stored = await super().apply(obj, force)
        if obj["kind"] == "HTTPRoute":
            self.route_versions.append(copy.deepcopy(stored))
        self._landed(f"apply:{obj['kind']}")
        return stored

    async def apply_status(self, namespace, name, status, uid=None) -> None:
        await super().apply_status(namespace, name, status, uid)
        self._landed("status")

    async def event(self, body, type_, reason, message, name="") -> bool:
        await super().event(body, type_, reason, message, name)
        if name in {n for n, _ in self.events}:
            return True  # already recorded: the API server answers 409, counted once
        self.events.append((name, reason))
        self._landed("event")
        return True

    def ready(self) -> None:
        """Every Deployment rolled out, as the controller would report."""
        for (kind, _), obj in self.objects.items():
            if kind == "Deployment":
                n = obj["spec"]["replicas"]
                obj["metadata"]["generation"] = 1
                obj["status"] = {
                    "observedGeneration": 1,
                    "replicas": n,
                    "updatedReplicas": n,
                    "availableReplicas": n,
                }

    def status(self) -> ShadowRouteStatus:
        return ShadowRouteStatus.from_body(self.body.get("status"))


def canary_weight(route: dict[str, Any]) -> int:
    return sum(
        ref.get("weight", 0)
        for rule in route["spec"]["rules"]
        for ref in rule.get("backendRefs") or []
        if ref["name"] == f"{NAME}-canary"
    )


async def at_step_one(kube: CrashingKube) -> dt.datetime:
    """Drive a route to the first canary step of a new revision, weight 10."""
    now = T0
    for _ in range(3):
        await reconcile(kube, NS, NAME, now, notifier=Notifier())
        kube.ready()
        now += dt.timedelta(seconds=1)
    assert kube.status().stage == "Stable"
    kube.body["spec"]["template"]["spec"]["containers"][0]["image"] = "web:2"
    kube.body["metadata"]["generation"] += 1
    for _ in range(3):
        await reconcile(kube, NS, NAME, now, notifier=Notifier())
        kube.ready()
        now += dt.timedelta(seconds=1)
    assert (kube.status().stage, kube.status().canary_weight) == ("Progressing", 10)
    return now


def analysis_says(monkeypatch: pytest.MonkeyPatch, *signals: AnalysisSignal) -> None:
    """The analysis verdicts of the next reconciles, in order (the last one repeats)."""
    left = list(signals)

    async def evaluate(spec, status, namespace, name, now, kube=None, client=None, secrets=None):
        signal = left.pop(0) if len(left) > 1 else left[0]
        return Evaluation(status.analysis, signal)

    monkeypatch.setattr(reconciler.analysis, "evaluate", evaluate)


def canary_spec() -> dict[str, Any]:
    """Gateway API, canary steps 10 % then 50 %, no shadow stage."""
    spec = spec_raw("gatewayapi")
    del spec["strategy"]["shadow"]
    return spec


FAILED = AnalysisSignal(Health.FAILED, "AnalysisFailed", "error-rate = 0.2 above max 0.05")
NO_DATA = AnalysisSignal(Health.PENDING, "NoData", "the query returned no series")


# --------------------------------------------------------------------------- defect 2


@pytest.mark.parametrize("kill_after", ["status", "apply:HTTPRoute", "apply:Deployment", "event"])
async def test_a_kill_during_a_rollback_never_gives_the_bad_version_traffic_again(
    monkeypatch: pytest.MonkeyPatch, kill_after: str
) -> None:
    kube = CrashingKube(canary_spec())
    now = await at_step_one(kube)
    # The failing run is seen once; after the restart Prometheus has no fresh data.
    analysis_says(monkeypatch, FAILED, NO_DATA)
    kube.kill_after = [kill_after]
    seen = len(kube.route_versions)
    with pytest.raises(Killed):
        await reconcile(kube, NS, NAME, now, notifier=Notifier())
    assert kube.status().stage == "RolledBack", "the decision is in status before it acts"
    for _ in range(3):  # the restarted operator
        now += dt.timedelta(seconds=1)
        await reconcile(kube, NS, NAME, now, notifier=Notifier())
    after = kube.route_versions[seen:]
    assert after and all(canary_weight(r) == 0 for r in after), [canary_weight(r) for r in after]
    assert kube.status().stage == "RolledBack" and kube.status().canary_weight == 0
    assert [h.outcome for h in kube.status().history][:1] == ["RolledBack"], "history kept"
    reasons = [r for _, r in kube.events]
    assert reasons.count("AnalysisFailed") == 1, "the rollback's Event, once"


async def test_status_is_written_before_any_child_in_a_rollback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = CrashingKube(canary_spec())
    now = await at_step_one(kube)
    analysis_says(monkeypatch, FAILED)
    kube.calls.clear()
    await reconcile(kube, NS, NAME, now, notifier=Notifier())
    writes = [c[:2] for c in kube.calls if c[0] in ("status", "apply", "event")]
    assert writes[0] == ("status",) and ("apply", "HTTPRoute") in writes


async def test_events_of_a_transition_survive_a_kill_after_the_status_write() -> None:
    kube = CrashingKube(canary_spec())
    await reconcile(kube, NS, NAME, T0, notifier=Notifier())
    kube.ready()
    kube.kill_after = ["status"]  # the status that says Stable lands, then the kill
    with pytest.raises(Killed):
        await reconcile(kube, NS, NAME, T0 + dt.timedelta(seconds=1), notifier=Notifier())
    assert kube.status().stage == "Stable" and "Available" not in [r for _, r in kube.events]
    await reconcile(kube, NS, NAME, T0 + dt.timedelta(seconds=2), notifier=Notifier())
    assert "Available" in [r for _, r in kube.events], "the transition's Event was delivered"
    assert kube.status().pending_events == [], "and is no longer pending"


async def test_an_event_posted_twice_is_recorded_once() -> None:
    kube = CrashingKube(canary_spec())
    await reconcile(kube, NS, NAME, T0, notifier=Notifier())
    kube.ready()
    kube.kill_after = ["event"]  # dies after posting, before the status says so
    with pytest.raises(Killed):
        await reconcile(kube, NS, NAME, T0 + dt.timedelta(seconds=1), notifier=Notifier())
    assert kube.status().pending_events, "still pending in status"
    await reconcile(kube, NS, NAME, T0 + dt.timedelta(seconds=2), notifier=Notifier())
    names = [n for n, r in kube.events if r == "Available"]
    assert len(names) == 1 and names[0].startswith(f"{NAME}.")
    assert kube.status().pending_events == []


async def test_webhook_notifications_survive_a_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = canary_spec()
    spec["analysis"] = {
        "notifications": {"webhooks": [{"name": "hook", "url": "http://127.0.0.1:9/x"}]}
    }
    kube = CrashingKube(spec)
    now = await at_step_one(kube)
    analysis_says(monkeypatch, FAILED)
    kube.kill_after = ["status"]
    with pytest.raises(Killed):
        await reconcile(kube, NS, NAME, now, notifier=Notifier())
    [pending] = kube.status().pending_notifications
    assert (pending.kind, pending.reason) == ("RolledBack", "AnalysisFailed")

    delivered: list[str] = []

    async def deliver(self, hook, notice, namespace, kube_) -> None:
        delivered.append(f"{notice.kind}/{notice.revision}")

    monkeypatch.setattr(Notifier, "_deliver", deliver)
    restarted = Notifier()
    await reconcile(kube, NS, NAME, now, notifier=restarted)
    await restarted.drain()
    assert delivered == [f"RolledBack/{pending.revision}"], "sent by the restarted operator"
    await reconcile(kube, NS, NAME, now, notifier=restarted)
    assert kube.status().pending_notifications == [], "settled, then dropped from status"
    await reconcile(kube, NS, NAME, now, notifier=restarted)
    await restarted.drain()
    assert len(delivered) == 1, "sent once per process"


# --------------------------------------------------------------------------- defect 1


def users_service(name: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": NS,
            "managedFields": [{"manager": "kubectl-client-side-apply"}],
            **meta,
        },
        "spec": {"selector": {"app": "billing"}, "ports": [{"port": 80}]},
    }


async def test_a_users_object_with_a_childs_name_is_never_written() -> None:
    kube = CrashingKube(canary_spec())
    theirs = users_service(NAME)
    kube.objects[("Service", NAME)] = copy.deepcopy(theirs)
    await reconcile(kube, NS, NAME, T0, notifier=Notifier())
    assert kube.objects[("Service", NAME)] == theirs, "not written, not adopted"
    assert kube.writes("apply") == [] and kube.writes("delete") == []
    s = kube.status()
    ready, degraded = s.condition("Ready"), s.condition("Degraded")
    assert (ready.status, ready.reason) == ("False", "NameConflict")
    assert (degraded.status, degraded.reason) == ("True", "NameConflict")
    # kstatus: a person must act; Flux and Argo CD see a failure, not a rollout.
    stalled, reconciling = s.condition("Stalled"), s.condition("Reconciling")
    assert (stalled.status, stalled.reason) == ("True", "NameConflict")
    assert reconciling.status == "False"
    assert f"Service {NAME} exists" in ready.message
    assert "kubectl-client-side-apply" in ready.message
    assert [r for _, r in kube.events] == ["NameConflict"]
    # The same conflict again: no status write, no second Event, a backed-off retry.
    kube.calls.clear()
    outcome = await reconcile(kube, NS, NAME, T0 + dt.timedelta(minutes=2), notifier=Notifier())
    assert kube.writes("status") == [] and [r for _, r in kube.events] == ["NameConflict"]
    assert outcome.requeue_after is not None and outcome.requeue_after >= 90
    # Gone: the route is built.
    del kube.objects[("Service", NAME)]
    await reconcile(kube, NS, NAME, T0 + dt.timedelta(minutes=3), notifier=Notifier())
    assert kube.objects[("Service", NAME)]["metadata"]["ownerReferences"][0]["uid"] == UID
    assert kube.status().condition("Degraded").status == "False"
    assert kube.status().condition("Stalled").status == "False"


async def test_a_siblings_child_is_a_conflict_naming_its_owner() -> None:
    """ShadowRoutes `shop` and `shop-primary` both want a Service `shop-primary`."""
    kube = CrashingKube(canary_spec())
    sibling = users_service(
        f"{NAME}-primary",
        labels={"app.kubernetes.io/managed-by": "shadowroute", "shadowroute.io/name": NAME},
        ownerReferences=[
            {"kind": "ShadowRoute", "name": f"{NAME}-primary", "uid": "other", "controller": True}
        ],
    )
    kube.objects[("Service", f"{NAME}-primary")] = copy.deepcopy(sibling)
    await reconcile(kube, NS, NAME, T0, notifier=Notifier())
    assert kube.objects[("Service", f"{NAME}-primary")] == sibling
    ready = kube.status().condition("Ready")
    assert ready.reason == "NameConflict"
    assert f"controlled by ShadowRoute {NAME}-primary" in ready.message


async def test_a_child_of_ours_that_lost_its_labels_is_taken_back() -> None:
    kube = CrashingKube(canary_spec())
    await reconcile(kube, NS, NAME, T0, notifier=Notifier())
    del kube.objects[("Service", NAME)]["metadata"]["labels"]
    await reconcile(kube, NS, NAME, T0 + dt.timedelta(seconds=1), notifier=Notifier())
    assert kube.status().condition("Ready").reason != "NameConflict"
    assert kube.objects[("Service", NAME)]["metadata"]["labels"]["shadowroute.io/name"] == NAME


# --------------------------------------------------------------------------- defect 6


async def test_a_failing_write_backs_off_to_a_cap() -> None:
    spec = canary_spec()
    spec["progressDeadline"] = "1h"  # no timer of the rollout's own comes first
    kube = CrashingKube(spec)
    refused = api_error(500, {"reason": "InternalError", "message": "etcd is sad"})
    delays = []
    for minutes in (0, 1, 4, 20):
        kube.fail["apply:HTTPRoute"] = [refused]
        at = T0 + dt.timedelta(minutes=minutes)
        delays.append((await reconcile(kube, NS, NAME, at, notifier=Notifier())).requeue_after)
    assert 4 <= delays[0] <= 5
    assert 48 <= delays[1] <= 60 and 192 <= delays[2] <= 240 and 240 <= delays[3] <= 300
    assert [r for _, r in kube.events] == ["RouteApplyFailed"], "reported once"


async def test_a_route_deleted_mid_reconcile_ends_quietly() -> None:
    kube = CrashingKube(canary_spec())
    kube.fail["status"] = [reconciler.Gone("deleted")]
    outcome = await reconcile(kube, NS, NAME, T0, notifier=Notifier())
    assert outcome.requeue_after is None and outcome.status is None


@pytest.mark.parametrize(
    ("code", "body"),
    [(404, {"reason": "NotFound", "details": {"name": NAME}}), (409, {"reason": "Conflict"})],
)
async def test_a_status_write_to_a_deleted_route_is_gone_not_an_error(
    code: int, body: dict[str, Any]
) -> None:
    """404: deleted; 409 on the uid precondition: deleted and created again."""
    kube = Kube(Endpoint(server="http://127.0.0.1:1"))

    def refuse(*_: Any, **__: Any) -> Any:
        raise api_error(code, body)

    kube.call = refuse  # type: ignore[method-assign]
    with pytest.raises(Gone):
        await kube.apply_status(NS, NAME, {}, uid=UID)
    await kube.close()


async def test_an_analysis_hold_of_a_whole_interval_is_a_warning_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = canary_spec()
    spec["analysis"] = {"interval": "10s"}
    kube = CrashingKube(spec)
    now = await at_step_one(kube)
    held = kube.status()

    def with_run(at: dt.datetime) -> AnalysisStatus:
        a = held.analysis.model_copy(
            update={
                "verdict": Verdict.INCONCLUSIVE,
                "reason": "PrometheusUnavailable",
                "message": "connection refused",
                "last_run_at": at.isoformat().replace("+00:00", "Z"),
            }
        )
        return a

    async def evaluate(spec_, status, namespace, name, now_, kube=None, client=None, secrets=None):
        a = with_run(now_)
        return Evaluation(a, AnalysisSignal(Health.PENDING, a.reason, a.message))

    monkeypatch.setattr(reconciler.analysis, "evaluate", evaluate)
    for seconds in (0, 5, 11, 22, 33):
        await reconcile(kube, NS, NAME, now + dt.timedelta(seconds=seconds), notifier=Notifier())
    warned = [r for _, r in kube.events if r == "PrometheusUnavailable"]
    assert warned == ["PrometheusUnavailable"], "once, after a whole interval of holding"


async def test_a_name_it_may_not_read_is_not_written_either() -> None:
    """Without `get` it cannot tell whose an object is: it writes nothing and says why."""
    kube = CrashingKube(canary_spec())
    forbidden = {"reason": "Forbidden", "message": 'services "shop" is forbidden'}
    kube.fail["get:Service"] = [api_error(403, forbidden) for _ in range(4)]
    await reconcile(kube, NS, NAME, T0, notifier=Notifier())
    assert kube.writes("apply") == []
    degraded = kube.status().condition("Degraded")
    assert degraded.reason == "ApplyFailed" and f"cannot read Service {NAME}" in degraded.message


async def test_an_invalid_deployment_is_a_condition_naming_it_with_every_cause() -> None:
    """The API server's 422 lists each cause; Degraded names the child and keeps them all."""
    kube = CrashingKube(canary_spec())
    causes = [
        {"reason": "FieldValueInvalid", "message": "Invalid value: 'A_b'", "field": "a.name"},
        {"reason": "FieldValueInvalid", "message": "Invalid value: -1", "field": "b.port"},
    ]
    invalid = {"reason": "Invalid", "message": "is invalid", "details": {"causes": causes}}
    kube.fail["apply:Deployment"] = [api_error(422, invalid)]
    await reconcile(kube, NS, NAME, T0, notifier=Notifier())
    degraded = kube.status().condition("Degraded")
    assert degraded.reason == "ApplyFailed"
    assert degraded.message.startswith(f"Deployment {NAME}-primary: Invalid: is invalid")
    assert "a.name: Invalid value: 'A_b'" in degraded.message
    assert "b.port: Invalid value: -1" in degraded.message


@pytest.mark.parametrize(
    ("code", "stalled"),
    [(500, "False"), (503, "False"), (429, "False"), (422, "True"), (403, "True")],
)
async def test_only_a_refusal_stalls_a_route(code: int, stalled: str) -> None:
    """kstatus' Stalled means a person must act (Flux fails a Kustomization on it):
    an API server that failed or was busy is retried with backoff, Reconciling."""
    kube = CrashingKube(canary_spec())
    kube.fail["apply:HTTPRoute"] = [api_error(code, {"reason": "Whatever", "message": "no"})]
    await reconcile(kube, NS, NAME, T0, notifier=Notifier())
    s = kube.status()
    assert s.condition("Degraded").status == "True"
    assert s.condition("Stalled").status == stalled
    assert s.condition("Reconciling").status == ("False" if stalled == "True" else "True")
    assert s.condition("Ready").status == "False"
