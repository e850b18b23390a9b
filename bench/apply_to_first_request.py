"""Seconds from applying a new ShadowRoute to the first request its route serves, on
real traffic through the gateway, over N runs.

    python bench/apply_to_first_request.py [--runs 10] [--rate 50] [-o text|json]

Each run starts a load (hack/load.py, --rate req/s, open loop, every request recorded)
at a fresh hostname through the local cluster's Envoy Gateway - Envoy answers 404,
no route has that hostname yet - then creates a ShadowRoute of the sample app
(examples/app/server.py, 2 replicas run by the local test kubelet as real processes,
provider gatewayapi with that hostname) and measures, on this host's clock:

- apply -> first 200: the first response of the app (status 200, X-Version v1) a
  client received (its send time + latency), from just before the create call;
- apply -> Ready=True: the ShadowRoute's Ready condition, polled every 50 ms;
- Ready=True -> first 200: positive when Ready came before the route served (Ready
  says the operator's children are there, not that the gateway serves them);
- what the clients got before the first 200 and after it, by status and X-Version
  ("none": Envoy's own answer - 404 while no route has the hostname, 500 while the
  route's backend Services do not resolve yet, 503 while they have no ready endpoint;
  status 0: no response); the load runs 2 s past the later of the two events.

The route is deleted (and its pods waited for) before the next run. Runs against
$KUBECONFIG (with SHADOWROUTE_GATEWAY) or the local cluster, started and stopped if
it was down.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from typing import Any

from _common import (
    gateway_of_cluster,
    gateway_ref,
    open_bench,
    sample_app,
    start_operator,
    summary,
    wait_pods_gone,
)
from load import Load

GROUP, VERSION, PLURAL = "shadowroute.io", "v1alpha1", "shadowroutes"


def body(name: str, host: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ShadowRoute",
        "metadata": {"name": name},
        "spec": {
            **sample_app("v1"),
            "strategy": {"canary": {"steps": [{"weight": 50}]}},
            "traffic": {
                "provider": "gatewayapi",
                "gatewayAPI": {"parentRefs": [gateway_ref()], "hostnames": [host]},
            },
        },
    }


def is_ready(obj: dict[str, Any]) -> bool:
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def one_run(bench: Any, gateway: str, i: int, rate: float, timeout: float) -> dict[str, Any]:
    """One apply; bounded by `timeout` seconds of waiting, plus the deletion."""
    custom, ns = bench.custom, bench.namespace
    name, host = f"first-{i:02d}", f"first-{i:02d}.{ns}.bench.test"
    load = Load(gateway, rate=rate, duration=timeout + 10, host=host, record=True).start()
    created = False
    try:
        time.sleep(1)  # the clients get Envoy's 404 before the route exists
        applied = time.time()
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body(name, host))
        created = True
        ready: float | None = None
        served: float | None = None
        deadline = time.monotonic() + timeout
        while (ready is None or served is None) and time.monotonic() < deadline:
            if ready is None and is_ready(
                custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
            ):
                ready = time.time()
            if served is None and any(r.status == 200 for r in load.records()):
                served = time.time()
            time.sleep(0.05)
        time.sleep(2)  # does the route keep serving?
        load.stop()
        if ready is None or served is None:
            raise RuntimeError(f"{name}: Ready={ready is not None}, served={served is not None}")
    finally:
        load.stop()
        if created:
            custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    records = sorted(load.records(), key=lambda r: r.sent_at + r.latency)
    first = next(r for r in records if r.status == 200)
    first_at = first.sent_at + first.latency

    def counts(rs: list[Any]) -> dict[str, int]:
        """Answers by status and X-Version ("none": not from the app)."""
        return dict(sorted(Counter(f"{r.status} {r.version}" for r in rs).items()))

    before = counts([r for r in records if r.sent_at + r.latency < first_at])
    after = counts([r for r in records if r.sent_at + r.latency > first_at])
    after_ready = counts([r for r in records if r.sent_at >= ready])
    wait_pods_gone(bench.core, ns, name)
    return {
        "firstRequest": first_at - applied,
        "firstRequestSent": first.sent_at - applied,
        "ready": ready - applied,
        "readyToFirstRequest": first_at - ready,
        "version": first.version,
        "before": before,
        "after": after,
        "sentAfterReady": after_ready,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rate", type=float, default=50, help="req/s at the hostname")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per run")
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = parser.parse_args()
    text = args.output == "text"

    bench = open_bench("bench-first")
    config, _, ns = bench.parts()
    gateway = gateway_of_cluster()
    op = start_operator(config, "--namespace", ns)
    results: list[dict[str, Any]] = []
    try:
        if text:
            print(f"apply -> first request served: {args.runs} runs at {args.rate:g} req/s, "
                  f"namespace {ns}", flush=True)  # fmt: skip
        for i in range(1, args.runs + 1):
            r = one_run(bench, gateway, i, args.rate, args.timeout)
            results.append(r)
            if text:
                print(f"  run {i:2d}: first 200 after {r['firstRequest']:5.2f}s, Ready=True "
                      f"after {r['ready']:5.2f}s; before the first 200: {r['before']}; "
                      f"after it: {r['after']}", flush=True)  # fmt: skip
    finally:
        op.stop()
        bench.close()
    keys = ["firstRequest", "ready", "readyToFirstRequest"]
    figures = {k: summary([r[k] for r in results]) for k in keys}
    if not text:
        rounded = [
            {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in results
        ]
        doc = {"runs": len(results), "rate": args.rate, "summary": figures, "results": rounded}
        print(json.dumps(doc, indent=2))
        return 0
    for key, what in [
        ("firstRequest", "apply -> first 200 from the new route"),
        ("ready", "apply -> Ready=True"),
        ("readyToFirstRequest", "Ready=True -> first 200"),
    ]:
        f = figures[key]
        print(f"{what} over {len(results)} runs: min {f['min']:.2f}s  "
              f"median {f['median']:.2f}s  max {f['max']:.2f}s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
