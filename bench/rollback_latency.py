"""Breach -> rollback, in seconds, over N runs: on real traffic through the gateway
(default), or on the traffic simulator (--mode sim).

    python bench/rollback_latency.py [--runs 10] [--interval 5s] [--rate 50] [-o text|json]
    python bench/rollback_latency.py --mode sim [--runs 10] [--interval 5s]

Each run makes a fresh ShadowRoute (provider gatewayapi: the weight is the HTTPRoute's),
lets it become Stable, then rolls out a version with 20 % errors (one canary step at
weight 20, analysis: the error-rate preset, max 0.05, minRequests 5, this interval,
window 30s, failureLimit 0), and waits for the rollback.

--mode real (default): the route runs the sample app (examples/app/server.py, run by
the local test kubelet as real processes, scraped by Prometheus every 1 s) behind the
local cluster's Envoy Gateway; the bad version is the same app with VERSION=v2 and
ERROR_RATE=0.2. A load (hack/load.py, --rate req/s, open loop, every request recorded)
sends to the route's hostname through the gateway from before the rollout to 2 s
after the rollback. Per run:

- weight-based (as in sim mode): the first sample of the canary's 5xx series in
  Prometheus -> the HTTPRoute, polled every 50 ms, shows the canary's weight at 0;
- client-seen: the first 5xx a client received (its send time + latency) -> the last
  response a client received from the canary (X-Version: v2), the same way;
- how many requests the canary answered that were sent after the weight was seen at 0
  (what Envoy served while the new weights propagated to it), and how long after.

--mode sim: the traffic simulator (hack/traffic_sim.py, 100 req/s per route) writes
the pods' counters for Prometheus instead; pods are kwok fakes; only the weight-based
figure exists. The figures of docs/benchmarks.md before 2026-12 come from this mode.

All on this host's clock. Also shown: how much of it was waiting for the next analysis
run (from the run's time in status). A fresh route per run, so no run sees another's
samples. Runs against $KUBECONFIG (with SHADOWROUTE_PROMETHEUS, and
SHADOWROUTE_GATEWAY or SHADOWROUTE_PROMETHEUS_TARGETS for the mode) or the local
cluster, started and stopped if down.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
from _common import (
    ROOT,
    gateway_of_cluster,
    gateway_ref,
    open_bench,
    prometheus_of_cluster,
    sample_app,
    start_operator,
    summary,
    wait,
    wait_pods_gone,
)
from load import Load

GROUP, VERSION, PLURAL = "shadowroute.io", "v1alpha1", "shadowroutes"
BAD_VERSION = "v2"


def common_spec(prometheus: str, interval: str) -> dict:
    return {
        "strategy": {"canary": {"steps": [{"weight": 20, "pause": {"duration": "10m"}}]}},
        "progressDeadline": "2m",
        "analysis": {
            "prometheus": {"address": prometheus},
            "interval": interval,
            "window": "30s",
            "failureLimit": 0,
            "metrics": [
                {"name": "error-rate", "preset": "error-rate", "max": 0.05, "minRequests": 5}
            ],
        },
    }


def sim_body(name: str, image: str, error_rate: str, prometheus: str, interval: str) -> dict:
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
            "traffic": {"provider": "gatewayapi", "gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
            **common_spec(prometheus, interval),
        },
    }


def real_body(
    name: str, host: str, version: str, error_rate: str, prometheus: str, interval: str
) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ShadowRoute",
        "metadata": {"name": name},
        "spec": {
            **sample_app(version, {"ERROR_RATE": error_rate}),
            "traffic": {
                "provider": "gatewayapi",
                "gatewayAPI": {"parentRefs": [gateway_ref()], "hostnames": [host]},
            },
            **common_spec(prometheus, interval),
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
        self.last_up: float | None = None
        """The last poll that still saw weight (the write to 0 came after it)."""
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
            asked = time.time()
            w, now = self.weight(), time.time()
            if w is None:
                pass
            elif w > 0:
                self.up = self.up or now
                self.last_up = asked
            elif self.up is not None:
                self.zero = now
            time.sleep(0.05)


def first_bad_sample(prometheus: str, ns: str, name: str) -> float:
    """The scrape time of the first sample of the canary's 5xx series."""
    time.sleep(1.5)  # let the last scrapes land before reading the first one back
    series = query(
        prometheus,
        f'http_requests_total{{namespace="{ns}",service="{name}-canary",code="500"}}[10m]',
        time.time(),
    )
    firsts = [float(v[0][0]) for r in series for v in [r["values"]] if v]
    if not firsts:
        raise RuntimeError(f"{name}: no 5xx sample in Prometheus")
    return min(firsts)


def run_time(s: dict[str, Any]) -> float:
    at = s["analysis"]["lastRunAt"].replace("Z", "+00:00")
    return dt.datetime.fromisoformat(at).timestamp()


def status_of(custom: Any, ns: str, name: str) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name).get("status") or {}


def sim_run(custom: Any, ns: str, i: int, prometheus: str, interval: str) -> dict[str, float]:
    name = f"bench-{i:02d}"
    custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, sim_body(name, "bench/app:1", "0", prometheus, interval)
    )
    wait(lambda: status_of(custom, ns, name).get("phase") == "Stable", 60, f"{name} Stable")
    watch = WeightWatch(custom, ns, name)
    watch.start()
    bad = sim_body(name, "bench/app:2", "0.2", prometheus, interval)
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": bad["spec"]})
    s = wait(
        lambda: (s := status_of(custom, ns, name)).get("phase") == "RolledBack" and s,
        120,
        f"{name} rollback",
    )
    watch.join(10)
    watch.stop.set()
    if watch.zero is None or watch.up is None:
        raise RuntimeError(f"{name}: the weight was never seen going up and back to 0")
    first_bad = first_bad_sample(prometheus, ns, name)
    return {"latency": watch.zero - first_bad, "to_run": run_time(s) - first_bad}


def real_run(
    bench: Any, i: int, prometheus: str, gateway: str, interval: str, rate: float
) -> dict[str, Any]:
    """One rollout of the bad version on real traffic; bounded: about 3 minutes at most."""
    custom, ns = bench.custom, bench.namespace
    name, host = f"bench-{i:02d}", f"bench-{i:02d}.{ns}.bench.test"
    custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, real_body(name, host, "v1", "0", prometheus, interval)
    )
    load: Load | None = None
    try:
        wait(lambda: status_of(custom, ns, name).get("phase") == "Stable", 90, f"{name} Stable")
        load = Load(gateway, rate=rate, duration=240, host=host, record=True, timeout=5).start()
        wait(lambda: load.snapshot().versions.get("v1", 0) >= 5, 60, f"{name} served by v1")
        watch = WeightWatch(custom, ns, name)
        watch.start()
        bad = real_body(name, host, BAD_VERSION, "0.2", prometheus, interval)
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name, {"spec": bad["spec"]}
        )
        s = wait(
            lambda: (s := status_of(custom, ns, name)).get("phase") == "RolledBack" and s,
            120,
            f"{name} rollback",
        )
        watch.join(10)
        watch.stop.set()
        time.sleep(2)  # what Envoy still sends the canary after the weight's write
        load.stop()
        if watch.zero is None or watch.up is None or watch.last_up is None:
            raise RuntimeError(f"{name}: the weight was never seen going up and back to 0")
        first_bad = first_bad_sample(prometheus, ns, name)
    finally:
        if load is not None:
            load.stop()
        custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    records = load.records()
    canary = [r for r in records if r.version == BAD_VERSION]
    fives = [r for r in records if r.status >= 500]
    if not canary or not fives:
        raise RuntimeError(f"{name}: no answer from the canary, or no 5xx, seen by the load")
    first_5xx = min(r.sent_at + r.latency for r in fives)
    last_canary = max(r.sent_at + r.latency for r in canary)
    after_zero = [r for r in canary if r.sent_at >= watch.zero]
    wait_pods_gone(bench.core, ns, name)
    return {
        "latency": watch.zero - first_bad,
        "to_run": run_time(s) - first_bad,
        "client": last_canary - first_5xx,
        "first5xxToFirstBadSample": first_bad - first_5xx,
        "zeroToLastCanaryAnswer": last_canary - watch.zero,
        "writeWindow": watch.zero - watch.last_up,
        "canaryAfterZero": len(after_zero),
        "canaryAfterZeroSeconds": max((r.sent_at - watch.zero for r in after_zero), default=0),
        "canaryAnswers": len(canary),
        "canary5xx": sum(1 for r in fives if r.version == BAD_VERSION),
        "other5xx": sum(1 for r in fives if r.version != BAD_VERSION),
        "noResponse": sum(1 for r in records if r.status == 0),
        "requests": len(records),
    }


def start_sim(config: str, ns: str, targets: str) -> subprocess.Popen[bytes]:
    log = Path(f"/tmp/{ns}-traffic-sim.log")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "hack" / "traffic_sim.py"), "--kubeconfig", config,
         "--namespace", ns, "--targets-dir", targets, "--tick", "0.1", "--rps", "100",
         "--max-runtime", "1800"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["real", "sim"], default="real")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--interval", default="5s", help="spec.analysis.interval (default 5s)")
    parser.add_argument("--rate", type=float, default=50, help="real mode: req/s (default 50)")
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = parser.parse_args()
    text = args.output == "text"

    def say(line: str) -> None:
        if text:
            print(line, flush=True)

    bench = open_bench("bench-rollback", prometheus=True)
    config, custom, ns = bench.parts()
    if args.mode == "sim":
        prometheus, targets = prometheus_of_cluster()
        sim: subprocess.Popen[bytes] | None = start_sim(config, ns, targets)
    else:
        prometheus, _ = prometheus_of_cluster()
        gateway, sim = gateway_of_cluster(), None
    op = start_operator(config, "--namespace", ns)
    results: list[dict[str, Any]] = []
    queries = runs = 0.0
    try:
        say(
            f"rollback latency ({args.mode} traffic): {args.runs} runs, interval "
            f"{args.interval}, namespace {ns}"
        )
        for i in range(1, args.runs + 1):
            if args.mode == "sim":
                r = sim_run(custom, ns, i, prometheus, args.interval)
            else:
                r = real_run(bench, i, prometheus, gateway, args.interval, args.rate)
            results.append(r)
            line = (
                f"  run {i:2d}: {r['latency']:5.2f}s from the first bad sample to weight 0 "
                f"({r['to_run']:4.2f}s of it waiting for the analysis run)"
            )
            if args.mode == "real":
                line += (
                    f"; client-seen {r['client']:5.2f}s from the first 5xx to the last "
                    f"canary answer; {r['canaryAfterZero']} canary answers sent after "
                    f"weight 0 (last {r['zeroToLastCanaryAnswer']:+.3f}s after it)"
                )
            say(line)
        queries = op.sum("shadowroute_prometheus_query_duration_seconds_count")
        runs = op.sum("shadowroute_analysis_runs_total{")
    finally:
        op.stop()
        if sim is not None:
            sim.terminate()
            sim.wait(10)
        bench.close()
    keys = ["latency", "to_run"]
    if args.mode == "real":
        keys += ["client", "first5xxToFirstBadSample", "zeroToLastCanaryAnswer"]
        keys += ["canaryAfterZero", "writeWindow"]
    figures = {k: summary([r[k] for r in results]) for k in keys}
    if not text:
        doc = {
            "mode": args.mode,
            "runs": len(results),
            "interval": args.interval,
            "rate": args.rate if args.mode == "real" else 100,
            "summary": figures,
            "queriesPerAnalysisRun": round(queries / runs, 2) if runs else None,
            "results": [{k: round(v, 3) for k, v in r.items()} for r in results],
        }
        print(json.dumps(doc, indent=2))
        return 0

    def line(key: str, what: str, unit: str = "s") -> str:
        f = figures[key]
        return (
            f"{what} over {len(results)} runs: min {f['min']:.2f}{unit}  "
            f"median {f['median']:.2f}{unit}  max {f['max']:.2f}{unit}"
        )

    print(
        line("latency", "first bad sample -> canary weight 0")
        + f" (goal with interval {args.interval}: at most 6s)"
    )
    if args.mode == "real":
        print(line("client", "client-seen: first 5xx -> last canary answer"))
        print(line("canaryAfterZero", "canary answers sent after weight 0", ""))
        print(line("zeroToLastCanaryAnswer", "weight 0 seen -> last canary answer"))
    if runs:
        print(
            f"Prometheus queries per analysis run: {queries / runs:.1f} "
            f"({queries:.0f} queries in {runs:.0f} runs; one metric with minRequests: 2 queries)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
