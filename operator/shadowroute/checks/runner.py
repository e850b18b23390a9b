"""The acceptance checks' shell: sends an http check's request, creates a job check's
Job and reads how it ended, and hands each finished attempt to the state machine.

A reconcile calls it twice: `CheckRunner.observe` before deciding (the attempts that
ended since: the http requests answered, the Jobs done), and `CheckRunner.start` after
the status is written (every attempt status says is running, and that is not in
flight, begins). Because the machine records an attempt before the shell acts on it,
a restarted operator finds it in status: a Job by its name (it runs on while the
operator is down), an http request sent again for what is left of its timeout.

Where the requests go: the Service of the version checked (`<name>-shadow` while it
shadows, `<name>-canary` otherwise; the new version serves from the canary Deployment
during the warm period too), at its cluster IP, directly: the operator runs in the
cluster network. An operator outside it (the test world, a laptop) names an HTTP
proxy into that network in SHADOWROUTE_CHECK_PROXY. Secret header values are read at
request time and never written to a message, a log line or status.

At rest (no attempt running) it reads and writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import aiohttp

from ..acceptance import ledger
from ..acceptance.spec import Check, HttpCheck, JobCheck, SecretValue, from_models
from ..api.models import CheckState, ShadowRouteSpec, ShadowRouteStatus
from ..api_errors import ApiError, api_reason
from ..http import Http
from ..names import CANARY, SHADOW, Owner, Stage, child_name
from ..render.workloads import route_port
from ..rollout.observe import CheckResult
from ..secrets import CredentialsError, Secrets, text
from .http import Answer, NoAnswer, judge
from .job import job_name, render_job

log = logging.getLogger(__name__)

PROXY_ENV = "SHADOWROUTE_CHECK_PROXY"
IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"
MAX_BODY_BYTES = 1 << 20
"""An answer's body is read up to this much: enough for any expectation, bounded."""
JOB_POLL_SECONDS = 2.0
"""How often a running Job is looked at (Jobs are not watched: only while one runs)."""
JOB_ENDINGS = {"Complete": True, "Failed": False}
"""The Job conditions that end it (batch/v1), and whether the check passed."""
LAST_LINES = 5
MAX_LOG_CHARACTERS = 1024

Key = tuple[str, str, str, str, str, int | None, int]


def target_role(stage: str | None) -> str:
    """Whose Service a check asks: the shadow's while shadowing, else the canary's."""
    return SHADOW if stage == Stage.SHADOWING else CANARY


@dataclass(frozen=True)
class Target:
    """Where a check reaches the version it checks."""

    service: str
    address: str
    port: int
    namespace: str

    def url(self, port: int | None, path: str) -> str:
        return f"http://{self.address}:{port or self.port}{path}"

    def env(self, port: int | None = None) -> dict[str, str]:
        """What a job check's containers are told about it."""
        p = port or self.port
        return {
            "SHADOWROUTE_TARGET_URL": f"http://{self.address}:{p}",
            "SHADOWROUTE_TARGET_SERVICE": f"{self.service}.{self.namespace}.svc",
            "SHADOWROUTE_TARGET_PORT": str(p),
        }


@dataclass
class Observed:
    """What `observe` saw, for the `start` of the same reconcile."""

    results: tuple[CheckResult, ...] = ()
    jobs: dict[str, dict[str, Any]] | None = None
    """Our check Jobs by name, when they were listed (only while one runs)."""
    poll_after: float | None = None
    """Look again after this many seconds (a Job is running); None when not needed."""


def checked_revision(status: ShadowRouteStatus) -> str:
    """The revision whose checks the current stage runs ("" when none does): the one
    rolled out, or after promotion (AfterPromotion) the new stable one."""
    if status.stage == Stage.SUCCEEDED:
        return status.stable_revision
    if status.stage in (Stage.SHADOWING, Stage.PROGRESSING, Stage.PROMOTING):
        return status.canary_revision
    return ""


def _running(
    spec: ShadowRouteSpec, status: ShadowRouteStatus
) -> list[tuple[Check, ledger.CheckRecord]]:
    """The records status says are running for the revision the stage checks, with
    their checks (still in the spec): what the shell carries out, and nothing else."""
    revision = checked_revision(status)
    if not revision:
        return []
    checks = {(c.name, c.hook): c for c in from_models(spec.checks)}
    out = []
    for c in status.checks:
        if c.state is not CheckState.RUNNING or c.revision != revision:
            continue
        record = ledger.from_status(c.to_k8s())
        check = checks.get((record.name, record.hook))
        if check is not None:
            out.append((check, record))
    return out


def _key(namespace: str, name: str, record: ledger.CheckRecord) -> Key:
    return (namespace, name, record.name, str(record.hook), record.revision, record.step,
            record.attempts)  # fmt: skip


@dataclass
class CheckRunner:
    """Operator-wide: the http attempts in flight (asyncio tasks, by attempt)."""

    http: Http = field(default_factory=Http)
    secrets: Secrets = field(default_factory=Secrets)
    proxy: str | None = field(default_factory=lambda: os.environ.get(PROXY_ENV) or None)
    in_cluster: bool = field(default_factory=lambda: IN_CLUSTER_ENV in os.environ)
    """In a pod (the kubelet sets KUBERNETES_SERVICE_HOST): ClusterIPs are reachable.
    Outside, without a proxy, a request to one would leave by the default route."""
    _tasks: dict[Key, asyncio.Task[CheckResult]] = field(default_factory=dict)
    _ended: dict[Key, CheckResult] = field(default_factory=dict)
    """Attempts that ended without a request or a Job (the Job was refused)."""

    # ------------------------------------------------------------------ before deciding

    async def observe(
        self, kube: Any, spec: ShadowRouteSpec, status: ShadowRouteStatus, namespace: str,
        name: str,
    ) -> Observed:  # fmt: skip
        """The attempts that ended since status recorded them."""
        running = _running(spec, status)
        self._forget(namespace, name, {_key(namespace, name, r) for _, r in running})
        if not running:
            return Observed()
        results: list[CheckResult] = []
        jobs = None
        poll = None
        if any(isinstance(c.action, JobCheck) for c, _ in running):
            jobs = await self._list_jobs(kube, namespace, name)
        for check, record in running:
            key = _key(namespace, name, record)
            if key in self._ended:
                results.append(self._ended.pop(key))
                continue
            if isinstance(check.action, HttpCheck):
                task = self._tasks.get(key)
                if task is not None and task.done():
                    del self._tasks[key]
                    results.append(task.result())
                continue
            if jobs is None:  # not listed (the API server said no): the deadline decides
                poll = JOB_POLL_SECONDS
                continue
            job = jobs.get(job_name(name, check.name, record.revision, record.attempts,
                                    record.step))  # fmt: skip
            ended = _job_ended(job) if job is not None else None
            if ended is None:
                poll = JOB_POLL_SECONDS
                continue
            passed, why = ended
            if not passed:
                why += await _last_lines(kube, namespace, job)
            results.append(_result(record, passed, f"Job {job['metadata']['name']} {why}"))
        return Observed(tuple(results), jobs, poll)

    def _forget(self, namespace: str, name: str, keep: set[Key]) -> None:
        """Drop (and stop) what this route no longer waits for: attempts timed out,
        records gone with a rollout that ended."""
        for key in [k for k in (*self._tasks, *self._ended) if k[:2] == (namespace, name)]:
            if key in keep:
                continue
            task = self._tasks.pop(key, None)
            if task is not None:
                task.cancel()
            self._ended.pop(key, None)

    async def _list_jobs(
        self, kube: Any, namespace: str, name: str
    ) -> dict[str, dict[str, Any]] | None:
        """Our check Jobs by name; None when they cannot be listed (logged once a look:
        the attempt then times out, with the reason in the log)."""
        try:
            listed = await kube.list_children(namespace, name, ("Job",))
        except ApiError as exc:
            reason, message = api_reason(exc)
            log.warning("%s/%s: cannot list check Jobs: %s: %s", namespace, name, reason, message)
            return None
        return {j["metadata"]["name"]: j for j in listed["Job"]}

    # ------------------------------------------------------------------ after the status write

    async def start(
        self,
        kube: Any,
        owner: Owner,
        spec: ShadowRouteSpec,
        status: ShadowRouteStatus,
        services: Mapping[str, dict[str, Any]],
        observed: Observed,
        now: datetime,
        wake: Callable[[], None] | None,
    ) -> float | None:
        """Begin every attempt the written status says is running and is not in flight;
        how soon to look again (a Job started), or None."""
        running = _running(spec, status)
        if not running:
            return None
        namespace, name = owner.namespace, owner.name
        target = _target(spec, status, services, namespace, name)
        poll = None
        for check, record in running:
            until = ledger.deadline(check, record)
            left = (until - now).total_seconds()
            if left <= 0:
                continue  # timed out: the machine counts it at its next look
            if target is None:  # its Service is not there yet: look again shortly
                poll = JOB_POLL_SECONDS
                continue
            if isinstance(check.action, HttpCheck):
                key = _key(namespace, name, record)
                if key not in self._tasks:
                    self._tasks[key] = asyncio.create_task(
                        self._ask(kube, check, record, target, namespace, left, wake)
                    )
                continue
            jname = job_name(name, check.name, record.revision, record.attempts, record.step)
            key = _key(namespace, name, record)
            poll = JOB_POLL_SECONDS
            known = observed.jobs
            if known is None:
                known = observed.jobs = await self._list_jobs(kube, namespace, name)
            if known is None or jname in known or key in self._ended:
                continue
            env = {
                **target.env(),
                "SHADOWROUTE_REVISION": record.revision,
                "SHADOWROUTE_CHECK": check.name,
                "SHADOWROUTE_HOOK": str(check.hook),
            }
            job = render_job(owner, check, record.revision, record.attempts, record.step, env)
            # activeDeadlineSeconds counts from now: what is left of the attempt's time.
            job["spec"]["activeDeadlineSeconds"] = max(1, int(left))
            try:
                await kube.apply(job, force=False)
            except ApiError as exc:  # refused (admission, quota, a bad pod spec):
                reason, message = api_reason(exc)  # the attempt failed, and says why
                why = f"Job {jname} not created: {reason}: {message}"
                self._ended[key] = _result(record, False, why[:1024])
                if wake is not None:
                    wake()
                continue
            known[jname] = job
            log.info("%s/%s: check %s attempt %d: Job %s created", namespace, name, check.name,
                     record.attempts, jname)  # fmt: skip
        return poll

    async def _ask(
        self,
        kube: Any,
        check: Check,
        record: ledger.CheckRecord,
        target: Target,
        namespace: str,
        seconds: float,
        wake: Callable[[], None] | None,
    ) -> CheckResult:
        """One http attempt, judged; wakes the route when it is done."""
        try:
            action = check.action
            assert isinstance(action, HttpCheck)
            if self.proxy is None and not self.in_cluster:
                return _result(record, False, (
                    f"not sent: the operator runs outside the cluster network (no "
                    f"{IN_CLUSTER_ENV}) and {PROXY_ENV} is unset, so Service "
                    f"{target.service} at {target.address} cannot be reached from here"
                ))  # fmt: skip
            try:
                headers = await self._headers(kube, action, namespace)
            except CredentialsError as exc:
                return _result(record, False, f"not sent: {exc}")
            url = target.url(action.port, action.path)
            answer = await self._request(action, url, headers, seconds)
            outcome = judge(action, answer)
            if not outcome.passed and isinstance(answer, Answer):
                # The message may quote the body, which may echo a credential: judged
                # on the answer as it came, told from the answer with it redacted.
                body = self.secrets.redact(answer.body.decode("utf-8", errors="replace"))
                outcome = judge(action, replace(answer, body=body.encode()))
            return _result(record, outcome.passed, self.secrets.redact(outcome.message))
        except Exception as exc:  # a bug of ours fails the attempt, once, not the reconcile
            log.exception("check %s attempt %d", check.name, record.attempts)
            return _result(record, False, f"the operator failed to run it: {type(exc).__name__}")
        finally:
            if wake is not None:
                wake()

    async def _headers(self, kube: Any, check: HttpCheck, namespace: str) -> dict[str, str]:
        """The request's headers, Secret values read now (cached briefly)."""
        out: dict[str, str] = {}
        for header, value in check.headers.items():
            if isinstance(value, SecretValue):
                data = await self.secrets.read(kube, namespace, value.name)
                where = f"header {header}: Secret {namespace}/{value.name}"
                if value.key not in data:
                    raise CredentialsError(f"{where} has no key {value.key}")
                secret = text(data[value.key], where, value.key).strip()
                self.secrets.remember(secret)
                out[header] = secret
            else:
                out[header] = value
        return out

    async def _request(
        self, check: HttpCheck, url: str, headers: dict[str, str], seconds: float
    ) -> Answer | NoAnswer:
        started = time.monotonic()
        try:
            async with self.http.session().request(
                check.method,
                url,
                headers=headers,
                data=check.body.encode() if check.body else None,
                timeout=aiohttp.ClientTimeout(total=seconds),
                proxy=self.proxy,
                allow_redirects=False,
            ) as resp:
                body = await resp.content.read(MAX_BODY_BYTES)
                return Answer(resp.status, dict(resp.headers), body, time.monotonic() - started)
        except TimeoutError:
            return NoAnswer(f"no answer within {seconds:.3g}s")
        except aiohttp.ClientError as exc:
            return NoAnswer(f"{type(exc).__name__}: {exc}")


def _result(record: ledger.CheckRecord, passed: bool, message: str) -> CheckResult:
    return CheckResult(
        name=record.name,
        hook=str(record.hook),
        revision=record.revision,
        attempt=record.attempts,
        passed=passed,
        message=message,
        step=record.step,
    )


def _target(
    spec: ShadowRouteSpec,
    status: ShadowRouteStatus,
    services: Mapping[str, dict[str, Any]],
    namespace: str,
    name: str,
) -> Target | None:
    service = child_name(name, target_role(status.stage))
    ip = ((services.get(service) or {}).get("spec") or {}).get("clusterIP")
    if not ip or ip == "None":
        return None
    return Target(service, ip, route_port(spec), namespace)


def _job_ended(job: dict[str, Any]) -> tuple[bool, str] | None:
    """(passed, why) once the Job controller says it ended; None while it runs."""
    for c in (job.get("status") or {}).get("conditions") or []:
        passed = JOB_ENDINGS.get(c.get("type", "")) if c.get("status") == "True" else None
        if passed is True:
            return True, "succeeded"
        if passed is False:
            detail = f": {c['message']}" if c.get("message") else ""
            return False, f"failed ({c.get('reason') or c['type']}{detail})"
    return None


async def _last_lines(kube: Any, namespace: str, job: dict[str, Any]) -> str:
    """The last lines a failed Job's containers wrote (their termination messages: the
    log's tail with FallbackToLogsOnError), for the check's message."""
    try:
        selector = f"batch.kubernetes.io/job-name={job['metadata']['name']}"
        pods = await kube.list_selected("Pod", namespace, selector)
    except Exception as exc:  # the message is a courtesy: never fail the result on it
        log.warning("reading the pods of Job %s: %s", job["metadata"]["name"], exc)
        return ""
    parts = []
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or ""):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            ended = (cs.get("state") or {}).get("terminated") or {}
            if not ended or ended.get("exitCode") == 0:
                continue
            lines = [x for x in (ended.get("message") or "").splitlines() if x.strip()]
            tail = " | ".join(lines[-LAST_LINES:])
            if len(tail) > MAX_LOG_CHARACTERS:
                tail = "…" + tail[-MAX_LOG_CHARACTERS:]
            said = f"; last lines: {tail}" if tail else ""
            parts.append(f"; container {cs.get('name')} exited {ended.get('exitCode')}{said}")
    return "".join(parts[-2:])
