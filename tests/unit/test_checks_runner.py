"""checks.runner, the shell of the acceptance checks, against a small fake API: a Job
check's Job is created once, after status says the attempt runs, and read back with
its failed container's last lines; nothing is read at rest."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from shadowroute.api import ShadowRouteSpec, ShadowRouteStatus
from shadowroute.checks.runner import CheckRunner, _job_ended
from shadowroute.names import Owner

from .sim import spec_dict

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
OWNER = Owner("shadowroute.io/v1alpha1", "ShadowRoute", "shop", "ns", "uid-1")
JOB = {
    "name": "suite",
    "when": "BeforeTraffic",
    "timeout": "1m",
    "job": {"template": {"spec": {"containers": [{"name": "suite", "image": "e2e:1"}]}}},
}
SERVICES = {"shop-canary": {"spec": {"clusterIP": "10.96.0.7"}}}


class Kube:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.calls: list[str] = []

    async def list_children(self, namespace: str, name: str, kinds: tuple[str, ...]):
        self.calls.append("list jobs")
        return {"Job": list(self.jobs.values())}

    async def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        self.calls.append(f"apply {obj['metadata']['name']}")
        self.jobs[obj["metadata"]["name"]] = obj
        return obj

    async def list_selected(self, kind: str, namespace: str, selector: str):
        self.calls.append(f"list {kind} {selector}")
        return self.pods


def status(state: str = "Running", stage: str = "Progressing") -> ShadowRouteStatus:
    return ShadowRouteStatus.model_validate(
        {
            "stage": stage,
            "canaryRevision": "abcdef1234",
            "checks": [
                {
                    "name": "suite",
                    "hook": "BeforeTraffic",
                    "revision": "abcdef1234",
                    "state": state,
                    "attempts": 1,
                    "startedAt": "2026-12-01T12:00:00Z",
                }
            ],
        }
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_job_is_created_once_with_the_target_and_read_back_with_its_last_lines() -> None:
    spec = ShadowRouteSpec.model_validate(spec_dict(checks=[JOB]))
    kube, runner = Kube(), CheckRunner()
    seen = run(runner.observe(kube, spec, status(), "ns", "shop"))
    assert seen.results == ()  # no Job yet: nothing ended
    poll = run(runner.start(kube, OWNER, spec, status(), SERVICES, seen, NOW, None))
    assert poll == 2.0
    (job,) = kube.jobs.values()
    assert job["metadata"]["name"] == "shop-check-suite-abcdef12-1"
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SHADOWROUTE_TARGET_URL"] == "http://10.96.0.7:80"
    assert env["SHADOWROUTE_TARGET_SERVICE"] == "shop-canary.ns.svc"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert job["spec"]["activeDeadlineSeconds"] == 60
    # Seen again while it runs: not created twice.
    seen = run(runner.observe(kube, spec, status(), "ns", "shop"))
    run(runner.start(kube, OWNER, spec, status(), SERVICES, seen, NOW, None))
    assert [c for c in kube.calls if c.startswith("apply")] == ["apply shop-check-suite-abcdef12-1"]
    job["status"] = {
        "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
    }
    kube.pods = [
        {
            "metadata": {"name": "p"},
            "status": {
                "containerStatuses": [
                    {
                        "name": "suite",
                        "state": {
                            "terminated": {"exitCode": 1, "message": "a\nb\n\nFAILED total 13\n"}
                        },
                    }
                ]
            },
        }
    ]
    seen = run(runner.observe(kube, spec, status(), "ns", "shop"))
    (result,) = seen.results
    assert not result.passed and result.attempt == 1
    assert result.message == (
        "Job shop-check-suite-abcdef12-1 failed (BackoffLimitExceeded); container suite "
        "exited 1; last lines: a | b | FAILED total 13"
    )


def test_nothing_is_read_at_rest() -> None:
    spec = ShadowRouteSpec.model_validate(spec_dict(checks=[JOB]))
    kube, runner = Kube(), CheckRunner()
    done = status("Passed")
    seen = run(runner.observe(kube, spec, done, "ns", "shop"))
    assert run(runner.start(kube, OWNER, spec, done, SERVICES, seen, NOW, None)) is None
    assert kube.calls == []


def test_a_job_ends_by_its_conditions() -> None:
    assert _job_ended({"status": {}}) is None
    assert _job_ended({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == (
        True,
        "succeeded",
    )
    failed = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "m"}
    assert _job_ended({"status": {"conditions": [failed]}}) == (
        False,
        "failed (DeadlineExceeded: m)",
    )
    assert _job_ended({"status": {"conditions": [{**failed, "status": "False"}]}}) is None


# --------------------------------------------------------------------------- http, for real


TOKEN = {"name": "t", "key": "token"}


class SecretKube(Kube):
    async def read_secret(self, namespace: str, name: str) -> Any:
        import base64

        return {"data": {"token": base64.b64encode(b"s3cret-token-value").decode()}}


def http_status(revision: str = "abcdef1234") -> ShadowRouteStatus:
    return ShadowRouteStatus.model_validate(
        {
            "stage": "Progressing",
            "canaryRevision": revision,
            "checks": [
                {
                    "name": "smoke",
                    "hook": "BeforeTraffic",
                    "revision": revision,
                    "state": "Running",
                    "attempts": 1,
                    "startedAt": "2026-12-01T12:00:00Z",
                }
            ],
        }
    )


def test_an_http_check_is_sent_once_wakes_the_route_and_never_tells_its_secret() -> None:
    from aiohttp import web

    seen: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        token = request.headers.get("Authorization", "")
        return web.Response(status=401, text=f'{{"error": "rejected {token}"}}')

    async def scenario() -> tuple[Any, list[str], Any]:
        app = web.Application()
        app.router.add_get("/healthz", echo)
        server = web.AppRunner(app)
        await server.setup()
        site = web.TCPSite(server, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        check = {
            "name": "smoke",
            "when": "BeforeTraffic",
            "timeout": "1h",
            "http": {
                "path": "/healthz",
                "port": port,
                "headers": [{"name": "authorization", "secretKeyRef": TOKEN}],
                "expect": {"bodyContains": "healthy"},  # a failure then quotes the body
            },
        }
        spec = ShadowRouteSpec.model_validate(spec_dict(checks=[check]))
        kube, runner, woken = SecretKube(), CheckRunner(in_cluster=True), []
        services = {"shop-canary": {"spec": {"clusterIP": "127.0.0.1"}}}
        now = dt.datetime.now(dt.UTC)
        status = http_status()
        status.checks[0].started_at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            for _ in range(2):  # a second start while it is in flight sends nothing more
                seen_ = await runner.observe(kube, spec, status, "ns", "shop")
                await runner.start(kube, OWNER, spec, status, services, seen_, now,
                                   lambda: woken.append("wake"))  # fmt: skip
            for _ in range(200):
                if woken:
                    break
                await asyncio.sleep(0.01)
            observed = await runner.observe(kube, spec, status, "ns", "shop")
        finally:
            await runner.http.close()
            await server.cleanup()
        return observed, woken, kube

    observed, woken, kube = run(scenario())
    assert woken == ["wake"] and len(seen) == 1
    assert seen[0]["Authorization"] == "s3cret-token-value"
    (result,) = observed.results
    assert not result.passed and "status 401 is not 2xx" in result.message
    assert "s3cret" not in result.message and "[redacted]" in result.message, result.message
    assert kube.calls == []  # an http check reads no API object (the Secret aside)


def test_a_job_the_api_server_refuses_fails_the_attempt_with_its_answer() -> None:
    from shadowroute.api_errors import ApiError

    class Refusing(Kube):
        async def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
            raise ApiError(status=403, reason="Forbidden")

    spec = ShadowRouteSpec.model_validate(spec_dict(checks=[JOB]))
    kube, runner, woken = Refusing(), CheckRunner(), []
    seen = run(runner.observe(kube, spec, status(), "ns", "shop"))
    run(runner.start(kube, OWNER, spec, status(), SERVICES, seen, NOW, lambda: woken.append(1)))
    (result,) = run(runner.observe(kube, spec, status(), "ns", "shop")).results
    assert not result.passed and result.message.startswith("Job shop-check-suite-abcdef12-1 not")
    assert woken == [1]


def test_jobs_that_cannot_be_listed_leave_the_deadline_to_decide() -> None:
    from shadowroute.api_errors import ApiError

    class Blind(Kube):
        async def list_children(self, namespace: str, name: str, kinds: tuple[str, ...]):
            raise ApiError(status=403, reason="Forbidden")

    spec = ShadowRouteSpec.model_validate(spec_dict(checks=[JOB]))
    seen = run(CheckRunner().observe(Blind(), spec, status(), "ns", "shop"))
    assert seen.results == () and seen.poll_after == 2.0


def test_nothing_runs_for_a_revision_the_stage_does_not_check() -> None:
    spec = ShadowRouteSpec.model_validate(spec_dict(checks=[JOB]))
    kube = Kube()
    for stale in (status(stage="RolledBack"), status(stage="Stable")):
        seen = run(CheckRunner().observe(kube, spec, stale, "ns", "shop"))
        assert run(CheckRunner().start(kube, OWNER, spec, stale, SERVICES, seen, NOW, None)) is None
    assert kube.calls == []


def test_outside_the_cluster_network_without_a_proxy_nothing_is_sent() -> None:
    """A ClusterIP dialled from outside the cluster network would leave by the default
    route: the attempt fails saying why, and no packet goes."""
    check = {"name": "smoke", "when": "BeforeTraffic", "timeout": "1h", "http": {"path": "/"}}
    spec = ShadowRouteSpec.model_validate(spec_dict(checks=[check]))
    now = dt.datetime.now(dt.UTC)
    status = http_status()
    status.checks[0].started_at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    runner = CheckRunner(proxy=None, in_cluster=False)

    async def scenario() -> Any:
        seen = await runner.observe(Kube(), spec, status, "ns", "shop")
        await runner.start(Kube(), OWNER, spec, status, SERVICES, seen, now, None)
        await asyncio.gather(*runner._tasks.values())
        return await runner.observe(Kube(), spec, status, "ns", "shop")

    (result,) = run(scenario()).results
    assert not result.passed
    assert result.message.startswith("not sent: the operator runs outside the cluster network")
    assert "SHADOWROUTE_CHECK_PROXY is unset" in result.message and "10.96.0.7" in result.message
