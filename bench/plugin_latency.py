"""How long a `kubectl shadowroute` call takes, next to `kubectl get sr`.

    python bench/plugin_latency.py [--calls 15] [--no-operator] [-o text|json]

Makes a namespace and one ShadowRoute (provider none: no shadow, so `diff` reads the
route and exits 3 saying it compares nothing), runs the operator until the route is
Stable (so `status` and `history` show conditions and Events; --no-operator skips it),
stops the operator, then times N calls of each command, one after the other, as a user
runs them: `kubectl shadowroute ...` found on PATH, a new process each time. Per
command: median and p90 of the wall time, and the median CPU time (user + system) of
the call, which the other processes on a shared machine do not inflate. The exit code
of each command is printed too.

The calls run without PYTHONDONTWRITEBYTECODE, so after the first call Python loads
the package's compiled bytecode, as it does from an installed wheel. Runs against
$KUBECONFIG or the local cluster, started and stopped if down. Figures only, no
assertion.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from _common import open_bench, percentile, start_operator, wait

BIN = Path(sys.executable).parent


def route(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "shadowroute.io/v1alpha1",
        "kind": "ShadowRoute",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
            },
            "service": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            "strategy": {
                "canary": {"steps": [{"weight": 50, "pause": {"duration": "5s"}}]},
            },
        },
    }


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the child, exit code) of one call."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=15, help="calls per command")
    ap.add_argument("--no-operator", action="store_true", help="do not make the route Stable")
    ap.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = ap.parse_args()

    bench = open_bench("plugin-latency")
    config, custom, ns = bench.parts()
    name = "web"
    try:
        body = route(name)
        custom.create_namespaced_custom_object(
            "shadowroute.io", "v1alpha1", ns, "shadowroutes", body
        )
        if not args.no_operator:
            operator = start_operator(config, "--namespace", ns)
            try:
                wait(
                    lambda: (
                        (
                            custom.get_namespaced_custom_object(
                                "shadowroute.io", "v1alpha1", ns, "shadowroutes", name
                            ).get("status")
                            or {}
                        ).get("phase")
                        == "Stable"
                    ),
                    180,
                    "the route to be Stable",
                )
            finally:
                operator.stop()
        manifest = Path(tempfile.mkdtemp(prefix="plugin-latency-")) / "route.yaml"
        manifest.write_text(yaml.safe_dump(body))

        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"KUBECONFIG": config, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}
        kubectl = str(BIN / "kubectl")
        commands = {
            "kubectl get sr": [kubectl, "get", "sr", "-n", ns],
            "shadowroute get": [kubectl, "shadowroute", "get", "-n", ns],
            "shadowroute get NAME": [kubectl, "shadowroute", "get", name, "-n", ns],
            "shadowroute status": [kubectl, "shadowroute", "status", name, "-n", ns],
            "shadowroute history": [kubectl, "shadowroute", "history", name, "-n", ns],
            "shadowroute diff": [kubectl, "shadowroute", "diff", name, "-n", ns],
            "shadowroute plan": [kubectl, "shadowroute", "plan", "-f", str(manifest), "-n", ns],
            "kubectl-shadowroute --version": [str(BIN / "kubectl-shadowroute"), "--version"],
        }
        for argv in commands.values():  # warm: bytecode written, files in the page cache
            timed(argv, env)
        results = {}
        for label, argv in commands.items():
            runs = [timed(argv, env) for _ in range(args.calls)]
            walls = [r[0] for r in runs]
            results[label] = {
                "median": round(statistics.median(walls), 3),
                "p90": round(percentile(walls, 90), 3),
                "cpu_median": round(statistics.median(r[1] for r in runs), 3),
                "exit": sorted({r[2] for r in runs}),
            }
    finally:
        bench.close()

    load = os.getloadavg()[0]
    if args.output == "json":
        print(json.dumps({"calls": args.calls, "load1": load, "commands": results}, indent=2))
        return
    print(f"{args.calls} calls each, load average {load:.1f} on {os.cpu_count()} cores")
    print(f"{'command':32} {'median':>8} {'p90':>8} {'cpu':>8}  exit")
    for label, r in results.items():
        print(
            f"{label:32} {r['median']:7.3f}s {r['p90']:7.3f}s {r['cpu_median']:7.3f}s  "
            + ",".join(map(str, r["exit"]))
        )


if __name__ == "__main__":
    main()
