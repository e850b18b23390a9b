"""Seconds from the first bad sample Prometheus scraped to canary weight 0, over N runs.

    python bench/rollback_latency.py [--runs 10] [--interval 5s]

Each run makes a ShadowRoute (provider gatewayapi: the weight is the HTTPRoute's),
lets it become Stable, then rolls out a version with 20 % errors. The traffic
simulator sends it requests once the canary has weight; Prometheus (scrape interval
1 s) records the 5xx counter; the operator's analysis (this interval, failureLimit 0)
sees it and rolls back.

- first bad sample: the earliest sample of the canary's 5xx series in Prometheus (its
  scrape timestamp), read back from Prometheus after the run;
- weight 0: when the HTTPRoute, polled every 50 ms, shows the canary's weight back at 0.

Both on this host's clock. Also shown: how much of it was waiting for the next
analysis run (from the run's time in status). A fresh route per run, so no run sees
another's samples. Runs against $KUBECONFIG (with SHADOWROUTE_PROMETHEUS and
SHADOWROUTE_PROMETHEUS_TARGETS) or the local cluster, started and stopped if down.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
from _common import ROOT, open_bench, prometheus_of_cluster, start_operator

GROUP, VERSION, PLURAL = "shadowroute.io", "v1alpha1", "shadowroutes"


def body(name: str, image: str, error_rate: str, prometheus: str, interval: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ShadowRoute",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"annotations": {"sim.shadowroute.io/error-rate": error_rate}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            "service": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            "strategy": {"canary": {"steps": [{"weight": 20, "pause": {"duration": "10m"}}]}},
            "progressDeadline": "2m",
            "traffic": {"provider": "gatewayapi", "gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
            "analysis": {
                "prometheus": {"address": prometheus},
                "interval": interval,
                "window": "30s",
                "failureLimit": 0,
                "metrics": [
                    {"name": "error-rate", "preset": "error-rate", "max": 0.05, "minRequests": 5}
                ],
            },
        },
    }


def query(prometheus: str, promql: str, at: float) -> Any:
    data = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"}).encode()
    with urllib.request.urlopen(f"{prometheus}/api/v1/query", data, timeout=10) as r:
        return json.loads(r.read())["data"]["result"]


class WeightWatch(threading.Thread):
    """Polls the HTTPRoute: when the canary first gets weight, and when it is back at 0."""

    def __init__(self, custom: Any, ns: str, name: str) -> None:
        super().__init__(daemon=True)
        self.custom, self.ns, self.name = custom, ns, name
        self.up: float | None = None
        self.zero: float | None = None
        self.stop = threading.Event()

    def weight(self) -> int | None:
        """The canary's weight; None when the API server did not answer (a transient
        error must not read as "back at 0" and shorten the measured latency)."""
        try:
            route = self.custom.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", self.ns, "httproutes", self.name
            )
        except kubernetes.client.exceptions.ApiException as exc:
            return 0 if exc.status == 404 else None
        except OSError:
            return None
        for rule in route["spec"].get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                if ref["name"] == f"{self.name}-canary":
                    return int(ref.get("weight", 1))
        return 0

    def run(self) -> None:
        while not self.stop.is_set() and self.zero is None:
            w, now = self.weight(), time.time()
            if w is None:
                pass
            elif w > 0 and self.up is None:
                self.up = now
            elif w == 0 and self.up is not None:
                self.zero = now
            time.sleep(0.05)


def wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def one_run(custom: Any, ns: str, i: int, prometheus: str, interval: str) -> dict[str, float]:
    name = f"bench-{i:02d}"
    custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, body(name, "bench/app:1", "0", prometheus, interval)
    )

    def status() -> dict[str, Any]:
        return (
            custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name).get("status")
            or {}
        )

    wait(lambda: status().get("phase") == "Stable", 60, f"{name} Stable")
    watch = WeightWatch(custom, ns, name)
    watch.start()
    bad = body(name, "bench/app:2", "0.2", prometheus, interval)
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": bad["spec"]})
    s = wait(lambda: (s := status()).get("phase") == "RolledBack" and s, 120, f"{name} rollback")
    watch.join(10)
    watch.stop.set()
    if watch.zero is None or watch.up is None:
        raise RuntimeError(f"{name}: the weight was never seen going up and back to 0")
    time.sleep(1.5)  # let the last scrapes land before reading the first one back
    series = query(
        prometheus,
        f'http_requests_total{{namespace="{ns}",service="{name}-canary",code="500"}}[10m]',
        time.time(),
    )
    firsts = [float(v[0][0]) for r in series for v in [r["values"]] if v]
    if not firsts:
        raise RuntimeError(f"{name}: no 5xx sample in Prometheus")
    first_bad = min(firsts)
    run_at = dt.datetime.fromisoformat(s["analysis"]["lastRunAt"].replace("Z", "+00:00"))
    return {
        "latency": watch.zero - first_bad,
        "to_run": run_at.timestamp() - first_bad,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--interval", default="5s", help="spec.analysis.interval (default 5s)")
    args = parser.parse_args()

    bench = open_bench("bench-rollback")
    config, custom, ns = bench.parts()
    prometheus, targets = prometheus_of_cluster()
    log = Path(f"/tmp/{ns}-traffic-sim.log")
    sim = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "hack" / "traffic_sim.py"),
            "--kubeconfig",
            config,
            "--namespace",
            ns,
            "--targets-dir",
            targets,
            "--tick",
            "0.1",
            "--rps",
            "100",
            "--max-runtime",
            "1800",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    op = start_operator(config, "--namespace", ns)
    results: list[dict[str, float]] = []
    queries = runs = 0.0
    try:
        print(f"rollback latency: {args.runs} runs, interval {args.interval}, namespace {ns}")
        for i in range(1, args.runs + 1):
            r = one_run(custom, ns, i, prometheus, args.interval)
            results.append(r)
            print(
                f"  run {i:2d}: {r['latency']:5.2f}s from the first bad sample to weight 0 "
                f"({r['to_run']:4.2f}s of it waiting for the analysis run)",
                flush=True,
            )
        queries = op.sum("shadowroute_prometheus_query_duration_seconds_count")
        runs = op.sum("shadowroute_analysis_runs_total{")
    finally:
        op.stop()
        sim.terminate()
        sim.wait(10)
        bench.close()
    lat = [r["latency"] for r in results]
    print(
        f"first bad sample -> canary weight 0 over {len(lat)} runs: "
        f"min {min(lat):.2f}s  median {statistics.median(lat):.2f}s  max {max(lat):.2f}s "
        f"(goal with interval {args.interval}: at most 6s)"
    )
    if runs:
        print(
            f"Prometheus queries per analysis run: {queries / runs:.1f} "
            f"({queries:.0f} queries in {runs:.0f} runs; one metric with minRequests: 2 queries)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
