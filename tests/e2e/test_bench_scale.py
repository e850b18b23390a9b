"""bench/scale.py end to end, small: 20 routes, a short rest, one breach, three routes
in analysis. It checks that every figure is printed, not what the figures are
(performance figures are the benchmark's business, never timed asserts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIGURES = (
    "floor create -> primary available: 20/20 ready; p50 ",
    "apply -> Ready=True: 20/20 ready; p50 ",
    "ratio to the floor (all ready): ",
    "operator writes to reach Ready and settle: ",
    "at rest, at the API server over ",
    "background without the operator",
    "reads beyond the background: ",
    "operator at rest: ",
    "operator RSS at rest: ",
    "breach -> weight 0 while 20 routes idle: median ",
    "Prometheus queries per tick with 3 routes in analysis",
    "restart (traced): 20 routes reconciled",
    "memory by file (/debug/memory):",
    "memory by package (/debug/memory):",
)


def test_the_scale_bench_prints_every_figure(cluster, crds_installed) -> None:
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
    if cluster.prometheus and cluster.prometheus_targets:
        env["SHADOWROUTE_PROMETHEUS"] = cluster.prometheus
        env["SHADOWROUTE_PROMETHEUS_TARGETS"] = str(cluster.prometheus_targets)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), "--routes", "20", "--rest", "6",
         "--resync", "3", "--baseline", "3", "--analysing", "3", "--breaches", "1",
         "--interval", "2s", "--timeout", "170", "--trace-frames", "1"],
        env=env, capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    for figure in FIGURES:
        assert figure in out, f"missing {figure!r} in:\n{out}"
    tops = out.split("memory by file (/debug/memory):", 1)[1].splitlines()
    assert tops[1].strip().startswith("tracemalloc: traced") and "top 15 of " in tops[2]


def test_the_scale_bench_refuses_more_routes_than_the_nodes_hold_pods(cluster, crds_installed):
    """Each idle route holds a pod: past the nodes' room the rest would stay Pending and
    never get Ready, a run of half an hour that could not end. It says so at once."""
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
    if cluster.prometheus and cluster.prometheus_targets:
        env["SHADOWROUTE_PROMETHEUS"] = cluster.prometheus
        env["SHADOWROUTE_PROMETHEUS_TARGETS"] = str(cluster.prometheus_targets)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), "--routes", "1000000",
         "--timeout", "60"],
        env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 2, f"{done.stdout}\n{done.stderr}"
    assert "--routes 1000000 needs 1000000 pods at once" in done.stderr, done.stderr
    assert "ratio to the floor" not in done.stdout and "created" not in done.stdout
