"""How closely real requests follow the weights and the mirror percent the operator set.

    python bench/traffic_split.py [--requests 1000] [--rate 100] [-o json]

One ShadowRoute of the sample app (real pods) on the local cluster's Envoy Gateway,
with a shadow stage at mirrorPercent 50 (60 s) and canary steps 10 %, 20 %, 50 % (each
a `pause: {}`, advanced by the resume gate). At each stage it sends --requests through
the gateway (hack/load.py) and reports the share the canary answered (clients see the
X-Version header) or, while shadowing, the copies the shadow pods counted themselves
(their http_requests_total, read through the pod proxy), against the setting, in
standard deviations of a binomial draw. Needs the local cluster's data plane.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.request
from typing import Any

from _common import (
    ROOT,
    gateway_of_cluster,
    gateway_ref,
    open_bench,
    sample_app,
    start_operator,
    wait,
)

sys.path.insert(0, str(ROOT / "hack"))
import cluster
from load import Load

GROUP, VERSION, PLURAL = "shadowroute.io", "v1alpha1", "shadowroutes"
NAME = "split"
PORT = 9898
STEPS = (10, 20, 50)
MIRROR = 50


def body(host: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ShadowRoute",
        "metadata": {"name": NAME},
        "spec": {
            **sample_app("v1"),
            "strategy": {
                "shadow": {"duration": "60s", "mirrorPercent": MIRROR},
                "canary": {"steps": [{"weight": w, "pause": {}} for w in STEPS]},
            },
            "progressDeadline": "2m",
            "traffic": {
                "provider": "gatewayapi",
                "gatewayAPI": {"parentRefs": [gateway_ref()], "hostnames": [host]},
            },
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = parser.parse_args(argv)
    bench = open_bench("split")
    config, custom, ns = bench.parts()
    gateway, proxy = gateway_of_cluster(), (cluster.load_state() or {})["podProxy"]
    host = f"{NAME}.{ns}.test"
    operator = start_operator(config, "--namespace", ns)
    rows: list[dict[str, Any]] = []
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body(host))
        wait(lambda: status(custom, ns).get("phase") == "Stable", 180, "Stable")
        patch(custom, ns, {"spec": {"template": sample_app("v2")["template"]}})
        wait(lambda: status(custom, ns).get("mirrorPercent") == MIRROR, 180, "the mirror")
        wait(lambda: mirrored(bench, ns, proxy) > 0 or trickle(gateway, host), 180, "a copy")
        before = mirrored(bench, ns, proxy)
        report = Load(gateway, host=host, rate=args.rate, requests=args.requests).run()
        copies = settle(lambda: mirrored(bench, ns, proxy) - before)
        if status(custom, ns).get("stage") != "Shadowing":
            raise SystemExit("the shadow stage ended before the copies were counted")
        rows.append(row("mirror", MIRROR, copies, report.responses, report.versions))
        for weight in STEPS:
            wait(
                lambda w=weight: status(custom, ns).get("canaryWeight") == w,
                180,
                f"weight {weight}",
            )
            wait(lambda: trickle(gateway, host, "v2"), 180, "the canary to answer")
            report = Load(gateway, host=host, rate=args.rate, requests=args.requests).run()
            canary = report.versions.get("v2", 0)
            rows.append(row("weight", weight, canary, report.responses, report.versions))
            gate(custom, ns, "resume")
    finally:
        operator.stop()
        bench.close()
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{args.requests} requests at {args.rate:g}/s per setting, through Envoy to real pods")
    print(f"{'setting':<12}{'expected':>10}{'observed':>10}{'share':>9}{'sigmas':>8}")
    for r in rows:
        print(
            f"{r['what'] + ' ' + str(r['percent']) + '%':<12}{r['expected']:>10.0f}"
            f"{r['observed']:>10}{r['share']:>9.3f}{r['sigmas']:>+8.2f}"
        )
    return 0


def row(what: str, percent: int, observed: int, n: int, versions: dict) -> dict[str, Any]:
    p = percent / 100
    sd = math.sqrt(n * p * (1 - p))
    return {
        "what": what,
        "percent": percent,
        "requests": n,
        "expected": n * p,
        "observed": observed,
        "share": observed / n if n else 0.0,
        "sigmas": (observed - n * p) / sd if sd else 0.0,
        "versions": versions,
    }


def status(custom, ns: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME)
    return obj.get("status") or {}


def patch(custom, ns: str, change: dict[str, Any]) -> None:
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME, change)


def gate(custom, ns: str, name: str) -> None:
    token = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}Z"
    patch(custom, ns, {"metadata": {"annotations": {f"shadowroute.io/{name}": token}}})


def trickle(gateway: str, host: str, version: str | None = None) -> bool:
    report = Load(gateway, host=host, rate=20, requests=10).run()
    return version is None or report.versions.get(version, 0) > 0


def mirrored(bench, ns: str, proxy: str) -> int:
    """Requests the shadow pods counted, read from each through the pod proxy."""
    import kubernetes

    slices = kubernetes.client.DiscoveryV1Api(bench.core.api_client).list_namespaced_endpoint_slice(
        ns, label_selector=f"kubernetes.io/service-name={NAME}-shadow"
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
    total = 0
    for s in slices.items:
        for e in s.endpoints or []:
            for address in e.addresses:
                with opener.open(f"http://{address}:{PORT}/metrics", timeout=5) as resp:
                    for line in resp.read().decode().splitlines():
                        if line.startswith("http_requests_total{"):
                            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def settle(read, quiet: float = 1.0, timeout: float = 30) -> int:
    """The value once it stopped changing for `quiet` seconds (copies still in flight)."""
    deadline = time.monotonic() + timeout
    last, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


if __name__ == "__main__":
    sys.exit(main())
