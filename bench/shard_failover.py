"""Sharding (`--shards`): how long a SIGKILLed replica's shard takes to move, and how
long a new replica takes to get its fair share. What losing and replacing a pod costs.

    python bench/shard_failover.py [--replicas 3] [--shards 3] [--runs 3] [--routes 6]
                                   [--lease-duration 15 --renew-deadline 10 --retry-period 2]

Starts the real operator (`python -m shadowroute --shards S`) N times, waits until
every shard is held by exactly one replica (their `shadowroute_shard_held` gauges),
then per run: SIGKILLs the holder of shard 0 and times until a survivor reports it;
starts a replacement and times until every replica holds its fair share again. Polls
every 50 ms and reports whether any poll saw a shard claimed by two replicas (a poll
reads the replicas one after another, so a hand-over between two reads would show as
one: the replicas' logs, "took shard" / "dropping shard", are the exact record). Prints
each replica's RSS at the end. Runs against $KUBECONFIG, or the local cluster
(started and stopped if it was down).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from _common import OperatorProcess, open_bench, percentile
from shutdown import route, wait


def held(op: OperatorProcess) -> set[int]:
    try:
        text = op.metrics()
    except OSError:
        return set()
    return {
        int(line.split('shard="')[1].split('"')[0])
        for line in text.splitlines()
        if line.startswith("shadowroute_shard_held{") and line.endswith(" 1.0")
    }


def start(config: str, flags: list[str]) -> OperatorProcess:
    """Spawn a replica and wait until it serves /metrics (a start is slow on a busy machine)."""
    op = OperatorProcess(config, None, *flags)
    op.spawn()

    def serving() -> bool:
        assert op.proc is not None and op.proc.poll() is None, f"exited; see {op.log}"
        try:
            return bool(op.metrics())
        except OSError:
            return False

    wait(serving, 120, "the replica serving /metrics", every=0.2)
    return op


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--routes", type=int, default=6, help="ShadowRoutes they share")
    parser.add_argument("--lease-duration", type=float, default=15.0)
    parser.add_argument("--renew-deadline", type=float, default=10.0)
    parser.add_argument("--retry-period", type=float, default=2.0)
    args = parser.parse_args()

    bench = open_bench("bench")
    config, custom, ns = bench.parts()
    flags = ["--namespace", ns, "--shards", str(args.shards), "--leader-election-namespace", ns,
             "--leader-election-id", "bench-shards",
             "--lease-duration", str(args.lease_duration),
             "--renew-deadline", str(args.renew_deadline),
             "--retry-period", str(args.retry_period)]  # fmt: skip
    for i in range(args.routes):
        custom.create_namespaced_custom_object(
            "shadowroute.io", "v1alpha1", ns, "shadowroutes", route(f"r{i}")
        )
    running: list[OperatorProcess] = []
    moves: list[float] = []
    joins: list[float] = []
    doubles = 0

    def snapshot() -> list[set[int]]:
        nonlocal doubles
        sets = [held(op) for op in running]
        claimed = [s for h in sets for s in h]
        doubles += len(claimed) != len(set(claimed))
        return sets

    def balanced() -> bool:
        sets = snapshot()
        share = math.ceil(args.shards / len(running))
        every = sorted(s for h in sets for s in h) == list(range(args.shards))
        return every and all(len(h) <= share for h in sets)

    try:
        for _ in range(args.replicas):
            running.append(start(config, flags))
        wait(balanced, 180, "every shard held, each replica at its share", every=0.05)
        for _ in range(args.runs):
            holder = next(op for op in running if 0 in held(op))
            holder.kill()
            t0 = time.monotonic()
            running.remove(holder)
            wait(lambda: any(0 in h for h in snapshot()), 120, "shard 0 moved", every=0.05)
            moves.append(time.monotonic() - t0)
            t1 = time.monotonic()
            running.append(start(config, flags))
            wait(balanced, 180, "the newcomer at its share", every=0.05)
            joins.append(time.monotonic() - t1)
        print(f"replicas {args.replicas}, shards {args.shards}, routes {args.routes}, "
              f"lease {args.lease_duration:g}s / renew {args.renew_deadline:g}s / "
              f"retry {args.retry_period:g}s, runs {args.runs}")  # fmt: skip
        print(f"SIGKILL -> shard moved: p50 {percentile(moves, 50):.1f}s  max {max(moves):.1f}s  "
              f"(bound: lease + 2 x retry = {args.lease_duration + 2 * args.retry_period:g}s "
              "after its last renewal)")  # fmt: skip
        print(f"new replica started -> balanced: p50 {percentile(joins, 50):.1f}s  "
              f"max {max(joins):.1f}s (includes the process's own start)")  # fmt: skip
        print(f"polls that saw a shard claimed by two replicas: {doubles}")
        print("RSS per replica at the end: "
              + ", ".join(f"{op.rss_mib():.0f} MiB" for op in running))  # fmt: skip
        return 0 if doubles == 0 else 1
    finally:
        for op in running:
            op.stop()
        bench.close()


if __name__ == "__main__":
    sys.exit(main())
