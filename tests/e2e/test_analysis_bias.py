"""Issue 9, defect 5, end to end: a version failing 10 % of its requests never passes a
5 % error-rate check, over several rollouts at once.

The real operator asks the real Prometheus (scrape interval 1 s), which scrapes the
traffic simulator, which follows the HTTPRoute weights the operator writes. At the
start of a step the canary's series are born inside the window, and Prometheus' rate
never counts a series' first value: a 10 % version could read under 5 % there and pass
(2 runs in 24 did). A pass now needs a window opened half a window after the traffic
at the current weight began (PartialWindow before); a failure counts at once.

Every status the API server stores for these routes is recorded (a watch, not a poll:
a pass overwritten a second later by a failure would be missed by a poll), and none
may show a passing run. `SHADOWROUTE_BIAS_ROUTES` (default 8) routes roll out at once;
`bench/error_rate_bias.py` is the long version.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from status_log import StatusLog

from .conftest import Cluster, KubectlFn, OperatorProcess
from .test_analysis import ERRORS, GATEWAY, analysed, condition, release
from .test_rollout import Route, stable

pytestmark = pytest.mark.e2e

ROUTES = int(os.environ.get("SHADOWROUTE_BIAS_ROUTES", "8"))
LIMIT = ERRORS["max"]


@pytest.fixture
def status_log(cluster: Cluster, namespace: str) -> Iterator[StatusLog]:
    log = StatusLog(cluster.kubeconfig, namespace).start()
    yield log
    log.stop()


def error_rate(s: dict[str, Any]) -> dict[str, Any]:
    metrics = (s.get("analysis") or {}).get("metrics") or []
    return next((m for m in metrics if m["name"] == "error-rate"), {})


def runs_of(seen: list[dict[str, Any]], revision: str) -> list[dict[str, Any]]:
    """The distinct analysis runs of `revision` in these statuses, oldest first."""
    runs: dict[str, dict[str, Any]] = {}
    for s in seen:
        a = s.get("analysis") or {}
        if a.get("revision") == revision and a.get("lastRunAt"):
            runs.setdefault(a["lastRunAt"], a)
    return list(runs.values())


def summary(name: str, seen: list[dict[str, Any]], revision: str) -> dict[str, Any]:
    runs = runs_of(seen, revision)

    def value(a: dict[str, Any]) -> float | None:
        return error_rate({"analysis": a}).get("value")

    return {
        "route": name,
        "statuses": len(seen),
        "runs": [(a.get("verdict"), a.get("reason"), value(a)) for a in runs],
        "held on a partial window": [value(a) for a in runs if a.get("reason") == "PartialWindow"],
    }


def line(info: dict[str, Any]) -> str:
    runs = ", ".join(
        f"{reason}" + (f" {value:.4f}" if value is not None else "")
        for _, reason, value in info["runs"]
    )
    return f"{info['route']}: {info['statuses']} statuses; runs: {runs}"


def test_a_ten_percent_version_never_passes_a_five_percent_check(
    kubectl: KubectlFn,
    namespace: str,
    operator: OperatorProcess,
    simulator,
    prometheus: str,
    status_log: StatusLog,
    tmp_path: Path,
) -> None:
    routes = []
    for i in range(ROUTES):
        body = analysed(f"bias-{i}", prometheus, [ERRORS], failure_limit=0)
        body["spec"]["traffic"] = GATEWAY  # the simulator follows the HTTPRoute's weights
        r = Route(kubectl, namespace, body)
        r.apply()
        routes.append(r)
    names = [r.name for r in routes]
    at_rest = status_log.wait(
        lambda by: all(by.get(n) and stable(by[n][-1]) for n in names), 90, "every route Stable"
    )
    old = {n: at_rest[n][-1]["stableRevision"] for n in names}
    for r in routes:
        release(r, "registry.example/app:2", **{"error-rate": "0.1"})

    def decided(by: dict[str, list[dict[str, Any]]]) -> bool:
        """Each rollout rolled back, or promoted (which the assertions below refuse)."""
        ends = ("RolledBack", "Promoting", "Succeeded")
        return all(any(s.get("phase") in ends for s in by[n]) for n in names)

    seen = status_log.wait(decided, 120, "every rollout decided")
    seen = {n: seen[n] for n in names}
    (tmp_path / "statuses.json").write_text(json.dumps(seen, indent=1))
    report = []
    for n in names:
        new = next(s["canaryRevision"] for s in seen[n] if s.get("canaryRevision"))
        report.append(summary(n, seen[n], new))
    shown = "\n".join(line(info) for info in report)
    print(shown)

    for n, info in zip(names, report, strict=True):
        new = next(s["canaryRevision"] for s in seen[n] if s.get("canaryRevision"))
        during = [s for s in seen[n] if s.get("canaryRevision") == new]
        assert during, f"{n}: no status of the rollout was seen\n{shown}"
        # Never a passing run, never AnalysisHealthy True, never a step further.
        passes = [a for a in runs_of(seen[n], new) if a.get("verdict") == "Pass"]
        assert not passes, f"{n}: a 10 % version passed a 5 % check: {passes}\n{shown}"
        assert all(condition(s).get("status") != "True" for s in seen[n]), shown
        assert all(s.get("currentStep", 0) == 0 for s in during), shown
        assert all(s.get("phase") not in ("Promoting", "Succeeded") for s in seen[n]), shown
        assert all(h["outcome"] != "Promoted" for s in seen[n] for h in s.get("history") or [])
        # It ends rolled back by its analysis, on a value above the limit.
        final = seen[n][-1]
        assert final["phase"] == "RolledBack" and final["rollbackReason"] == "AnalysisFailed"
        assert final["canaryWeight"] == 0 and final["stableRevision"] == old[n]
        assert final["history"][0]["reason"] == "AnalysisFailed"
        m = error_rate(final)
        assert m["verdict"] == "Fail" and m["value"] > LIMIT, (n, m)
        # Every run within bounds was held as PartialWindow: the evidence the rule kept
        # out (an under-read of the series born at the step's start), never a pass.
        for verdict, reason, value in info["runs"]:
            if value is not None and value <= LIMIT:
                assert (verdict, reason) == ("Inconclusive", "PartialWindow"), (n, info)
