"""The plugin and acceptance checks: the CHECKS section of `status` (the records of
the revision that matters, and the declared checks that have none) and the checks a
`plan` says a rollout would run — never with a header's value."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import re
from typing import Any

import pytest
from shadowroute.cli import plan, view
from shadowroute.cli.main import App, build_parser

from .test_cli import NOW, body, live, stable_world

TOKEN = "Bearer s3cr3t-t0ken-do-not-print"
LITERAL = "literal-v4lue-do-not-print"


def http_check(name: str, when: str, **http: Any) -> dict[str, Any]:
    return {"name": name, "when": when, "http": {"path": "/healthz", **http}}


SMOKE = http_check(
    "smoke",
    "BeforeTraffic",
    headers=[
        {"name": "authorization", "secretKeyRef": {"name": "web-token", "key": "token"}},
        {"name": "x-env", "value": LITERAL},
    ],
)
ORDERS = {**http_check("orders", "EachStep"), "retries": 2}
SUITE = {
    "name": "suite",
    "when": "BeforePromotion",
    "timeout": "10m",
    "retries": 1,
    "job": {"template": {"spec": {"containers": [{"name": "t", "image": "suite:1.4"}]}}},
}
CHECKS = [SMOKE, ORDERS, SUITE]


def record(name: str, hook: str, revision: str, state: str, **rest: Any) -> dict[str, Any]:
    return {"name": name, "hook": hook, "revision": revision, "state": state, **rest}


def checks_section(text: str) -> list[str]:
    """The CHECKS section's lines: its header up to the blank line after it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("CHECKS "))
    end = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))
    return lines[start:end]


def row(section: list[str], name: str, hook: str) -> str:
    """The one line of a check at a hook (``EachStep step 2``)."""
    found = [line for line in section if re.match(rf"{name}\s+{hook}(\s|$)", line)]
    assert len(found) == 1, section
    return found[0]


# --------------------------------------------------------------------------- status


def rolling_out() -> dict[str, Any]:
    return live(
        {
            "phase": "Progressing",
            "stage": "Progressing",
            "currentStep": 1,
            "stableRevision": "aaa",
            "canaryRevision": "bbb",
            "checks": [
                record("smoke", "BeforeTraffic", "aaa", "Failed", attempts=1, message="old"),
                record("smoke", "BeforeTraffic", "bbb", "Passed", attempts=1,
                       message="GET '/healthz': status 200 in 0.012s"),
                record("orders", "EachStep", "bbb", "Passed", attempts=2, step=0,
                       message="GET '/healthz': status 200 in 0.02s"),
                record("orders", "EachStep", "bbb", "Running", attempts=1, step=1,
                       startedAt="2026-11-25T04:59:50Z"),
            ],
        },
        checks=CHECKS,
    )  # fmt: skip


def test_status_shows_the_canary_revisions_checks() -> None:
    section = checks_section(view.status_view(rolling_out(), [], NOW))
    assert section[0] == "CHECKS     revision bbb (canary): 2 passed, 1 running, 1 not run"
    assert section[1].split() == ["CHECK", "HOOK", "STATE", "ATTEMPTS", "MESSAGE"]
    assert re.fullmatch(
        r"smoke\s+BeforeTraffic\s+Passed\s+attempt 1 of 1\s+GET '/healthz': status 200 in 0.012s",
        row(section, "smoke", "BeforeTraffic"),
    )
    assert not any("old" in line for line in section), "another revision's record is not shown"


def test_status_shows_an_each_step_record_with_its_step_counted_from_1() -> None:
    section = checks_section(view.status_view(rolling_out(), [], NOW))
    assert re.fullmatch(
        r"orders\s+EachStep step 1\s+Passed\s+attempt 2 of 3\s+GET '/healthz': status 200 in 0.02s",
        row(section, "orders", "EachStep step 1"),
    )
    assert re.fullmatch(
        r"orders\s+EachStep step 2\s+Running\s+attempt 1 of 3",
        row(section, "orders", "EachStep step 2"),
    )


def test_status_shows_a_declared_check_with_no_record_as_not_run() -> None:
    section = checks_section(view.status_view(rolling_out(), [], NOW))
    assert re.fullmatch(
        r"suite\s+BeforePromotion\s+not run", row(section, "suite", "BeforePromotion")
    )
    names = [line.split()[0] for line in section[2:]]
    assert names == ["smoke", "orders", "orders", "suite"], "in the order they run"


def test_status_shows_records_of_a_check_no_longer_declared_without_a_budget() -> None:
    obj = rolling_out()
    obj["spec"]["checks"] = [SMOKE]
    section = checks_section(view.status_view(obj, [], NOW))
    assert re.fullmatch(
        r"orders\s+EachStep step 2\s+Running\s+attempt 1", row(section, "orders", "EachStep step 2")
    )


@pytest.mark.parametrize(
    ("status", "shown", "which"),
    [
        ({"phase": "RolledBack", "stage": "RolledBack"}, "ccc", "rolled back"),
        ({"phase": "Paused", "stage": "RolledBack"}, "ccc", "rolled back"),
        ({"phase": "Stable", "stage": "Stable"}, "aaa", "stable"),
        ({"phase": "Progressing", "canaryRevision": "bbb"}, "bbb", "canary"),
    ],
)
def test_status_picks_the_revision_that_matters(status, shown, which) -> None:
    records = [
        record("smoke", "BeforeTraffic", rev, "Failed", attempts=1, message=f"said by {rev}")
        for rev in ("aaa", "bbb", "ccc")
    ]
    obj = live(
        {"stableRevision": "aaa", "rolledBackRevision": "ccc", "checks": records, **status},
        checks=CHECKS,
    )
    section = checks_section(view.status_view(obj, [], NOW))
    assert section[0].startswith(f"CHECKS     revision {shown} ({which}): 1 failed")
    assert f"said by {shown}" in row(section, "smoke", "BeforeTraffic")
    assert sum("said by" in line for line in section) == 1


def test_status_cuts_and_folds_a_long_message() -> None:
    obj = rolling_out()
    obj["status"]["checks"][1]["message"] = "line one\n  line two " + "x" * 500
    line = row(checks_section(view.status_view(obj, [], NOW)), "smoke", "BeforeTraffic")
    message = line.split("attempt 1 of 1")[1].strip()
    assert message.startswith("line one line two x") and message.endswith("…")
    assert len(message) == view.MAX_MESSAGE_SHOWN


def test_status_without_checks_has_no_checks_section() -> None:
    text = view.status_view(live({"phase": "Stable", "stableRevision": "aaa"}), [], NOW)
    assert "CHECKS" not in text


def test_status_with_records_but_none_for_the_revision() -> None:
    obj = live(
        {"phase": "Stable", "stableRevision": "aaa",
         "checks": [record("smoke", "BeforeTraffic", "old", "Passed", attempts=1)]}
    )  # fmt: skip
    section = checks_section(view.status_view(obj, [], NOW))
    assert section == ["CHECKS     revision aaa (stable)", "no check has run for this revision"]


def test_status_never_prints_a_header_value() -> None:
    obj = rolling_out()
    text = view.status_view(obj, [], NOW)
    assert LITERAL not in text and "web-token" not in text


class FakeCluster:
    default_namespace = "shop"

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj

    def get_route(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.obj)

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return []


def test_status_json_has_the_check_records_as_they_are() -> None:
    obj = rolling_out()
    out = io.StringIO()
    app = App(build_parser().parse_args(["status", "web", "-o", "json"]), out, io.StringIO())
    app._cluster = FakeCluster(obj)  # type: ignore[assignment]
    assert app.cmd_status() == 0
    assert json.loads(out.getvalue())["object"]["status"]["checks"] == obj["status"]["checks"]


# --------------------------------------------------------------------------- plan


def new_image_plan(checks: list[dict[str, Any]]) -> plan.Plan:
    obj, children = stable_world()
    return plan.make_plan(body("app:2", checks=checks), "shop", obj, children, NOW)


def test_plan_says_which_checks_a_rollout_runs() -> None:
    p = new_image_plan(CHECKS)
    assert p.checks == [
        "check smoke: BeforeTraffic — http GET /healthz on port 80 with header authorization "
        "from Secret web-token/token, header x-env (literal) (expects 2xx, timeout 30s, "
        "no retries)",
        "check orders: EachStep — http GET /healthz on port 80 (expects 2xx, timeout 30s, "
        "2 retries)",
        "check suite: BeforePromotion — job (image suite:1.4, timeout 10m, 1 retry)",
    ]
    lines = plan.render(p).splitlines()
    at = lines.index("and run these acceptance checks:")
    assert lines[at - 1].startswith("  5. Stable")
    assert lines[at + 1 : at + 4] == [f"  {c}" for c in p.checks]


def test_plan_describes_an_http_checks_expectations() -> None:
    check = {
        **http_check(
            "orders",
            "AfterPromotion",
            method="POST",
            path="/orders",
            port=8080,
            body='{"sku": 1}',
            expect={
                "statusCodes": [201, 200],
                "bodyContains": "created",
                "json": [{"path": "body.id", "value": 7}],
                "maxLatency": "200ms",
            },
        ),
        "timeout": "5s",
        "retries": 1,
    }
    assert new_image_plan([check]).checks == [
        "check orders: AfterPromotion — http POST /orders on port 8080, a body of 10 bytes "
        '(expects 200 or 201, a body containing "created", body.id = 7, within 200ms, '
        "timeout 5s, 1 retry)"
    ]


def test_plan_port_is_the_routed_one_when_unset() -> None:
    manifest = body("app:2", checks=[ORDERS])
    manifest["spec"]["service"]["ports"] = [{"port": 8443}]
    p = plan.make_plan(manifest, "shop", None, {}, NOW)
    assert "http GET /healthz on port 8443 " in p.checks[0]


def test_plan_never_prints_a_secret_header() -> None:
    """It names the Secret and key, and reads no Secret (it has no cluster to ask)."""
    p = new_image_plan([SMOKE])
    text = plan.render(p)
    assert "  check smoke: BeforeTraffic — http GET /healthz on port 80 with header " in text
    assert "header authorization from Secret web-token/token, " in text
    assert "header authorization (literal)" not in text and TOKEN not in text


def test_plan_never_prints_a_literal_header_value() -> None:
    """Not in the check's line, nor in the spec changes, in text or JSON."""
    p = new_image_plan([SMOKE])
    text = plan.render(p)
    assert "header x-env (literal)" in text
    assert "spec.checks[0].http.headers[1].value: (none) -> (literal)" in p.spec_changes
    assert LITERAL not in text
    assert LITERAL not in json.dumps({**dataclasses.asdict(p), "changes": p.changes})


def test_plan_of_a_changed_literal_says_it_changed_but_not_what_it_is() -> None:
    obj, children = stable_world()
    obj["spec"]["checks"] = [SMOKE]
    changed = copy.deepcopy(SMOKE)
    changed["http"]["headers"][1]["value"] = TOKEN
    p = plan.make_plan(body(checks=[changed]), "shop", obj, children, NOW)
    assert p.spec_changes == ["spec.checks[0].http.headers[1].value: (literal) -> (literal)"]
    text = plan.render(p) + json.dumps(dataclasses.asdict(p), default=str)
    assert TOKEN not in text and LITERAL not in text
    same = plan.make_plan(body(checks=[SMOKE]), "shop", obj, children, NOW)
    assert same.spec_changes == [], "an unchanged literal is not a change"


def test_plan_lists_checks_only_for_a_rollout() -> None:
    obj, children = stable_world()
    obj["spec"]["checks"] = [SMOKE]
    p = plan.make_plan(body(replicas=6, checks=[SMOKE]), "shop", obj, children, NOW)
    assert not p.new_revision
    assert "acceptance checks" not in plan.render(p)
    assert p.checks, "JSON says what a rollout would run, as it gives the stages"


# --------------------------------------------------------------------------- docs


def test_the_docs_examples_are_what_the_plugin_prints() -> None:
    from .test_cli import ROOT

    doc = (ROOT / "docs" / "operations.md").read_text()
    declared = [
        {**SMOKE, "http": {**SMOKE["http"], "headers": [SMOKE["http"]["headers"][0],
                                                        {"name": "x-env", "value": "staging"}]}},
        {**http_check("cart", "EachStep", path="/cart",
                      expect={"json": [{"path": "body.total", "value": 0}]}), "retries": 2},
        {**SUITE, "name": "e2e", "job": {"template": {"spec": {"containers": [
            {"name": "t", "image": "shop/e2e:1.4"}]}}}},
    ]  # fmt: skip
    rev = "5d8c9f7b6a"
    obj = live(
        {"phase": "Progressing", "stage": "Progressing", "currentStep": 1, "canaryRevision": rev,
         "stableRevision": "7ec47a73ca", "checks": [
            record("smoke", "BeforeTraffic", rev, "Passed", attempts=1,
                   message="GET '/healthz': status 200 in 0.012s"),
            record("cart", "EachStep", rev, "Passed", attempts=2, step=0,
                   message="GET '/cart': status 200 in 0.031s"),
            record("cart", "EachStep", rev, "Pending", attempts=1, step=1,
                   message="GET '/cart': body.total is 3, expected 0"),
        ]},
        checks=declared,
    )  # fmt: skip
    section = "\n".join(checks_section(view.status_view(obj, [], NOW)))
    assert f"```\n{section}\n```" in doc
    assert "\n".join(f"  {c}" for c in new_image_plan(declared).checks) in doc
    assert f"cut to {view.MAX_MESSAGE_SHOWN} characters" in doc
