"""SIGTERM -> exit of the operator at rest, and with --leader-elect the hand-over: SIGTERM
-> a stand-by replica leads. What a rolling update of the operator costs.

    python bench/shutdown.py [--runs 5] [--routes 3] [--leader-elect]

Each run starts the real operator (`python -m shadowroute`), waits until it is ready
(and leads, with --leader-elect) and its ShadowRoutes are Stable and settled, sends
SIGTERM, and times the exit (and, with --leader-elect, until a stand-by started
beforehand reports `shadowroute_leader 1`). Prints the exit code of every run: 0 is
a clean exit. Runs against $KUBECONFIG, or the local cluster (started and stopped if it
was down).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import urllib.request

from _common import OperatorProcess, open_bench, percentile


def route(name: str) -> dict:
    return {
        "apiVersion": "shadowroute.io/v1alpha1",
        "kind": "ShadowRoute",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "template": {"spec": {"containers": [{"name": "app", "image": "bench/app:1"}]}},
            "service": {"ports": [{"port": 80}]},
            "strategy": {"canary": {"steps": [{"weight": 50}]}},
        },
    }


def wait(check, timeout: float, what: str, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(every)


def leads(op: OperatorProcess) -> bool:
    try:
        return op.sum("shadowroute_leader ") == 1
    except OSError:
        return False


def ready(op: OperatorProcess) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def settled(op: OperatorProcess, quiet: float = 1.0) -> None:
    """Until the operator has made no write and finished no reconcile for `quiet` s."""
    last, since = (op.writes(), op.reconciles()), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.1)
        now = (op.writes(), op.reconciles())
        if now != last:
            last, since = now, time.monotonic()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--routes", type=int, default=3, help="ShadowRoutes it watches")
    parser.add_argument("--leader-elect", action="store_true", help="time the hand-over too")
    args = parser.parse_args()

    bench = open_bench("bench")
    config, custom, ns = bench.parts()
    flags = ["--namespace", ns]
    if args.leader_elect:
        flags += ["--leader-elect", "--leader-election-namespace", ns,
                  "--leader-election-id", "bench-shutdown"]  # fmt: skip
    for i in range(args.routes):
        custom.create_namespaced_custom_object(
            "shadowroute.io", "v1alpha1", ns, "shadowroutes", route(f"r{i}")
        )
    exits: list[float] = []
    handovers: list[float] = []
    codes: list[int | None] = []
    running: list[OperatorProcess] = []
    try:
        leader = OperatorProcess(config, None, *flags).start()
        running.append(leader)
        wait(lambda: ready(leader), 60, "the operator to be ready")
        for _ in range(args.runs):
            standby = None
            if args.leader_elect:
                wait(lambda op=leader: leads(op), 60, "the leader")
                standby = OperatorProcess(config, None, *flags).start()
                running.append(standby)
            stable = 0

            def all_stable() -> bool:
                nonlocal stable
                items = custom.list_namespaced_custom_object(
                    "shadowroute.io", "v1alpha1", ns, "shadowroutes"
                )["items"]
                stable = sum((o.get("status") or {}).get("phase") == "Stable" for o in items)
                return stable == args.routes

            wait(all_stable, 120, "every route Stable", every=0.2)
            # At rest: this process has reconciled every route and then stopped writing.
            wait(lambda op=leader: op.reconciles() >= args.routes, 60, "a reconcile of each route")
            settled(leader)
            assert leader.proc is not None
            t0 = time.monotonic()
            leader.proc.send_signal(signal.SIGTERM)
            exited = led = None
            while exited is None or (standby is not None and led is None):
                if exited is None and leader.proc.poll() is not None:
                    exited = time.monotonic() - t0
                if standby is not None and led is None and leads(standby):
                    led = time.monotonic() - t0
                if time.monotonic() - t0 > 60:
                    raise RuntimeError("no exit (or no hand-over) within 60 s")
                time.sleep(0.002)
            codes.append(leader.proc.returncode)
            exits.append(exited)
            if led is not None:
                handovers.append(led)
            running.remove(leader)
            leader = standby or OperatorProcess(config, None, *flags).start()
            if standby is None:
                running.append(leader)
            wait(lambda op=leader: ready(op), 60, "the operator to be ready")
        print(f"routes watched: {args.routes}; runs: {args.runs}; exit codes: {codes}")
        print(f"SIGTERM -> exit: p50 {percentile(exits, 50):.3f}s  max {max(exits):.3f}s")
        if handovers:
            print(
                f"SIGTERM -> stand-by leads: p50 {percentile(handovers, 50):.3f}s  "
                f"max {max(handovers):.3f}s (the stand-by polls the Lease every retry period, 2 s)"
            )
        return 0 if all(c == 0 for c in codes) else 1
    finally:
        for op in running:
            op.stop()
        bench.close()


if __name__ == "__main__":
    sys.exit(main())
