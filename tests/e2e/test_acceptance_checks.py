"""Acceptance checks on real pods: the http checks go from the operator to the new
version's Service (through the test world's pod proxy, as they would go directly from
an operator pod), the job checks run as real processes in the pod network, and the
requests counted come through the real gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import KubectlFn, OperatorProcess, get_json, wait_for
from .real_traffic import app_route, app_template, hostname, load
from .test_rollout import Route, stable

pytestmark = pytest.mark.e2e

OPERATOR_IMAGE = "shadowroute.local/shadowroute"
# Ready by "/" (it answers whatever /healthz says): a version whose health check fails
# still becomes ready, so only the acceptance check can stop it.
READY_BY_ROOT = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}


def template(name: str, version: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    t = app_template(name, version, env)
    t["spec"]["containers"][0]["readinessProbe"] = READY_BY_ROOT
    return t


def http_check(name: str, when: str, path: str = "/healthz", **more: Any) -> dict[str, Any]:
    return {"name": name, "when": when, "timeout": "5s", "http": {"path": path}, **more}


def python_job(name: str, when: str, code: str, **more: Any) -> dict[str, Any]:
    """A job check whose container runs `python -c code` (the operator's image holds a
    Python): a real process of the test world, with the target in its environment."""
    container = {"name": "suite", "image": OPERATOR_IMAGE, "command": ["python", "-c", code]}
    return {
        "name": name,
        "when": when,
        "timeout": "60s",
        "job": {"template": {"spec": {"containers": [container]}}},
        **more,
    }


@pytest.fixture
def checked(kubectl: KubectlFn, namespace: str, operator: OperatorProcess):
    def make(name: str, checks: list[dict[str, Any]], **spec: Any) -> Route:
        spec.setdefault("keepWarm", "1s")
        spec.setdefault(
            "strategy", {"canary": {"steps": [{"weight": 50, "pause": {"duration": "2s"}}]}}
        )
        body = app_route(name, namespace, checks=checks, **spec)
        body["spec"]["template"] = template(name, "v1")
        r = Route(kubectl, namespace, body)
        r.apply()
        r.wait("the first version Stable", stable, 120)
        return r

    return make


def release(r: Route, version: str, env: dict[str, str] | None = None) -> None:
    r.body["spec"]["template"] = template(r.name, version, env)
    r.apply()


def records(s: dict[str, Any], revision: str) -> dict[str, dict[str, Any]]:
    return {
        f"{c['name']}@{c['step']}" if "step" in c else c["name"]: c
        for c in s.get("checks") or []
        if c["revision"] == revision
    }


def test_a_failing_health_check_keeps_the_version_from_any_traffic_and_rolls_it_back(
    checked, namespace: str
) -> None:
    r = checked("unhealthy", [http_check("smoke", "BeforeTraffic", retries=1)])
    host = hostname(r.name, namespace)
    with load(host, rate=20, duration=60) as traffic:
        release(r, "v2", {"HEALTHZ_FAIL": "1"})
        s = r.wait("rolled back", lambda s: s.get("phase") == "RolledBack", 90)
        seen = traffic.snapshot()
    assert s["rollbackReason"] == "CheckFailed", s
    why = s["history"][0]
    assert why["reason"] == "CheckFailed", why
    assert "check smoke (BeforeTraffic) failed" in why["message"], why
    assert "status 503" in why["message"], why
    rec = records(s, s["rolledBackRevision"])["smoke"]
    assert (rec["state"], rec["attempts"]) == ("Failed", 2), rec
    # The new version never got a request: every answer came from v1.
    assert set(seen.versions) == {"v1"} and seen.responses > 0, seen.to_text()
    assert set(seen.statuses) == {200}, seen.to_text()


def test_passing_checks_at_every_hook_let_the_version_through(
    checked, namespace: str, kubectl: KubectlFn
) -> None:
    target_ok = (
        "import os, urllib.request, sys\n"
        "url = os.environ['SHADOWROUTE_TARGET_URL'] + '/healthz'\n"
        "answer = urllib.request.urlopen(url, timeout=5)\n"
        "print('suite: GET', url, answer.status, flush=True)\n"
        "sys.exit(0 if answer.status == 200 else 1)\n"
    )
    r = checked(
        "healthy",
        [
            http_check("smoke", "BeforeTraffic"),
            python_job("suite", "BeforeTraffic", target_ok),
            http_check("step", "EachStep", "/"),
            {
                "name": "version",
                "when": "BeforePromotion",
                "http": {
                    "path": "/",
                    "expect": {"json": [{"path": "body.version", "value": "v2"}]},
                },
            },
            http_check("after", "AfterPromotion"),
        ],
    )
    release(r, "v2")
    s = r.wait(
        "promoted and stable",
        lambda s: stable(s) and (s.get("history") or [{}])[0].get("outcome") == "Promoted",
        150,
    )
    revision = s["stableRevision"]
    got = records(s, revision)
    assert {k: v["state"] for k, v in got.items()} == {
        "smoke": "Passed",
        "suite": "Passed",
        "step@0": "Passed",
        "version": "Passed",
        "after": "Passed",
    }, got
    assert all(v["attempts"] == 1 for v in got.values()), got
    # The job check's Job ran as a real process that reached the new version.
    jobs = get_json(kubectl, "jobs", "-n", namespace, "-l", "shadowroute.io/check=suite")
    assert [j["status"].get("succeeded") for j in jobs["items"]] == [1]


def test_a_job_check_exiting_1_rolls_back_with_its_last_log_line(checked) -> None:
    failing = (
        "import sys\n"
        "print('suite: 3 passed', flush=True)\n"
        "print('suite: FAILED test_total: the total is 13, expected 12', flush=True)\n"
        "sys.exit(1)\n"
    )
    r = checked("jobfails", [python_job("suite", "BeforeTraffic", failing)])
    release(r, "v2")
    s = r.wait("rolled back", lambda s: s.get("phase") == "RolledBack", 120)
    assert s["rollbackReason"] == "CheckFailed", s
    rec = records(s, s["rolledBackRevision"])["suite"]
    assert rec["state"] == "Failed" and rec["attempts"] == 1, rec
    assert "the total is 13, expected 12" in rec["message"], rec
    assert "exited 1" in rec["message"], rec
    assert "the total is 13, expected 12" in s["history"][0]["message"]


def test_a_failing_check_after_promotion_puts_the_old_version_back_with_no_request_lost(
    checked, namespace: str
) -> None:
    r = checked("after", [http_check("after", "AfterPromotion", retries=1)], keepWarm="2m")
    host = hostname(r.name, namespace)
    with load(host, rate=20, duration=120) as traffic:
        release(r, "v2", {"HEALTHZ_FAIL": "1"})
        promoted = r.wait("promoted", lambda s: s.get("phase") == "Succeeded", 90)
        s = r.wait("rolled back", lambda s: s.get("phase") == "RolledBack", 60)
        # The old version serves again at once: it was kept warm.
        wait_for(
            lambda: (lambda v: v.get("v1", 0) > 0 and not v.get("v2"))(
                load(host, rate=20, requests=20).run().versions
            ),
            30,
            1,
            "v1 to serve every request again",
        )
        seen = traffic.snapshot()
    assert promoted["stableRevision"] == s["rolledBackRevision"]
    assert s["rollbackReason"] == "CheckFailed", s
    assert "after promotion" in s["history"][0]["message"], s["history"][0]
    assert s["stableRevision"] == promoted["previousRevision"]
    # No request was lost on the way there and back.
    assert set(seen.statuses) == {200}, seen.to_text()
    assert seen.versions.get("v2", 0) > 0, seen.to_text()


def test_a_killed_operator_reruns_no_check_that_passed(
    checked, kubectl: KubectlFn, namespace: str, operator: OperatorProcess
) -> None:
    slow = "import time\nprint('suite: slow start', flush=True)\ntime.sleep(10)\nprint('ok')\n"
    r = checked(
        "killed",
        [http_check("smoke", "BeforeTraffic"), python_job("slow", "BeforeTraffic", slow)],
    )
    release(r, "v2")
    mid = r.wait(
        "the slow check running after the first passed",
        lambda s: (
            (c := records(s, s.get("canaryRevision", ""))).get("smoke", {}).get("state") == "Passed"
            and c.get("slow", {}).get("state") == "Running"
        ),
        90,
    )
    wait_for(
        lambda: get_json(kubectl, "jobs", "-n", namespace, "-l", "shadowroute.io/check=slow")[
            "items"
        ],
        30,
        0.3,
        "the slow check's Job",
    )
    operator.kill()
    operator.start()
    s = r.wait("promoted after the restart", lambda s: stable(s), 150)
    got = records(s, mid["canaryRevision"])
    assert got["smoke"]["state"] == got["slow"]["state"] == "Passed", got
    assert got["smoke"]["finishedAt"] == records(mid, mid["canaryRevision"])["smoke"]["finishedAt"]
    assert got["slow"]["attempts"] == 1, got
    jobs = get_json(kubectl, "jobs", "-n", namespace, "-l", "shadowroute.io/check=slow")
    assert len(jobs["items"]) == 1, [j["metadata"]["name"] for j in jobs["items"]]


def test_the_blue_green_example_switches_only_to_a_version_that_passed_its_checks(
    kubectl: KubectlFn, namespace: str, operator: OperatorProcess, plugin
) -> None:
    """examples/checks.yaml as it is, and the steps its comment gives."""
    example = Path(__file__).resolve().parents[2] / "examples" / "checks.yaml"
    kubectl("create", "secret", "generic", "shop-smoke", "-n", namespace,
            "--from-literal=token=ci-smoke-token")  # fmt: skip
    body = yaml.safe_load(example.read_text())
    body["spec"]["traffic"]["gatewayAPI"]["hostnames"] = [hostname("shop", namespace)]
    r = Route(kubectl, namespace, body)
    r.apply()
    r.wait("Stable", stable, 120)

    def patch(ops: list[dict[str, Any]]) -> None:
        kubectl("patch", "shadowroute", "shop", "-n", namespace, "--type", "json",
                "-p", json.dumps(ops))  # fmt: skip

    env = "/spec/template/spec/containers/0/env"
    patch([
        {"op": "replace", "path": f"{env}/0/value", "value": "v2"},
        {"op": "add", "path": f"{env}/-", "value": {"name": "HEALTHZ_FAIL", "value": "1"}},
    ])  # fmt: skip
    s = r.wait("rolled back", lambda s: s.get("phase") == "RolledBack", 90)
    assert s["rollbackReason"] == "CheckFailed" and "check smoke" in s["history"][0]["message"]
    assert records(s, s["rolledBackRevision"])["smoke"]["attempts"] == 2
    assert "ci-smoke-token" not in json.dumps(s)
    shown = plugin("status", "shop", "-n", namespace)
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith("smoke "))
    assert "Failed" in line and "attempt 2 of 2" in line and "status 503" in line, shown.stdout
    assert "ci-smoke-token" not in shown.stdout
    # retry reruns the rolled-back revision's checks from the first attempt.
    failed_at = records(s, s["rolledBackRevision"])["smoke"]["startedAt"]
    assert plugin("retry", "shop", "-n", namespace).returncode == 0
    again = r.wait(
        "rolled back again after the retry",
        lambda s: (
            s.get("phase") == "RolledBack"
            and records(s, s["rolledBackRevision"])["smoke"]["startedAt"] != failed_at
        ),
        90,
    )
    assert [h["reason"] for h in again["history"][:2]] == ["CheckFailed", "CheckFailed"]
    assert records(again, again["rolledBackRevision"])["smoke"]["attempts"] == 2
    patch([{"op": "remove", "path": f"{env}/2"}])  # healthy v2: every check passes
    s = r.wait(
        "promoted",
        lambda s: stable(s) and s["history"][0]["outcome"] == "Promoted",
        180,
    )
    got = records(s, s["stableRevision"])
    assert {k: v["state"] for k, v in got.items()} == dict.fromkeys(
        ("smoke", "price", "after"), "Passed"
    ), got
    report = load(hostname("shop", namespace), rate=20, requests=20).run()
    assert report.versions == {"v2": 20}, report.to_text()
