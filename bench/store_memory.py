"""What the watch index (operator/shadowroute/kube/store.py) costs in memory: N routes,
each with the children a real route has, fed in as watch events, measured with
tracemalloc (the Python heap the index holds, after a garbage collection), with the top
allocation sites.

The bodies are those of a real route on the local cluster (bench/data/route-objects.json:
`kubectl get shadowroute,deployments,services,httproutes -o json` of a Stable canary
route of tests/e2e/test_rollout.py's `route()`, provider none: 1 ShadowRoute, 2
Deployments, 3 Services), renamed per route. A route with a Gateway API route adds one
HTTPRoute (about as large as a Service).

    python bench/store_memory.py [--routes 1000 5000 10000] [--top 8]

No cluster needed. Prints one line per N, then where the memory of the largest N goes.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))
from shadowroute.kube.store import Store  # noqa: E402

SAMPLE = ROOT / "bench" / "data" / "route-objects.json"


def bodies(sample: list[dict], i: int) -> list[dict]:
    """The sample route's objects as route number i (its own namespace-unique names,
    uids and resourceVersions, as the API server would give them)."""
    out = []
    for j, obj in enumerate(json.loads(json.dumps(sample))):
        o = obj
        meta = o["metadata"]
        old = sample[0]["metadata"]["name"]
        meta["name"] = meta["name"].replace(old, f"r{i:05d}", 1)
        meta["namespace"] = f"ns-{i % 100:02d}"
        meta["uid"] = f"{i:08x}-0000-4000-8000-{j:012x}"
        meta["resourceVersion"] = str(1000 + i * 10 + j)
        labels = meta.get("labels") or {}
        if "shadowroute.io/name" in labels:
            labels["shadowroute.io/name"] = f"r{i:05d}"
        for ref in meta.get("ownerReferences") or []:
            ref["name"], ref["uid"] = f"r{i:05d}", f"{i:08x}-0000-4000-8000-{0:012x}"
        out.append(o)
    return out


def measure(sample: list[dict], n: int) -> tuple[Store, int, float]:
    gc.collect()
    tracemalloc.start(1)
    base = tracemalloc.get_traced_memory()[0]
    store = Store()
    t0 = time.perf_counter()
    for i in range(n):
        for body in bodies(sample, i):
            store.put(body)
    elapsed = time.perf_counter() - t0
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    return store, held, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    sample = json.loads(SAMPLE.read_text())
    raw = sum(len(json.dumps(o)) for o in sample)
    print(f"sample route: {len(sample)} objects, {raw} bytes of JSON as the API server sent them")
    print("routes  objects  index MiB  bytes/route  fill s")
    snapshot = None
    for n in args.routes:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        store, held, elapsed = measure(sample, n)
        objects = sum(store.size().values())
        print(f"{n:6d}  {objects:7d}  {held / 2**20:9.1f}  {held / n:11.0f}  {elapsed:6.2f}")
        snapshot = tracemalloc.take_snapshot()
        del store
    if snapshot is not None:
        print(f"\nwhere it goes at {args.routes[-1]} routes (tracemalloc, by line):")
        filters = [tracemalloc.Filter(True, "*shadowroute/kube/store.py")]
        for stat in snapshot.filter_traces(filters).statistics("lineno")[: args.top]:
            frame = stat.traceback[0]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            print(f"  {stat.size / 2**20:7.1f} MiB  {stat.count:8d} blocks  {where}")
    tracemalloc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
