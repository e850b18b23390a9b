"""Scale: N idle routes on one operator, against the control plane's own floor.

    python bench/scale.py [--routes 1000] [--concurrency 16] [--rest 120] [--resync 60]
                          [--analysing 50] [--interval 5s] [--breaches 3] [--timeout 3600]
                          [--no-floor] [--trace-frames 8]

Phases, in order, each printed as it ends (docs/benchmarks.md, "Scale"):

1. floor: what the operator writes per idle route (2 Deployments, primary at 1 replica
   and canary at 0, and 3 Services), created by a bare client in a namespace of its
   own, at the same concurrency; create -> primary Deployment available, p50/p99 and
   the total. The namespace is then deleted and waited for, so that the operator's
   phase starts on the same control plane.
2. background: the API server's requests over --baseline seconds with no operator
   running, to tell the cluster's own traffic (controllers, kwok) from the operator's.
3. apply -> Ready: N minimal ShadowRoutes (replicas 1, provider none, no analysis: the
   cheapest idle route), created at --concurrency; create -> Ready=True, p50/p99 and
   the total, the ratio to the floor; the operator's writes per route
   (shadowroute_api_writes_total) until the writes stop.
4. rest: --rest seconds with nothing changing. The operator runs with
   SHADOWROUTE_RESYNC_SECONDS=--resync (the default 300 s would not fit a window), so
   the window holds each route's resync. Reads and writes per minute are counted at
   the API server (GET /metrics of the kube-apiserver, `apiserver_request_total`, by
   verb and resource, the delta over the window; leases and events excluded: those
   are the components' heartbeats and the Events written when something happened);
   the background is shown beside them. Also the operator's own counters and its
   RSS, sampled through the window (first/min/max/last).
5. breach -> weight 0 for one route while the N sit idle: bench/rollback_latency.py's
   sim mode (hack/traffic_sim.py writes the pods' counters for Prometheus), --breaches
   times, in a second namespace the simulator reads (the N idle routes are not
   simulated); the median against the goal, interval + 1 s.
6. Prometheus queries per tick while --analysing K routes (the error-rate preset with
   minRequests) are in analysis at once: the operator's query counter and Prometheus's own
   prometheus_http_requests_total{handler="/api/v1/query"}, over a few intervals.
7. memory: the operator restarted with SHADOWROUTE_TRACEMALLOC=--trace-frames on the
   N idle routes alone (the analysis namespace deleted first); its writes after the
   restart, its RSS traced, the traced heap right after the restart's reconciles and
   once steady (kopf's per-object workers keep the last event of their LIST for a
   while), and /debug/memory's top 15 sites by file, the top packages and the top 8
   stacks.

Refused at once (exit code 2) when the schedulable nodes have no room for --routes more
pods: each idle route holds one, and a route whose pod stays Pending never gets Ready.

Bounded: every wait takes from --timeout, and an alarm ends the run (cleaning up) when
it is spent. Everything it creates is in its own namespaces, deleted at the end. Runs
against $KUBECONFIG (with SHADOWROUTE_PROMETHEUS and SHADOWROUTE_PROMETHEUS_TARGETS)
or the local cluster, started and stopped if it was down.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import re
import signal
import statistics
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from _common import OperatorProcess, open_bench, percentile, prometheus_of_cluster

GROUP, VERSION, PLURAL = "shadowroute.io", "v1alpha1", "shadowroutes"
IDLE_IMAGE = "bench/app:1"
EXCLUDED = ("leases", "events")
READS, WATCHES = ("GET", "LIST"), ("WATCH",)
WRITES = ("POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION")
SAMPLE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class Spent(Exception):
    """The --timeout is spent."""


class Budget:
    """What is left of --timeout; every wait takes from it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self, cap: float = math.inf) -> float:
        return max(0.0, min(cap, self.end - time.monotonic()))

    def wait(self, check: Any, what: str, cap: float = math.inf, every: float = 0.5) -> Any:
        deadline = time.monotonic() + self.left(cap)
        while True:
            got = check()
            if got:
                return got
            if time.monotonic() >= deadline:
                raise Spent(f"timed out waiting for {what}")
            time.sleep(every)


# --------------------------------------------------------------------------- settings


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise SystemExit(f"scale.py: {message}")


def seconds_of(text: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 5s or 1m")
    return int(m[1]) * {"ms": 0.001, "s": 1, "m": 60}[m[2]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--routes", type=int, default=1000, help="idle routes (default 1000)")
    p.add_argument("--concurrency", type=int, default=16, help="creates in flight (16)")
    p.add_argument("--rest", type=float, default=120, help="seconds measured at rest (120)")
    p.add_argument("--resync", type=float, default=60, help="operator resync seconds (60)")
    p.add_argument("--baseline", type=float, default=20, help="seconds without operator (20)")
    p.add_argument("--analysing", type=int, default=50, help="routes in analysis at once (50)")
    p.add_argument("--interval", default="5s", help="analysis interval (default 5s)")
    p.add_argument("--breaches", type=int, default=3, help="breach runs (default 3)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds in all (3600)")
    p.add_argument("--no-floor", action="store_true", help="skip the bare-client floor")
    p.add_argument(
        "--trace-frames", type=int, default=8, help="frames per allocation when traced (8)"
    )
    args = p.parse_args(argv)
    interval = seconds_of(args.interval) if re.fullmatch(r"\d+(ms|s|m)", args.interval) else 0
    problems = [
        (args.routes < 1, "--routes must be at least 1"),
        (not 1 <= args.concurrency <= 256, "--concurrency must be 1..256"),
        (args.rest <= 0, "--rest must be positive"),
        (args.resync < 1, "--resync must be at least 1 second"),
        (args.resync > args.rest, "--resync must not exceed --rest (the window holds a resync)"),
        (args.baseline < 0, "--baseline must not be negative"),
        (args.analysing < 0, "--analysing must not be negative"),
        (args.breaches < 0, "--breaches must not be negative"),
        (args.timeout <= 0, "--timeout must be positive"),
        (not 1 <= args.trace_frames <= 25, "--trace-frames must be 1..25"),
        (not interval >= 1, f"--interval {args.interval!r}: a duration of at least 1s, like 5s"),
    ]
    for bad, message in problems:
        if bad:
            p.error(message)
    args.interval_seconds = interval
    return args


# --------------------------------------------------------------------------- objects


def idle_route(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ShadowRoute",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "template": {"spec": {"containers": [{"name": "app", "image": IDLE_IMAGE}]}},
            "service": {"ports": [{"port": 80}]},
            "strategy": {"canary": {"steps": [{"weight": 50}]}},
        },
    }


def floor_objects(name: str) -> list[tuple[str, dict[str, Any]]]:
    """(collection, body) of what the operator makes for an idle route, owned by nobody."""

    def deployment(role: str, replicas: int) -> dict[str, Any]:
        labels = {"floor.bench/name": name, "floor.bench/role": role}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"{name}-{role}", "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": IDLE_IMAGE}]},
                },
            },
        }

    def service(suffix: str, role: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"{name}{suffix}"},
            "spec": {
                "selector": {"floor.bench/name": name, "floor.bench/role": role},
                "ports": [{"port": 80}],
            },
        }

    return [
        ("deployments", deployment("primary", 1)),
        ("deployments", deployment("canary", 0)),
        ("services", service("", "primary")),
        ("services", service("-primary", "primary")),
        ("services", service("-canary", "canary")),
    ]


def collection(resource: str, namespace: str) -> str:
    if resource == "deployments":
        return f"/apis/apps/v1/namespaces/{namespace}/deployments"
    if resource == PLURAL:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"/api/v1/namespaces/{namespace}/{resource}"


# --------------------------------------------------------------------------- API access


class Api:
    """Raw calls through the kubernetes client's ApiClient (JSON in, dicts out)."""

    def __init__(self, concurrency: int) -> None:
        import kubernetes

        config = kubernetes.client.Configuration.get_default_copy()
        config.connection_pool_maxsize = concurrency + 4
        self.client = kubernetes.client.ApiClient(config)
        self.exc = kubernetes.client.exceptions.ApiException

    def call(self, method: str, path: str, body: Any = None, query: Any = None, timeout: Any = 60):
        """The raw response (urllib3's, unread: a watch streams from it); ApiException."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        method, url, headers, body, _ = self.client.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body,
            auth_settings=["BearerToken"],
        )  # fmt: skip
        resp = self.client.call_api(
            method, url, header_params=headers, body=body, _request_timeout=timeout
        )
        if not 200 <= resp.status < 300:
            resp.read()
            raise self.exc(http_resp=resp)
        return resp.response

    def json(self, method: str, path: str, body: Any = None, query: Any = None) -> Any:
        data = self.call(method, path, body, query).data
        return json.loads(data) if data else None

    def create(self, path: str, body: dict[str, Any]) -> None:
        for attempt in range(5):  # a busy API server answers 429/5xx: back off and retry
            try:
                self.json("POST", path, body)
                return
            except self.exc as exc:
                if exc.status not in (429, 500, 503, 504) or attempt == 4:
                    raise
                time.sleep(0.5 * 2**attempt)

    def metrics(self) -> str:
        return self.call("GET", "/metrics").data.decode()


class ReadyWatch(threading.Thread):
    """List, then watch, a collection; the first time each object reads as ready, on
    this host's clock. A watch that ends or expires (410 Gone) lists again."""

    def __init__(self, api: Api, path: str, ready: Any) -> None:
        super().__init__(daemon=True)
        self.api, self.path, self.is_ready = api, path, ready
        self.at: dict[str, float] = {}
        self.stop = threading.Event()
        self.started = threading.Event()

    def _see(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name not in self.at and self.is_ready(obj):
            self.at[name] = time.monotonic()

    def _list(self) -> str:
        token, rv = "", ""
        while True:
            query = [("limit", "500")] + ([("continue", token)] if token else [])
            page = self.api.json("GET", self.path, query=query)
            for obj in page.get("items") or []:
                self._see(obj)
            token = page["metadata"].get("continue") or ""
            rv = rv or page["metadata"]["resourceVersion"]
            if not token:
                return rv

    def run(self) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        rv = ""
        while not self.stop.is_set():
            try:
                rv = rv or self._list()
                self.started.set()
                query = [("watch", "1"), ("resourceVersion", rv), ("timeoutSeconds", "30"),
                         ("allowWatchBookmarks", "true")]  # fmt: skip
                resp = self.api.call("GET", self.path, query=query, timeout=(10, 60))
                for line in iter_resp_lines(resp):
                    if self.stop.is_set():
                        break
                    ev = json.loads(line)
                    if ev["type"] == "ERROR":
                        rv = ""  # 410 Gone: too old; list again
                        break
                    rv = ev["object"]["metadata"].get("resourceVersion") or rv
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self._see(ev["object"])
                resp.release_conn()
            except Exception:  # a dropped connection: list again, after a breath
                rv = ""
                self.stop.wait(1)


def ready_condition(obj: dict[str, Any]) -> bool:
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def primary_available(obj: dict[str, Any]) -> bool:
    return obj["metadata"]["name"].endswith("-primary") and bool(
        (obj.get("status") or {}).get("availableReplicas")
    )


def create_all(api: Api, items: list[tuple[str, list[tuple[str, dict]]]], workers: int) -> dict:
    """Create each item's objects in order, `workers` items at once; the monotonic
    time each item's first create was sent."""
    done: dict[str, float] = {}

    def one(key: str, objects: list[tuple[str, dict]]) -> None:
        started = time.monotonic()
        for path, body in objects:
            api.create(path, body)
        done[key] = started

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(one, k, objs) for k, objs in items]:
            f.result()
    return done


def latency_line(what: str, created: dict[str, float], ready: dict[str, float], t0: float) -> str:
    lat = [ready[k] - created[k] for k in created if k in ready]
    if not lat:
        return f"{what}: none ready"
    last = max(ready[k] for k in created if k in ready)
    return (
        f"{what}: {len(lat)}/{len(created)} ready; p50 {percentile(lat, 50):.2f}s  "
        f"p99 {percentile(lat, 99):.2f}s  max {max(lat):.2f}s; all ready "
        f"{last - t0:.1f}s after the first create"
    )


# --------------------------------------------------------------------------- counting


def request_totals(text: str) -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (verb, resource[/subresource])."""
    out: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition(" ")
        labels = dict(SAMPLE.findall(labels_text))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        out[(labels.get("verb", ""), resource)] += float(value)
    return out


def delta(after: Counter, before: Counter) -> Counter:
    return Counter({k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)})


def by_class(d: Counter) -> dict[str, float]:
    """reads, watches, writes and excluded, from a delta."""
    out = {"reads": 0.0, "watches": 0.0, "writes": 0.0, "excluded": 0.0}
    for (verb, resource), n in d.items():
        if resource.split("/")[0] in EXCLUDED:
            out["excluded"] += n
        elif verb in READS:
            out["reads"] += n
        elif verb in WATCHES:
            out["watches"] += n
        elif verb in WRITES:
            out["writes"] += n
    return out


def top_requests(d: Counter, seconds: float, n: int = 8) -> str:
    rows = sorted(
        ((k, v) for k, v in d.items() if k[1].split("/")[0] not in EXCLUDED),
        key=lambda kv: -kv[1],
    )
    return ", ".join(f"{verb} {res} {v * 60 / seconds:.1f}" for (verb, res), v in rows[:n])


def prometheus_counter(url: str, prefix: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def rss_of(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def control_plane_rss() -> str:
    """RSS of the local cluster's processes (empty for another cluster)."""
    import os

    if os.environ.get("KUBECONFIG"):
        return ""
    import cluster

    state = cluster.load_state() or {}
    wanted = ("etcd", "kube-apiserver", "kube-controller-manager", "kwok")
    parts = [
        f"{p['name']} {rss_of(p['pid']):.0f}"
        for p in state.get("processes", [])
        if p.get("name") in wanted
    ]
    return ", ".join(parts)


def settle(op: OperatorProcess, budget: Budget, quiet: float = 5, cap: float = 120) -> None:
    """Until the operator made no write for `quiet` seconds (at most `cap`)."""
    end = time.monotonic() + budget.left(cap)
    since, last = time.monotonic(), op.writes()
    while time.monotonic() - since < quiet and time.monotonic() < end:
        time.sleep(0.5)
        now = op.writes()
        if now != last:
            since, last = time.monotonic(), now


# --------------------------------------------------------------------------- phases


def say(line: str) -> None:
    print(line, flush=True)


def pod_room(core: Any) -> tuple[int, int]:
    """(pods the schedulable nodes still take, nodes counted): each idle route holds one
    pod, and past the nodes' room its pod stays Pending and the route never gets Ready."""
    from kubernetes.utils import parse_quantity

    nodes = [n for n in core.list_node().items if not n.spec.unschedulable]
    room = sum(int(parse_quantity((n.status.allocatable or {}).get("pods", "0"))) for n in nodes)
    live = core.list_pod_for_all_namespaces(
        field_selector="status.phase!=Succeeded,status.phase!=Failed"
    )
    return room - len(live.items), len(nodes)


def floor_phase(api: Api, core: Any, args: argparse.Namespace, budget: Budget) -> float:
    ns = f"{args.ns}-floor"
    core.create_namespace({"metadata": {"name": ns}})
    try:
        watch = ReadyWatch(api, collection("deployments", ns), primary_available)
        watch.start()
        budget.wait(watch.started.is_set, "the floor's watch", cap=60, every=0.1)
        items = [
            (f"f{i:05d}-primary", [(collection(r, ns), b) for r, b in floor_objects(f"f{i:05d}")])
            for i in range(args.routes)
        ]
        t0 = time.monotonic()
        created = create_all(api, items, args.concurrency)
        say(f"floor: created {5 * args.routes} objects in {time.monotonic() - t0:.1f}s")
        budget.wait(lambda: len(watch.at) >= args.routes, "the floor's Deployments", every=0.5)
        watch.stop.set()
        say(latency_line("floor create -> primary available", created, watch.at, t0))
        return max(watch.at.values()) - t0
    finally:
        t1 = time.monotonic()
        core.delete_namespace(ns)
        budget.wait(lambda: not namespace_exists(core, ns), f"namespace {ns} gone", cap=900)
        say(f"floor: namespace deleted and gone in {time.monotonic() - t1:.1f}s")


def namespace_exists(core: Any, ns: str) -> bool:
    import kubernetes

    try:
        core.read_namespace(ns)
        return True
    except kubernetes.client.exceptions.ApiException as exc:
        if exc.status == 404:
            return False
        raise


def rest_phase(api: Api, op: OperatorProcess, args: argparse.Namespace, base: Any) -> None:
    before, w0, r0 = request_totals(api.metrics()), op.writes(), op.reconciles()
    samples, start = [op.rss_mib()], time.monotonic()
    while time.monotonic() - start < args.rest:
        time.sleep(min(5, args.rest - (time.monotonic() - start)))
        samples.append(op.rss_mib())
    d = delta(request_totals(api.metrics()), before)
    seconds = time.monotonic() - start
    c = by_class(d)
    per_min = {k: v * 60 / seconds for k, v in c.items()}
    say(
        f"at rest, at the API server over {seconds:.0f}s (resync {args.resync:.0f}s): "
        f"reads {per_min['reads']:.1f}/min, writes {per_min['writes']:.1f}/min, "
        f"watches started {per_min['watches']:.1f}/min (leases and events excluded: "
        f"{per_min['excluded']:.1f}/min)"
    )
    if base is not None:
        bc, bsec = base
        say(
            f"  background without the operator ({bsec:.0f}s): reads "
            f"{bc['reads'] * 60 / bsec:.1f}/min, writes {bc['writes'] * 60 / bsec:.1f}/min"
        )
        extra = c["reads"] - bc["reads"] * seconds / bsec
    else:
        extra = c["reads"]
    reconciles = op.reconciles() - r0
    per = extra / max(reconciles, 1)
    say(
        f"  reads beyond the background: {per:.2f} per reconcile at rest; at the default "
        f"300s resync, {args.routes} routes make {per * args.routes / 5:.1f} reads/min"
    )
    say(f"  by verb and resource (/min): {top_requests(d, seconds)}")
    say(
        f"operator at rest: {op.writes() - w0:.0f} writes, {reconciles:.0f} reconciles "
        f"({reconciles / args.routes:.1f} per route)"
    )
    say(
        f"operator RSS at rest: {samples[-1]:.0f} MiB ({args.routes} routes; over the window "
        f"first {samples[0]:.0f}, min {min(samples):.0f}, max {max(samples):.0f} MiB)"
    )
    cp = control_plane_rss()
    if cp:
        say(f"control plane RSS (MiB): {cp}")


def breach_phase(bench: Any, ns: str, prometheus: str, args: argparse.Namespace, budget: Budget):
    from rollback_latency import sim_run

    lat = []
    for i in range(1, args.breaches + 1):
        if budget.left() < 60:
            say("breach: skipped the remaining runs (--timeout nearly spent)")
            break
        lat.append(sim_run(bench.custom, ns, i, prometheus, args.interval)["latency"])
    if lat:
        goal = args.interval_seconds + 1
        med = statistics.median(lat)
        say(
            f"breach -> weight 0 while {args.routes} routes idle: median {med:.2f}s over "
            f"{len(lat)} runs (min {min(lat):.2f}s, max {max(lat):.2f}s); goal interval + 1s "
            f"= {goal:.0f}s: {'met' if med <= goal else 'NOT met'}"
        )


def analysis_phase(
    bench: Any, ns: str, op: OperatorProcess, prometheus: str, args: argparse.Namespace,
    budget: Budget,
) -> None:  # fmt: skip
    from rollback_latency import sim_body

    k, custom = args.analysing, bench.custom
    names = [f"an-{j:04d}" for j in range(k)]
    for name in names:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            PLURAL,
            sim_body(name, "bench/app:1", "0", prometheus, args.interval),
        )

    def phases() -> list[dict]:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
        return [i.get("status") or {} for i in items if i["metadata"]["name"] in names]

    budget.wait(lambda: sum(s.get("phase") == "Stable" for s in phases()) == k, "Stable", 300)
    for name in names:
        good = sim_body(name, "bench/app:2", "0", prometheus, args.interval)
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name, {"spec": good["spec"]}
        )
    mark = time.time()

    def analysing() -> bool:
        runs = [s.get("analysis", {}).get("lastRunAt") for s in phases()]
        return sum(bool(r) and _ts(r) > mark for r in runs) == k

    budget.wait(analysing, f"{k} routes in analysis", 300)
    window = max(3 * args.interval_seconds, 15)
    q0 = op.sum("shadowroute_prometheus_query_duration_seconds_count")
    a0 = op.sum("shadowroute_analysis_runs_total{")
    handler = 'prometheus_http_requests_total{code="200",handler="/api/v1/query"}'
    p0 = prometheus_counter(prometheus, handler)
    time.sleep(window)
    queries = op.sum("shadowroute_prometheus_query_duration_seconds_count") - q0
    runs = op.sum("shadowroute_analysis_runs_total{") - a0
    served = prometheus_counter(prometheus, handler) - p0
    ticks = window / args.interval_seconds
    still = sum(s.get("phase") == "Progressing" for s in phases())
    say(
        f"Prometheus queries per tick with {k} routes in analysis (the error-rate preset, "
        f"interval {args.interval}): operator {queries / ticks:.1f} ({queries / max(runs, 1):.1f} "
        f"per analysis run, {runs / ticks:.1f} runs per tick); Prometheus answered "
        f"{served / ticks:.1f} /api/v1/query per tick; {still}/{k} still Progressing"
    )


def _ts(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def memory_phase(config: str, namespaces: list[str], args: argparse.Namespace, budget: Budget):
    env = {
        "SHADOWROUTE_TRACEMALLOC": str(args.trace_frames),
        "SHADOWROUTE_RESYNC_SECONDS": str(args.resync),
    }
    op = OperatorProcess(config, None, *(a for n in namespaces for a in ("-n", n)), env=env)
    op.spawn()  # traced, it starts slower than OperatorProcess.start waits for

    def serving() -> bool:
        if op.proc is not None and op.proc.poll() is not None:
            raise Spent(f"the traced operator exited; see {op.log}")
        try:
            return bool(op.metrics())
        except OSError:
            return False

    try:
        budget.wait(serving, "the traced operator's /metrics", 300)
        t0 = time.monotonic()
        budget.wait(lambda: op.reconciles() >= args.routes, "the restart's reconciles", 900)
        settle(op, budget)
        say(
            f"restart (traced): {args.routes} routes reconciled in {time.monotonic() - t0:.1f}s; "
            f"writes after the restart: {op.writes():.0f}; RSS traced {op.rss_mib():.0f} MiB"
        )

        def memory(by: str, top: int) -> str:
            url = f"http://127.0.0.1:{op.metrics_port}/debug/memory?top={top}&by={by}"
            with urllib.request.urlopen(url, timeout=120) as r:
                return r.read().decode()

        def traced() -> float:
            return float(re.search(r"traced ([\d.]+) MiB now", memory("package", 1))[1])

        # Right after the restart the heap still holds what kopf's LISTs decoded (its
        # per-object workers keep their last event until they idle out): wait until
        # the traced total is steady, so the sites shown are what stays at rest.
        first, t1 = traced(), time.monotonic()
        steady = first
        while time.monotonic() - t1 < min(180, budget.left() - 20):
            time.sleep(10)
            now = traced()
            if abs(now - steady) <= 0.02 * steady:
                break
            steady = now
        say(
            f"traced heap: {first:.1f} MiB right after the restart's reconciles, "
            f"{traced():.1f} MiB {time.monotonic() - t1:.0f}s later (steady)"
        )
        for by, top in (("file", 15), ("package", 10), ("traceback", 8)):
            say(f"memory by {by} (/debug/memory):")
            for line in memory(by, top).splitlines():
                say(f"  {line[:400]}")
    finally:
        op.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = Budget(args.timeout)

    def alarm(*_: Any) -> None:
        raise Spent(f"--timeout {args.timeout:.0f}s spent")

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(int(args.timeout) + 1)
    bench = open_bench("bench-scale", prometheus=True)  # a missing setting stops it here
    prometheus, targets = prometheus_of_cluster()
    config, _, ns = bench.parts()
    args.ns = ns
    room, nodes = pod_room(bench.core)
    if room < args.routes:
        signal.alarm(0)
        bench.close()
        print(
            f"scale.py: --routes {args.routes} needs {args.routes} pods at once; the "
            f"{nodes} schedulable nodes have room for {room} more (add nodes, or raise "
            f"their allocatable pods)",
            file=sys.stderr,
        )
        return 2
    ns_a = f"{ns}-analysis"
    bench.core.create_namespace({"metadata": {"name": ns_a}})
    api = Api(args.concurrency)
    env = {"SHADOWROUTE_RESYNC_SECONDS": str(args.resync)}
    op = OperatorProcess(config, None, "-n", ns, "-n", ns_a, env=env)
    sim = None
    code = 1
    say(
        f"scale: {args.routes} idle routes (replicas 1, provider none, no analysis), "
        f"concurrency {args.concurrency}, namespace {ns}"
    )
    try:
        floor = None if args.no_floor else floor_phase(api, bench.core, args, budget)
        base = None
        if args.baseline:
            b0 = request_totals(api.metrics())
            time.sleep(args.baseline)
            base = (by_class(delta(request_totals(api.metrics()), b0)), args.baseline)
        op.start()
        watch = ReadyWatch(api, collection(PLURAL, ns), ready_condition)
        watch.start()
        budget.wait(watch.started.is_set, "the routes' watch", cap=60, every=0.1)
        items = [(f"r{i:05d}", [(collection(PLURAL, ns), idle_route(f"r{i:05d}"))])
                 for i in range(args.routes)]  # fmt: skip
        t0 = time.monotonic()
        created = create_all(api, items, args.concurrency)
        say(f"created {args.routes} ShadowRoutes in {time.monotonic() - t0:.1f}s")
        budget.wait(lambda: len(watch.at) >= args.routes, "every route Ready")
        watch.stop.set()
        say(latency_line("apply -> Ready=True", created, watch.at, t0))
        total = max(watch.at.values()) - t0
        if floor:
            say(
                f"ratio to the floor (all ready): {total / floor:.2f} ({total:.1f}s / {floor:.1f}s)"
            )
        settle(op, budget)
        writes = op.writes()
        say(
            f"operator writes to reach Ready and settle: {writes:.0f} "
            f"({writes / args.routes:.2f} per route)"
        )
        rest_phase(api, op, args, base)
        if args.breaches or args.analysing:
            from rollback_latency import start_sim

            sim = start_sim(config, ns_a, targets)
        if args.breaches:
            breach_phase(bench, ns_a, prometheus, args, budget)
        if args.analysing:
            analysis_phase(bench, ns_a, op, prometheus, args, budget)
        op.stop()
        if sim is not None:
            sim.terminate()
            sim.wait(10)
            sim = None
        bench.core.delete_namespace(ns_a)
        budget.wait(lambda: not namespace_exists(bench.core, ns_a), f"{ns_a} gone", 300)
        memory_phase(config, [ns], args, budget)
        code = 0
    except (Spent, RuntimeError) as exc:
        print(f"scale.py: {exc}", file=sys.stderr)
    finally:
        signal.alarm(0)
        op.stop()
        if sim is not None:
            sim.terminate()
            sim.wait(10)
        for name in (ns_a,):
            if namespace_exists(bench.core, name):
                bench.core.delete_namespace(name)
        bench.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
