"""Apply N ShadowRoutes at once; print p50/p99 seconds from each create to Ready=True,
and what the operator wrote, at the peak and at rest.

    python bench/apply_to_ready.py [--routes 100] [--replicas 2]

Runs against $KUBECONFIG, or the local cluster (started and stopped if it was down).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import kubernetes
from _common import OperatorProcess, open_bench, percentile, start_operator


def body(name: str, replicas: int) -> dict:
    return {
        "apiVersion": "shadowroute.io/v1alpha1",
        "kind": "ShadowRoute",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "app", "image": "bench/app:1"}]}},
            "service": {"ports": [{"port": 80}]},
            "strategy": {"canary": {"steps": [{"weight": 50}]}},
        },
    }


def writes_by_kind(op: OperatorProcess) -> dict[str, float]:
    out = {}
    for line in op.metrics().splitlines():
        if line.startswith("shadowroute_api_writes_total{"):
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            out[kind] = float(line.rsplit(" ", 1)[1])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--routes", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--rest", type=float, default=60, help="seconds measured at rest")
    args = parser.parse_args()

    bench = open_bench("bench")
    config, custom, ns = bench.parts()
    op = start_operator(config, "--namespace", ns)
    created: dict[str, float] = {}
    ready: dict[str, float] = {}
    done = threading.Event()

    def watch() -> None:
        w = kubernetes.watch.Watch()
        for ev in w.stream(custom.list_namespaced_custom_object, "shadowroute.io", "v1alpha1",
                           ns, "shadowroutes", timeout_seconds=int(args.timeout)):  # fmt: skip
            obj = ev["object"]
            conds = (obj.get("status") or {}).get("conditions") or []
            name = obj["metadata"]["name"]
            if name not in ready and any(
                c["type"] == "Ready" and c["status"] == "True" for c in conds
            ):
                ready[name] = time.monotonic()
                if len(ready) >= args.routes:
                    done.set()
                    w.stop()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.5)
    try:
        t0 = time.monotonic()
        for i in range(args.routes):
            name = f"r{i:04d}"
            custom.create_namespaced_custom_object(
                "shadowroute.io", "v1alpha1", ns, "shadowroutes", body(name, args.replicas)
            )
            created[name] = time.monotonic()
        applied = time.monotonic() - t0
        done.wait(args.timeout)
        total = time.monotonic() - t0
        latencies = [ready[n] - created[n] for n in created if n in ready]
        # The last Events and status writes land just after Ready: wait for the
        # writes to stop (5 s without one, 60 s at most) before measuring rest.
        quiet_since, last = time.monotonic(), op.sum("shadowroute_api_writes_total{")
        settle_deadline = time.monotonic() + 60
        while time.monotonic() - quiet_since < 5 and time.monotonic() < settle_deadline:
            time.sleep(0.5)
            now_writes = op.sum("shadowroute_api_writes_total{")
            if now_writes != last:
                quiet_since, last = time.monotonic(), now_writes
        writes_peak = op.sum("shadowroute_api_writes_total{")
        by_kind_peak = writes_by_kind(op)
        time.sleep(args.rest)
        writes_rest = op.sum("shadowroute_api_writes_total{") - writes_peak
        by_kind_rest = {k: v - by_kind_peak.get(k, 0) for k, v in writes_by_kind(op).items()}
        print(f"routes: {args.routes} x {args.replicas} replicas; created in {applied:.1f}s")
        print(f"ready: {len(latencies)}/{args.routes}; all ready after {total:.1f}s")
        if latencies:
            print(f"apply -> Ready=True: p50 {percentile(latencies, 50):.2f}s  "
                  f"p99 {percentile(latencies, 99):.2f}s  max {max(latencies):.2f}s")  # fmt: skip
        print(f"operator writes to reach Ready and settle: {writes_peak:.0f} "
              f"({writes_peak / max(1, args.routes):.1f} per route)")  # fmt: skip
        print(f"  by kind: {by_kind_peak}")
        print(f"operator writes in {args.rest:.0f} s at rest: {writes_rest:.0f} {by_kind_rest}")
        reconciles = op.reconciles()
        print(f"reconciles: {reconciles:.0f} ({reconciles / max(1, args.routes):.1f} per route)")
        print(f"operator memory (RSS): {op.rss_mib():.0f} MiB")
        return 0 if len(latencies) == args.routes else 1
    finally:
        op.stop()
        bench.close()


if __name__ == "__main__":
    sys.exit(main())
