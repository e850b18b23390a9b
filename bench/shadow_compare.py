"""The shadow comparison through the real gateway: how many mirrored requests the
comparator compares per second and per CPU-second, its memory over a sustained run,
and the latency the mirror adds to the clients' requests.

    python bench/shadow_compare.py [--rates 50,100,200,400] [--step 20] [--soak 60]
                                   [--soak-rate 100] [--latency-rate 100]
                                   [--latency-requests 1000] [-o text|json]
    python bench/shadow_compare.py --in-process [--copies 5000] [--concurrency 32]

One ShadowRoute of the sample app (2 replicas, provider gatewayapi on the local
cluster's Envoy Gateway) with a comparing shadow stage: mirrorPercent 100, duration 1h
and minCompared 10,000,000, so the stage holds (NotEnoughData) for the whole run. v2
differs from v1 only in noise (its version, ignored; requestId, time and X-Request-Id,
which differ in every answer of v1 too), as in the noise end-to-end test. The load is
hack/load.py (open loop, bounded in rate and time) at /price/book through Envoy, whose
RequestMirror sends a copy of every request to the comparator, which asks the shadow
once and the baseline twice (through the test world's userspace kube-proxy). The
comparator's counters and its process metrics are read through the API server's
service proxy (services/http:NAME-comparator:admin/proxy/metrics); no 10.x address is
dialled from the host.

1. Throughput per core: at each of --rates, --step seconds of GET load; before and
   after each step (and every 2 s during it) the comparator's compared requests,
   dropped{busy}, skipped, process_cpu_seconds_total and process_resident_memory_bytes.
   Per step: offered and compared per second, compared per CPU-second of the
   comparator (= per core), drops, copies unaccounted for (offered - compared -
   skipped - dropped: lost before the comparator took them), RSS, and the machine's
   busy cores (/proc/stat). "Keeps up" = compared >= 98 % of offered and no drop.
2. Memory: --soak seconds at --soak-rate, RSS every 3 s: first, last, max, and growth
   per 10k compared.
3. Added client latency: --latency-requests GETs, then as many POSTs, at --latency-rate
   against the same route while Stable (no mirror, before the release), while
   shadowing (mirror 100 % to the comparator, at the end of the stage) and Stable again
   right after an abort (the bracket shows the machine's drift); client p50/p90/p99 of
   each and shadowing minus the mean of the two Stable runs. POST copies are mirrored
   but never replayed (skipped, reason method): they show the mirror alone, the GETs
   the mirror plus the comparisons' work on the shared cores.

The machine of the reference figures has 2 cores shared by the control plane, Envoy,
every pod process, the load generator and whatever else runs there: the comparator's
CPU-seconds are its own (its process metrics), but the rate at which it keeps up is the
whole pipeline's on two cores, not the comparator's ceiling.

--in-process is the comparator's floor without any data plane (formerly
bench/compare_throughput.py): the comparator, two loopback upstreams answering a small
JSON body and the sender in one Python process and one event loop, so the CPU cost it
prints (compared per CPU-second of the whole process) is an upper bound of the
comparator's own cost per comparison; nothing of Envoy, the kube-proxy or the pods.
It needs no cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    gateway_of_cluster,
    gateway_ref,
    open_bench,
    prometheus_of_cluster,
    sample_app,
    start_operator,
    wait,
)

GROUP, VERSION, PLURAL = "shadowroute.io", "v1alpha1", "shadowroutes"
NAME = "shcmp"
PATH = "/price/book"
NOISE = {"BODY_FIELDS": '{"item": "book", "price": 12}', "FRESH_REQUEST_ID": "1"}
KEEPS_UP = 0.98
SAMPLE_EVERY = 2.0
SOAK_EVERY = 3.0
MIB = 1024 * 1024


# ---------------------------------------------------------------- the route


def body(host: str, prometheus: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ShadowRoute",
        "metadata": {"name": NAME},
        "spec": {
            **sample_app("v1", NOISE),
            "strategy": {
                "shadow": {
                    "duration": "1h",
                    "mirrorPercent": 100,
                    "compare": {
                        "maxMismatchRate": 0.01,
                        "minCompared": 10_000_000,
                        "ignorePaths": ["body.version"],
                        "ignoreHeaders": ["x-version"],
                    },
                },
                "canary": {"steps": [{"weight": 50, "pause": {}}]},
            },
            "progressDeadline": "3m",
            "analysis": {"prometheus": {"address": prometheus}, "interval": "10s"},
            "traffic": {
                "provider": "gatewayapi",
                "gatewayAPI": {"parentRefs": [gateway_ref()], "hostnames": [host]},
            },
        },
    }


def status(custom: Any, ns: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME)
    return obj.get("status") or {}


def patch(custom: Any, ns: str, change: dict[str, Any]) -> None:
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME, change)


def gate(custom: Any, ns: str, name: str) -> None:
    token = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}Z"
    patch(custom, ns, {"metadata": {"annotations": {f"shadowroute.io/{name}": token}}})


def comparing(s: dict[str, Any]) -> bool:
    return s.get("stage") == "Shadowing" and s.get("mirrorPercent") == 100


def stable(s: dict[str, Any]) -> bool:
    return s.get("phase") == "Stable" and not s.get("mirrorPercent")


def aborted(s: dict[str, Any]) -> bool:
    """Out of the shadow stage, all traffic on the primary, no mirror."""
    return s.get("stage") != "Shadowing" and not s.get("mirrorPercent")


# ---------------------------------------------------------------- the comparator's metrics


@dataclass(frozen=True)
class Reading:
    at: float  # monotonic
    compared: float
    busy: float
    dropped: float
    skipped: float
    cpu: float
    rss: float
    no_answers: float
    buckets: dict[str, dict[float, float]]  # side -> le -> cumulative count


def quantile(before: Reading, after: Reading, side: str, q: float) -> float | None:
    """The q quantile of the asks answered between two readings, from the comparator's
    histogram (linear within a bucket, as histogram_quantile does)."""
    b0, b1 = before.buckets.get(side, {}), after.buckets.get(side, {})
    edges = sorted(b1)
    counts = [b1[e] - b0.get(e, 0) for e in edges]
    if not counts or counts[-1] <= 0:
        return None
    rank, lower, below = q * counts[-1], 0.0, 0.0
    for edge, count in zip(edges, counts, strict=True):
        if count >= rank:
            if edge == float("inf"):
                return lower
            return lower + (edge - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = edge, count
    return None


def parse_metrics(text: str) -> Reading:
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name
            if key == "shadowroute_compare_upstream_duration_seconds_bucket":
                side = buckets.setdefault(s.labels["side"], {})
                side[float(s.labels["le"])] = s.value
            if s.name == "shadowroute_compare_dropped_total" and s.labels.get("reason") == "busy":
                values["busy"] = values.get("busy", 0) + s.value
            values[key] = values.get(key, 0) + s.value
    return Reading(
        at=time.monotonic(),
        compared=values.get("shadowroute_compare_requests_total", 0),
        busy=values.get("busy", 0),
        dropped=values.get("shadowroute_compare_dropped_total", 0),
        skipped=values.get("shadowroute_compare_skipped_total", 0),
        cpu=values.get("process_cpu_seconds_total", float("nan")),
        rss=values.get("process_resident_memory_bytes", float("nan")),
        no_answers=values.get("shadowroute_compare_upstream_no_answers_total", 0),
        buckets=buckets,
    )


class ComparatorMetrics:
    """/metrics of NAME-comparator through the API server's service proxy."""

    def __init__(self, api_client: Any, ns: str) -> None:
        self.api = api_client
        self.path = f"/api/v1/namespaces/{ns}/services/http:{NAME}-comparator:admin/proxy/"
        self.failures = 0

    def get(self, what: str) -> bytes:
        method, url, headers, _, _ = self.api.param_serialize(
            "GET", self.path + what, auth_settings=["BearerToken"]
        )
        response = self.api.call_api(method, url, header_params=headers, _request_timeout=10)
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{self.path}{what}: {response.status}")
        return response.data

    def read(self, tries: int = 10) -> Reading:
        """The comparator's /metrics; retried for a while: on a saturated machine its
        readiness probe times out now and then, and the service proxy answers 503."""
        for attempt in range(tries):
            try:
                reading = parse_metrics(self.get("metrics").decode())
            except Exception:
                if attempt == tries - 1:
                    raise
                self.failures += 1
                time.sleep(1)
            else:
                return reading
        raise AssertionError("unreachable")

    def settled(self, quiet: float = 1.5, timeout: float = 30) -> Reading:
        """A reading once the compared count stopped moving for `quiet` seconds (the
        comparisons of the last copies still in flight)."""
        deadline = time.monotonic() + timeout
        last = self.read()
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.read()
            if (
                now.compared + now.skipped + now.dropped
                != last.compared + last.skipped + last.dropped
            ):
                since = time.monotonic()
            last = now
            if time.monotonic() - since >= quiet:
                break
        return last


class Sampler:
    """Reads the comparator every `every` seconds in a thread, until stopped."""

    def __init__(self, metrics: ComparatorMetrics, every: float) -> None:
        self.metrics, self.every = metrics, every
        self.readings: list[Reading] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.readings.append(self.metrics.read(tries=1))
            except Exception:  # a slow API server: one sample fewer
                self.errors += 1


def host_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


class PipelineCpu:
    """CPU-seconds of every process on the copies' way, read from /proc on this host
    (the local cluster only; the pods are processes here): the pods by role (from the
    test kubelet's "started pid" lines), the comparator, Envoy, the kube-proxy (which
    relays the comparator's asks to the Service ClusterIPs) and this process (the load
    generator, and the readings)."""

    def __init__(self, ns: str) -> None:
        import cluster

        state = cluster.load_state() or {}
        self.ns = ns
        self.log = Path(state.get("kubeconfig", "/nonexistent")).parent / "logs/test-kubelet.log"
        procs = {p["name"]: p["pid"] for p in state.get("processes", [])}
        self.fixed = {"kube-proxy": procs.get("kube-proxy")}
        cluster_dir = str(self.log.parent.parent)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if argv[0].endswith(b"/bin/envoy") and cluster_dir.encode() in argv[0]:
                    self.fixed["envoy"] = int(entry.name)
        self.tick = os.sysconf("SC_CLK_TCK")

    def pods(self) -> dict[str, list[int]]:
        """The live pids of this namespace's pods, by role (primary, shadow, ...)."""
        latest: dict[str, int] = {}
        try:
            lines = self.log.read_text().splitlines()
        except OSError:
            return {}
        for line in lines:
            _, _, rest = line.partition(" ")
            key, sep, tail = rest.partition(": started pid ")
            if sep and key.startswith(f"{self.ns}/"):
                latest[key] = int(tail.split()[0])
        roles: dict[str, list[int]] = {}
        for key, pid in latest.items():
            pod = key.split("/")[1]
            role = pod[len(NAME) + 1 :].split("-")[0]
            roles.setdefault(role, []).append(pid)
        return roles

    def _cpu(self, pid: int) -> float:
        """utime + stime of pid and its descendants, in seconds (0 if gone)."""
        total, todo = 0.0, [pid]
        while todo:
            p = todo.pop()
            try:
                stat = Path(f"/proc/{p}/stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / self.tick
                for task in Path(f"/proc/{p}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError, IndexError):
                continue
        return total

    def read(self) -> dict[str, float]:
        out = {role: sum(map(self._cpu, pids)) for role, pids in self.pods().items()}
        for name, pid in self.fixed.items():
            if pid:
                out[name] = self._cpu(pid)
        out["load generator"] = time.process_time()
        return out


# ---------------------------------------------------------------- the three parts


def load(gateway: str, host: str, **options: Any) -> Any:
    from load import Load

    return Load(gateway, host=host, path=PATH, timeout=5, max_in_flight=400, **options)


def latency_figures(report: Any) -> dict[str, Any]:
    lat = report.latency
    return {
        "requests": report.sent,
        "responses": report.responses,
        "statuses": {str(k): v for k, v in report.statuses.items()},
        "errors": report.errors,
        "skipped": report.skipped,
        "rate": round(report.rate, 1),
        "p50": lat.get("p50"),
        "p90": lat.get("p90"),
        "p99": lat.get("p99"),
        "max": lat.get("max"),
    }


def throughput_step(
    metrics: ComparatorMetrics,
    pipeline: PipelineCpu,
    gateway: str,
    host: str,
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    before = metrics.settled(quiet=1.0)
    busy0, total0 = host_cpu()
    cpu0 = pipeline.read()
    with Sampler(metrics, SAMPLE_EVERY) as sampler:
        report = load(gateway, host, rate=rate, duration=seconds).run()
    busy1, total1 = host_cpu()
    cpu1 = pipeline.read()
    after = metrics.settled()
    elapsed = report.elapsed
    compared = after.compared - before.compared
    skipped = after.skipped - before.skipped
    dropped = after.dropped - before.dropped
    cpu = after.cpu - before.cpu
    rss = [r.rss for r in sampler.readings] + [after.rss]
    sent = report.sent
    return {
        "offeredRate": rate,
        "sent": sent,
        "sentRate": round(sent / elapsed, 1) if elapsed else 0.0,
        "clientOk": report.statuses.get(200, 0),
        "clientP50": report.latency.get("p50"),
        "clientP99": report.latency.get("p99"),
        "compared": int(compared),
        "comparedRate": round(compared / elapsed, 1) if elapsed else 0.0,
        "comparedShare": round(compared / sent, 4) if sent else 0.0,
        "droppedBusy": int(after.busy - before.busy),
        "dropped": int(dropped),
        "skipped": int(skipped),
        "unaccounted": int(sent - compared - skipped - dropped),
        "noAnswers": int(after.no_answers - before.no_answers),
        "cpuSeconds": round(cpu, 3),
        "cores": round(cpu / elapsed, 3) if elapsed else 0.0,
        "comparedPerCpuSecond": round(compared / cpu, 1) if cpu > 0 else None,
        "rssMiB": round(after.rss / MIB, 1),
        "rssMaxMiB": round(max(rss) / MIB, 1),
        "machineBusyCores": round((busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1), 2),
        "keepsUp": bool(sent and compared >= KEEPS_UP * sent and dropped == 0),
        "samplerErrors": sampler.errors,
        "pipelineCores": {
            k: round((cpu1[k] - cpu0.get(k, 0.0)) / elapsed, 3) for k in sorted(cpu1) if elapsed
        },
        "upstreamP50": {k: quantile(before, after, k, 0.5) for k in ("candidate", "baseline")},
        "upstreamP95": {k: quantile(before, after, k, 0.95) for k in ("candidate", "baseline")},
        "busySeries": [
            [
                round(r.at - before.at, 1),
                int(r.busy - before.busy),
                int(r.compared - before.compared),
            ]
            for r in sampler.readings
        ],
    }


def soak(
    metrics: ComparatorMetrics, gateway: str, host: str, rate: float, seconds: float
) -> dict[str, Any]:
    first = metrics.settled(quiet=1.0)
    with Sampler(metrics, SOAK_EVERY) as sampler:
        report = load(gateway, host, rate=rate, duration=seconds).run()
    last = metrics.settled()
    readings = [first, *sampler.readings, last]
    compared = last.compared - first.compared
    growth = (last.rss - first.rss) / MIB
    return {
        "rate": rate,
        "seconds": seconds,
        "sent": report.sent,
        "compared": int(compared),
        "dropped": int(last.dropped - first.dropped),
        "samples": len(readings),
        "rssFirstMiB": round(first.rss / MIB, 1),
        "rssLastMiB": round(last.rss / MIB, 1),
        "rssMaxMiB": round(max(r.rss for r in readings) / MIB, 1),
        "rssMinMiB": round(min(r.rss for r in readings) / MIB, 1),
        "growthMiBPer10k": round(growth / (compared / 10_000), 3) if compared else None,
        "series": [
            [round(r.at - first.at, 1), int(r.compared - first.compared), round(r.rss / MIB, 1)]
            for r in readings
        ],
    }


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    text = args.output == "text"

    def say(line: str) -> None:
        if text:
            print(line, flush=True)

    bench = open_bench("bench-shcmp", prometheus=True)
    config, custom, ns = bench.parts()
    gateway, host = gateway_of_cluster(), f"{NAME}.{bench.namespace}.test"
    prometheus, _ = prometheus_of_cluster()
    operator = start_operator(config, "--namespace", ns)
    metrics = ComparatorMetrics(bench.core.api_client, ns)
    doc: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "loadAverage": os.getloadavg()[0],
        "namespace": ns,
    }
    try:
        say(f"shadow comparison through Envoy, namespace {ns}; {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.1f} at start (shared machine)")  # fmt: skip
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body(host, prometheus))
        wait(lambda: stable(status(custom, ns)), 180, "Stable")
        wait(lambda: load(gateway, host, rate=20, requests=10).run().statuses.get(200), 60, "200s")
        load(gateway, host, rate=50, requests=100).run()  # warm the connections
        lat: dict[str, dict[str, Any]] = {"GET": {}, "POST": {}}

        def latency(phase: str) -> None:
            for method in lat:
                report = load(
                    gateway, host, method=method, rate=args.latency_rate,
                    requests=args.latency_requests,
                ).run()  # fmt: skip
                lat[method][phase] = latency_figures(report)
                say(f"  latency, {phase}, {method}: {fmt_lat(lat[method][phase])}")

        latency("stable")

        patch(custom, ns, {"spec": {"template": sample_app("v2", NOISE)["template"]}})
        t0 = time.monotonic()
        wait(lambda: comparing(status(custom, ns)), 240, "shadowing with the mirror on")
        wait(lambda: metrics.read(), 60, "the comparator's metrics")
        say(f"  shadowing with the comparator as mirror target after {time.monotonic() - t0:.1f}s")
        idle = metrics.read()
        doc["rssIdleMiB"] = round(idle.rss / MIB, 1)
        # Warm-up: the pools' connections, the mirror cluster in Envoy.
        load(gateway, host, rate=50, requests=100).run()
        metrics.settled()

        pipeline = PipelineCpu(ns)
        steps = []
        for rate in args.rates:
            step = throughput_step(metrics, pipeline, gateway, host, rate, args.step)
            steps.append(step)
            say(f"  step {rate:g} req/s: compared {step['comparedRate']:g}/s, "
                f"{step['comparedPerCpuSecond']} per CPU-second, dropped {step['dropped']}, "
                f"RSS {step['rssMiB']} MiB")  # fmt: skip
        doc["steps"] = steps
        kept = [s["offeredRate"] for s in steps if s["keepsUp"]]
        doc["keepsUpTo"] = max(kept) if kept else None

        doc["soak"] = soak(metrics, gateway, host, args.soak_rate, args.soak)
        say(f"  soak {args.soak:g}s at {args.soak_rate:g} req/s: RSS "
            f"{doc['soak']['rssFirstMiB']} -> {doc['soak']['rssLastMiB']} MiB")  # fmt: skip
        s = status(custom, ns)
        doc["stageHeld"] = s.get("stage") == "Shadowing"
        doc["comparison"] = {
            k: (s.get("comparison") or {}).get(k) for k in ("verdict", "compared", "mismatched")
        }

        # Measured last in the stage, long after its pods started, just before the abort
        # (then Stable again at once): the bracket is as tight as the stage allows.
        latency("shadowing")
        gate(custom, ns, "abort")
        wait(lambda: aborted(status(custom, ns)), 120, "the abort")
        time.sleep(3)  # the shadow, baseline and comparator processes stop
        load(gateway, host, rate=50, requests=100).run()
        latency("stableAfter")
        doc["latency"] = {
            "rate": args.latency_rate,
            "requests": args.latency_requests,
            **lat,
            "added": {
                method: {
                    q: round(f["shadowing"][q] - (f["stable"][q] + f["stableAfter"][q]) / 2, 6)
                    for q in ("p50", "p90", "p99")
                }
                for method, f in lat.items()
            },
        }
    finally:
        operator.stop()
        bench.close()
    doc["loadAverageEnd"] = os.getloadavg()[0]
    return doc


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}ms"


def fmt_lat(f: dict[str, Any]) -> str:
    ms = {q: f[q] * 1000 for q in ("p50", "p90", "p99")}
    return (f"p50 {ms['p50']:.1f} ms, p90 {ms['p90']:.1f} ms, p99 {ms['p99']:.1f} ms "
            f"({f['responses']} answers, statuses {f['statuses']})")  # fmt: skip


def print_table(doc: dict[str, Any]) -> None:
    print()
    print(f"Shadow comparison through the real gateway, {doc['date']}: {doc['cores']} cores "
          f"SHARED by the control plane, Envoy, the pods, the load generator and anything "
          f"else on this machine (load average {doc['loadAverage']:.1f} at start, "
          f"{doc['loadAverageEnd']:.1f} at the end).")  # fmt: skip
    print()
    print("1. Throughput (GET /price/book, mirror 100 %, v2 differs only in noise)")
    head = (f"{'offered/s':>9} {'sent/s':>7} {'compared/s':>10} {'share':>6} {'busy':>5} "
            f"{'skip':>5} {'lost':>5} {'cmp CPU':>7} {'per CPU-s':>9} {'RSS MiB':>8} "
            f"{'machine':>7} {'client p99':>10} {'ask p95 new/old':>16}")  # fmt: skip
    print(head)
    for s in doc["steps"]:
        per = s["comparedPerCpuSecond"]
        print(
            f"{s['offeredRate']:>9g} {s['sentRate']:>7.1f} {s['comparedRate']:>10.1f} "
            f"{s['comparedShare']:>6.3f} {s['droppedBusy']:>5} {s['skipped']:>5} "
            f"{s['unaccounted']:>5} {s['cores']:>7.2f} {per if per is not None else '-':>9} "
            f"{s['rssMaxMiB']:>8.1f} {s['machineBusyCores']:>7.2f} "
            f"{(s['clientP99'] or 0) * 1000:>8.1f}ms {ms(s['upstreamP95'].get('candidate')):>7}/"
            f"{ms(s['upstreamP95'].get('baseline')):<8}"
        )
    print("   cmp CPU: the comparator's cores (CPU-s per s); per CPU-s: compared per "
          "CPU-second of the comparator (= per core); machine: busy cores of the whole "
          "host; lost: copies sent that the comparator never counted (offered - compared "
          "- skipped - dropped); ask p95: the comparator's own timing of its asks to the "
          "shadow (new) and the baseline (old) in that step, from its histogram")  # fmt: skip
    roles = sorted({k for st in doc["steps"] for k in st.get("pipelineCores", {})})
    if roles:
        print("   cores used per step by each process on the way (from /proc):")
        print("   " + f"{'offered/s':>9}" + "".join(f"{r:>15}" for r in roles))
        for st in doc["steps"]:
            cores = st.get("pipelineCores", {})
            print("   " + f"{st['offeredRate']:>9g}" + "".join(
                f"{cores.get(r, 0):>15.2f}" for r in roles))  # fmt: skip
    up = doc["keepsUpTo"]
    print(f"   keeps up (compared >= {KEEPS_UP:.0%} of sent, no drop) up to: "
          f"{f'{up:g} req/s' if up else 'none of the rates'}")  # fmt: skip
    k = doc["soak"]
    print()
    print(f"2. Memory: {k['seconds']:g} s at {k['rate']:g} req/s, {k['compared']} compared, "
          f"{k['dropped']} dropped, RSS every {SOAK_EVERY:g} s ({k['samples']} samples; "
          f"{doc['rssIdleMiB']} MiB before any copy)")  # fmt: skip
    print(f"   RSS first {k['rssFirstMiB']} MiB, last {k['rssLastMiB']} MiB, max "
          f"{k['rssMaxMiB']} MiB; growth {k['growthMiBPer10k']} MiB per 10k compared")  # fmt: skip
    lat = doc["latency"]
    print()
    print(f"3. Client latency through Envoy, {lat['requests']} requests at "
          f"{lat['rate']:g} req/s each (ms)")  # fmt: skip
    print(f"   {'route':<34}{'p50':>8}{'p90':>8}{'p99':>8}  answers")
    for method in ("GET", "POST"):
        for key, what in (
            ("stable", "Stable (no mirror)"),
            ("shadowing", "Shadowing (mirror 100 %)"),
            ("stableAfter", "Stable again (after abort)"),
        ):
            f = lat[method][key]
            print(f"   {method + ' ' + what:<34}{f['p50'] * 1000:>8.2f}{f['p90'] * 1000:>8.2f}"
                  f"{f['p99'] * 1000:>8.2f}  {f['statuses']}")  # fmt: skip
        a = lat["added"][method]
        print(f"   {method + ' added (shadowing - Stable)':<34}{a['p50'] * 1000:>+8.2f}"
              f"{a['p90'] * 1000:>+8.2f}{a['p99'] * 1000:>+8.2f}")  # fmt: skip
    print("   added: shadowing minus the mean of the two Stable runs. POST copies are "
          "mirrored too but not replayed (skipped, method): the comparator answers them "
          "and does nothing else, so POST shows the mirror alone, GET the mirror plus "
          "the comparisons' CPU on the shared cores.")  # fmt: skip
    print(f"   stage held as Shadowing through the run: {doc['stageHeld']} "
          f"(verdict {doc['comparison']['verdict']}, {doc['comparison']['compared']} "
          f"compared, {doc['comparison']['mismatched']} mismatched)")  # fmt: skip


# ---------------------------------------------------------------- --in-process


async def in_process(copies: int, concurrency: int) -> dict[str, Any]:
    """The comparator against two loopback upstreams, in this process (see the module)."""
    import aiohttp
    from aiohttp import web
    from shadowroute.compare.config import Config
    from shadowroute.compare.server import Comparator

    loopback = "127.0.0.1"

    async def upstream() -> tuple[web.AppRunner, int]:
        async def answer(request: web.Request) -> web.Response:
            return web.json_response({"id": request.query.get("i"), "price": 10, "tags": ["a"]})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, loopback, 0).start()
        return runner, runner.addresses[0][1]

    (c_runner, c_port), (b_runner, b_port) = await upstream(), await upstream()
    config = Config(
        candidate=f"http://{loopback}:{c_port}",
        baseline=f"http://{loopback}:{b_port}",
        route="bench",
        revision="r1",
        listen_port=0,
        admin_port=0,
        listen_address=loopback,
        max_in_flight=256,
    )
    comparator = Comparator(config, {})
    await comparator.start()
    url = f"http://{loopback}:{comparator.listen_port}/items"
    queue = iter(range(copies))
    cpu0, start = time.process_time(), time.perf_counter()
    async with aiohttp.ClientSession() as client:

        async def sender() -> None:
            for i in queue:
                async with client.get(url, params={"i": str(i)}) as response:
                    await response.read()

        await asyncio.gather(*(sender() for _ in range(concurrency)))
        sent = time.perf_counter() - start
    await comparator.stop(grace=60)  # waits for the comparisons in progress
    done, cpu = time.perf_counter() - start, time.process_time() - cpu0
    k = comparator.comparison
    for runner in (c_runner, b_runner):
        await runner.cleanup()
    return {
        "copies": copies,
        "concurrency": concurrency,
        "takenPerSecond": round(copies / sent, 1),
        "comparedPerSecond": round(k.tally.compared / done, 1),
        "compared": k.tally.compared,
        "mismatched": k.tally.mismatched,
        "dropped": dict(k.dropped),
        "cpuSeconds": round(cpu, 3),
        "comparedPerCpuSecond": round(k.tally.compared / cpu, 1) if cpu else None,
        "latency": k.summary()["latency"],
    }


# ---------------------------------------------------------------- main


def rates(text: str) -> list[float]:
    out = [float(x) for x in text.split(",") if x.strip()]
    if not out or any(not 0 < r <= 1000 for r in out):
        raise argparse.ArgumentTypeError("rates in (0, 1000] req/s, comma-separated")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=rates, default=[50, 100, 200, 400], help="req/s steps")
    parser.add_argument("--step", type=float, default=20, help="seconds per step")
    parser.add_argument("--soak", type=float, default=60, help="seconds of the memory run")
    parser.add_argument("--soak-rate", type=float, default=100)
    parser.add_argument("--latency-rate", type=float, default=100)
    parser.add_argument("--latency-requests", type=int, default=1000)
    parser.add_argument("--in-process", action="store_true", help="the floor, no cluster")
    parser.add_argument("--copies", type=int, default=5000, help="--in-process: copies")
    parser.add_argument("--concurrency", type=int, default=32, help="--in-process: senders")
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
    parser.add_argument("--json", dest="output", action="store_const", const="json")
    args = parser.parse_args(argv)
    if args.in_process:
        doc = asyncio.run(in_process(args.copies, args.concurrency))
        if args.output == "json":
            print(json.dumps(doc, indent=2))
            return 0
        print(f"in-process floor (one process, one event loop: comparator, 2 loopback "
              f"upstreams, sender; {os.cpu_count()} shared cores)")  # fmt: skip
        print(f"  copies sent: {doc['copies']} at concurrency {doc['concurrency']}")
        print(f"  taken: {doc['takenPerSecond']:.0f}/s; compared: {doc['comparedPerSecond']:.0f}/s")
        print(f"  compared {doc['compared']}, mismatched {doc['mismatched']}, "
              f"dropped {doc['dropped']}")  # fmt: skip
        print(f"  CPU of the whole process: {doc['cpuSeconds']} s, "
              f"{doc['comparedPerCpuSecond']} compared per CPU-second")  # fmt: skip
        lat = doc["latency"]
        print(f"  upstream p50/p95 s: candidate {lat['candidate']}, baseline {lat['baseline']}")
        return 0
    doc = run(args)
    if args.output == "json":
        print(json.dumps(doc, indent=2))
    else:
        print_table(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
