"""A version failing 10 % of its requests against a 5 % error-rate check, over N rollouts.

    python bench/error_rate_bias.py [--runs 24] [--parallel 8] [--rps 50] [--max-seconds 600]

Issue 9, defect 5: at the start of a step the canary's series are born inside the
rate window and Prometheus' rate never counts a series' first value, so an error rate
read there is low; a 10 % version passed a 5 % check in 2 runs of 24. A pass now needs
a window opened half a window after the traffic at the current weight began
(PartialWindow before); a failure counts at once.

Each run is a fresh ShadowRoute (fresh series; provider gatewayapi: the simulator
follows the HTTPRoute's weights) with the same analysis as the end-to-end test
(tests/e2e/test_analysis_bias.py): `error-rate` preset, max 0.05, minRequests 5,
interval 1 s, window 5 s, failureLimit 0, steps 20 % then 50 %. It becomes Stable on a
healthy version, then rolls out the 10 % one (`sim.shadowroute.io/error-rate: "0.1"`).
`--parallel` runs at a time; every status the API server stores is recorded (a
watch), so a passing run overwritten a second later still counts.

Printed: runs, promoted and passed (must both be 0), rolled back, the error rate read
by the run that decided each (min / median / max), and the runs held as PartialWindow
(checks within bounds on a window that cannot back a pass: the under-reads the rule
keeps out) with the values they read. Exits 1 if any run passed or was promoted.
Stops by itself: at `--max-seconds` it stops starting runs, and waits for no run past
it. Runs against $KUBECONFIG (with SHADOWROUTE_PROMETHEUS and
SHADOWROUTE_PROMETHEUS_TARGETS) or the local cluster, started and stopped if down.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import ROOT, open_bench, prometheus_of_cluster, start_operator
from status_log import GROUP, PLURAL, VERSION, StatusLog

LIMIT = 0.05
ENDS = ("RolledBack", "Promoting", "Succeeded")


def body(name: str, image: str, error_rate: str, prometheus: str) -> dict[str, Any]:
    profile = {
        "sim.shadowroute.io/error-rate": error_rate,
        "sim.shadowroute.io/latency-p50": "0.05",
        "sim.shadowroute.io/latency-p95": "0.1",
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ShadowRoute",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": profile},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            "service": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            "strategy": {
                "canary": {
                    "steps": [
                        {"weight": 20, "pause": {"duration": "2s"}},
                        {"weight": 50, "pause": {"duration": "2s"}},
                    ]
                }
            },
            "keepWarm": "3s",
            "progressDeadline": "60s",
            "traffic": {"provider": "gatewayapi", "gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
            "analysis": {
                "prometheus": {"address": prometheus},
                "interval": "1s",
                "window": "5s",
                "failureLimit": 0,
                "metrics": [
                    {"name": "error-rate", "preset": "error-rate", "max": LIMIT, "minRequests": 5}
                ],
            },
        },
    }


@dataclass
class Run:
    name: str
    outcome: str = "undecided"  # promoted | rolled back | undecided
    passed: bool = False
    decided_at: float | None = None
    """The error rate read by the run that decided (rolled back, or the first pass)."""
    held: list[float] = field(default_factory=list)
    """Values read by runs held as PartialWindow."""
    passes: list[float] = field(default_factory=list)
    """Values read by passing runs (there must be none)."""
    runs: int = 0


def value(analysis: dict[str, Any]) -> float | None:
    for m in analysis.get("metrics") or []:
        if m.get("name") == "error-rate":
            return m.get("value")
    return None


def judge(name: str, seen: list[dict[str, Any]]) -> Run:
    run = Run(name)
    new = next((s["canaryRevision"] for s in seen if s.get("canaryRevision")), None)
    runs: dict[str, dict[str, Any]] = {}
    for s in seen:
        a = s.get("analysis") or {}
        if new and a.get("revision") == new and a.get("lastRunAt"):
            runs.setdefault(a["lastRunAt"], a)
    run.runs = len(runs)
    passes = [a for a in runs.values() if a.get("verdict") == "Pass"]
    run.passed = bool(passes)
    run.passes = [v for v in map(value, passes) if v is not None]
    partial = [value(a) for a in runs.values() if a.get("reason") == "PartialWindow"]
    run.held = [v for v in partial if v is not None]
    promoted = any(s.get("phase") in ("Promoting", "Succeeded") for s in seen) or any(
        h.get("outcome") == "Promoted" for s in seen for h in s.get("history") or []
    )
    back = next((s for s in seen if s.get("phase") == "RolledBack"), None)
    if promoted:
        run.outcome = "promoted"
        run.decided_at = value(passes[0]) if passes else None
    elif back is not None and back.get("rollbackReason") == "AnalysisFailed":
        run.outcome = "rolled back"
        run.decided_at = value(back.get("analysis") or {})
    elif back is not None:
        run.outcome = f"rolled back ({back.get('rollbackReason')})"
    return run


def batch(
    custom: Any, log: StatusLog, ns: str, names: list[str], prometheus: str, deadline: float
) -> list[Run]:
    for n in names:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, body(n, "bench/app:1", "0", prometheus)
        )

    def stable(by: dict[str, list[dict[str, Any]]]) -> bool:
        return all(by.get(n) and by[n][-1].get("phase") == "Stable" for n in names)

    def decided(by: dict[str, list[dict[str, Any]]]) -> bool:
        return all(any(s.get("phase") in ENDS for s in by.get(n, [])) for n in names)

    try:
        log.wait(stable, max(min(90, deadline - time.monotonic()), 1), "Stable")
        for n in names:
            bad = body(n, "bench/app:2", "0.1", prometheus)
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, n, {"spec": bad["spec"]}
            )
        log.wait(decided, max(min(120, deadline - time.monotonic()), 1), "every rollout decided")
    except TimeoutError as exc:
        print(f"  {exc}", flush=True)
    results = [judge(n, log.seen(n)) for n in names]
    for n in names:  # the next batch gets the simulator and the operator to itself
        custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, n)
    return results


def figures(values: list[float]) -> str:
    if not values:
        return "-"
    return f"min {min(values):.4f}  median {statistics.median(values):.4f}  max {max(values):.4f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--parallel", type=int, default=8, help="rollouts at a time (default 8)")
    parser.add_argument("--rps", type=float, default=50, help="requests/s per route (default 50)")
    parser.add_argument(
        "--max-seconds", type=float, default=600, help="hard cap on the whole run (default 600)"
    )
    args = parser.parse_args()
    if not 1 <= args.parallel <= 50 or not 0 < args.rps <= 200:
        parser.error("--parallel is 1..50 and --rps 0..200: the load stays bounded")
    started_at = time.monotonic()
    deadline = started_at + args.max_seconds

    bench = open_bench("bench-bias", prometheus=True)
    config, custom, ns = bench.parts()
    prometheus, targets = prometheus_of_cluster()
    sim_log = Path(f"/tmp/{ns}-traffic-sim.log")
    sim = subprocess.Popen(
        [sys.executable, str(ROOT / "hack" / "traffic_sim.py"), "--kubeconfig", config,
         "--namespace", ns, "--targets-dir", targets, "--tick", "0.25", "--rps", f"{args.rps:g}",
         "--max-runtime", f"{args.max_seconds + 60:.0f}"],
        stdout=sim_log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    op = start_operator(config, "--namespace", ns)
    log = StatusLog(config, ns).start()
    results: list[Run] = []
    capped = False
    try:
        print(
            f"error-rate bias: {args.runs} runs, {args.parallel} at a time, {args.rps:g} req/s "
            f"per route, a 10 % version against max {LIMIT}; namespace {ns}",
            flush=True,
        )
        i = 0
        while i < args.runs:
            if time.monotonic() >= deadline:
                capped = True
                break
            names = [f"bias-{j:03d}" for j in range(i + 1, min(i + args.parallel, args.runs) + 1)]
            for r in batch(custom, log, ns, names, prometheus, deadline):
                results.append(r)
                shown = f"{r.decided_at:.4f}" if r.decided_at is not None else "-"
                line = f"  {r.name}: {r.outcome}"
                if r.passed:
                    line += f" (PASSED a run at {', '.join(f'{v:.4f}' for v in r.passes)})"
                line += f", decided on {shown} after {r.runs} runs"
                if r.held:
                    line += f"; held as PartialWindow at {', '.join(f'{v:.4f}' for v in r.held)}"
                print(line, flush=True)
            i += len(names)
    finally:
        log.stop()
        op.stop()
        sim.terminate()
        sim.wait(10)
        bench.close()
    promoted = [r for r in results if r.outcome == "promoted"]
    passed = [r for r in results if r.passed]
    back = [r for r in results if r.outcome == "rolled back"]
    decided = [r.decided_at for r in back if r.decided_at is not None]
    held = [r for r in results if r.held]
    under = [v for r in results for v in r.held if v <= LIMIT]
    other = len(results) - len(back) - len(promoted)
    print(
        f"runs {len(results)}: promoted {len(promoted)}, passed a run {len(passed)}, "
        f"rolled back (AnalysisFailed) {len(back)}, other {other}"
        f"{'; stopped at --max-seconds' if capped else ''} "
        f"({time.monotonic() - started_at:.0f}s)"
    )
    print(f"error rate read by the deciding run: {figures(decided)}")
    if passed:
        print(
            f"error rate read by the passing runs: {figures([v for r in passed for v in r.passes])}"
        )
    print(
        f"runs held as PartialWindow: {len(held)} ({sum(len(r.held) for r in results)} holds; "
        f"{len(under)} read at or under {LIMIT}: {figures(under)})"
    )
    return 1 if promoted or passed else 0


if __name__ == "__main__":
    sys.exit(main())
