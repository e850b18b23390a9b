"""Traffic simulator: stands in for users on a cluster whose pods are fake (kwok).

    python hack/traffic_sim.py [--namespace 'demo-*'] [--rps 50] [--max-runtime 3600]

It reads the live objects from the API server, the way a data plane would:

- provider none: the entry Service `<name>`'s selector, and the ready pods it matches;
- gatewayapi: the HTTPRoute's backendRef weights and its RequestMirror filter
  (percent, or fraction; 100 % when neither is set);
- nginx: the `<name>-canary` Ingress's `nginx.ingress.kubernetes.io/canary-weight`
  (of `canary-weight-total`), and a `mirror-target` on the stable Ingress;
- istio: the VirtualService's route weights, `mirror` and `mirrorPercentage`;

then "sends" a steady request rate per ShadowRoute (`--rps`, or the route's
`sim.shadowroute.io/rps` annotation; 0 is no traffic at all) to the ready pods of each
version, with that version's profile, read from its pods' annotations:

    sim.shadowroute.io/error-rate: "0.2"     # share of requests answered 500
    sim.shadowroute.io/latency-p50: "0.05"   # seconds
    sim.shadowroute.io/latency-p95: "0.1"

It exports the outcome for Prometheus, on 127.0.0.1 only, in four widely used
conventions (the presets of the analysis query them):

- http: http_requests_total{namespace,service,pod,code,method} and the histogram
  http_request_duration_seconds (Prometheus client libraries; target labels as the
  Prometheus Operator attaches them);
- istio: istio_requests_total / istio_request_duration_milliseconds (reporter=destination);
- linkerd: response_total / response_latency_ms (direction=inbound);
- nginx: nginx_ingress_controller_requests / _request_duration_seconds.

`service` is the role's Service (`<name>-primary`, `-canary`, `-shadow`). It registers
itself in Prometheus' file_sd directory (`--targets-dir`, by default the local
cluster's) and removes that file when it stops. It never decides anything, and it
stops by itself after `--max-runtime` seconds. Requests are deterministic: counts and
errors are spread exactly (with carries), latencies follow a log-normal through a
low-discrepancy sequence, so the figures Prometheus sees are steady.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ANNOTATION = "sim.shadowroute.io/"
ROLES = ("primary", "canary", "shadow")
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ISTIO_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
LINKERD_BUCKETS_MS = (
    1,
    2,
    3,
    4,
    5,
    10,
    20,
    30,
    40,
    50,
    100,
    200,
    300,
    400,
    500,
    1000,
    2000,
    3000,
    4000,
    5000,
    10000,
    20000,
    30000,
    40000,
    50000,
)
CONVENTIONS = ("http", "istio", "linkerd", "nginx")
GOLDEN = (math.sqrt(5) - 1) / 2
NORMAL = NormalDist()


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """How one version answers: its error rate and latency (seconds)."""

    error_rate: float = 0.0
    p50: float = 0.05
    p95: float = 0.1

    @classmethod
    def from_annotations(cls, annotations: dict[str, str] | None) -> Profile:
        a = annotations or {}

        def number(key: str, default: float, low: float, high: float) -> float:
            try:
                value = float(a.get(ANNOTATION + key, default))
            except ValueError:
                return default
            return min(max(value, low), high) if math.isfinite(value) else default

        p50 = number("latency-p50", cls.p50, 1e-4, 600)
        return cls(
            error_rate=number("error-rate", cls.error_rate, 0.0, 1.0),
            p50=p50,
            p95=max(number("latency-p95", max(cls.p95, p50 * 2), 1e-4, 600), p50),
        )

    def latency(self, u: float) -> float:
        """The latency at quantile u: log-normal through p50 and p95."""
        sigma = max(math.log(self.p95 / self.p50) / NORMAL.inv_cdf(0.95), 1e-3)
        return self.p50 * math.exp(sigma * NORMAL.inv_cdf(min(max(u, 1e-6), 1 - 1e-6)))


# --------------------------------------------------------------------------- routing


@dataclass
class Split:
    """Where a route's requests go: share per role (summing to 1, or empty: nowhere),
    and the share of requests copied to the shadow."""

    shares: dict[str, float] = field(default_factory=dict)
    mirror: float = 0.0


def _role_of_backend(name: str, backend: str) -> str | None:
    for role in ROLES:
        if backend == f"{name}-{role}":
            return role
    return None


def _normalise(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {role: w / total for role, w in weights.items() if w > 0} if total > 0 else {}


def split_gatewayapi(name: str, route: dict[str, Any] | None, rule_name: str | None) -> Split:
    """Weights of the catch-all rule that routes to <name>-primary (the last such rule:
    preview and sticky rules come first and match only some requests)."""
    if not route:
        return Split()
    rules = (route.get("spec") or {}).get("rules") or []
    if rule_name:
        rules = [r for r in rules if r.get("name") == rule_name]
    weighted = [
        r
        for r in rules
        if any(b.get("name") == f"{name}-primary" for b in r.get("backendRefs") or [])
    ]
    if not weighted:
        return Split()
    rule = weighted[-1]
    weights: dict[str, float] = {}
    mirror = 0.0
    for ref in rule.get("backendRefs") or []:
        role = _role_of_backend(name, ref.get("name", ""))
        if role:
            weights[role] = weights.get(role, 0) + float(ref.get("weight", 1))
        mirror = max(mirror, _gateway_mirror(name, ref.get("filters")))
    mirror = max(mirror, _gateway_mirror(name, rule.get("filters")))
    return Split(_normalise(weights), mirror)


def _gateway_mirror(name: str, filters: Iterable[dict[str, Any]] | None) -> float:
    for f in filters or []:
        if f.get("type") != "RequestMirror":
            continue
        mirror = f.get("requestMirror") or {}
        if (mirror.get("backendRef") or {}).get("name") != f"{name}-shadow":
            continue
        if "percent" in mirror:
            return float(mirror["percent"]) / 100
        if "fraction" in mirror:
            fraction = mirror["fraction"]
            return float(fraction.get("numerator", 0)) / float(fraction.get("denominator", 100))
        return 1.0
    return 0.0


def split_nginx(name: str, stable: dict[str, Any] | None, canary: dict[str, Any] | None) -> Split:
    if not stable:
        return Split()
    shares = {"primary": 1.0}
    notes = (canary or {}).get("metadata", {}).get("annotations") or {}
    if canary and notes.get("nginx.ingress.kubernetes.io/canary") == "true":
        try:
            weight = float(notes.get("nginx.ingress.kubernetes.io/canary-weight", 0))
            total = float(notes.get("nginx.ingress.kubernetes.io/canary-weight-total", 100))
        except ValueError:
            weight, total = 0.0, 100.0
        share = min(max(weight / total, 0.0), 1.0) if total > 0 else 0.0
        shares = _normalise({"primary": 1 - share, "canary": share})
    target = (stable.get("metadata", {}).get("annotations") or {}).get(
        "nginx.ingress.kubernetes.io/mirror-target", ""
    )
    return Split(shares, 1.0 if f"{name}-shadow" in target else 0.0)


def split_istio(name: str, vs: dict[str, Any] | None) -> Split:
    if not vs:
        return Split()
    routes = [
        h
        for h in (vs.get("spec") or {}).get("http") or []
        if any(
            (d.get("destination") or {}).get("host", "").split(".")[0] == f"{name}-primary"
            for d in h.get("route") or []
        )
    ]
    if not routes:
        return Split()
    http = routes[-1]
    dests = http.get("route") or []
    weights: dict[str, float] = {}
    for d in dests:
        host = (d.get("destination") or {}).get("host", "").split(".")[0]
        role = _role_of_backend(name, host)
        if role:
            default = 100 if len(dests) == 1 else 0
            weights[role] = weights.get(role, 0) + float(d.get("weight", default))
    mirror = 0.0
    if (http.get("mirror") or {}).get("host", "").split(".")[0] == f"{name}-shadow":
        mirror = float((http.get("mirrorPercentage") or {}).get("value", 100)) / 100
    return Split(_normalise(weights), mirror)


def split_none(selector: dict[str, str] | None, pods: list[dict[str, Any]]) -> Split:
    """One Service: each ready pod it selects takes an equal share of connections."""
    if not selector:
        return Split()
    counts: dict[str, float] = {}
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if all(labels.get(k) == v for k, v in selector.items()):
            role = labels.get("shadowroute.io/role", "")
            counts[role] = counts.get(role, 0) + 1
    return Split(_normalise(counts))


def ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


# --------------------------------------------------------------------------- metrics


class Exporter:
    """The request metrics of every simulated pod, in the chosen conventions."""

    def __init__(self, conventions: Iterable[str]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.conventions = set(conventions)
        reg = self.registry
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests served.",
            ["namespace", "service", "pod", "code", "method"],
            registry=reg,
        )
        self.http_latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency.",
            ["namespace", "service", "pod"],
            buckets=HTTP_BUCKETS,
            registry=reg,
        )
        istio_labels = [
            "reporter",
            "source_workload",
            "destination_service_namespace",
            "destination_service_name",
            "destination_workload",
            "destination_workload_namespace",
            "response_code",
        ]
        self.istio_requests = Counter(
            "istio_requests", "Istio standard metric.", istio_labels, registry=reg
        )
        self.istio_latency = Histogram(
            "istio_request_duration_milliseconds",
            "Istio standard metric.",
            istio_labels,
            buckets=ISTIO_BUCKETS_MS,
            registry=reg,
        )
        self.linkerd_requests = Counter(
            "response",
            "Linkerd proxy responses.",
            ["namespace", "deployment", "pod", "direction", "classification", "status_code"],
            registry=reg,
        )
        self.linkerd_latency = Histogram(
            "response_latency_ms",
            "Linkerd proxy response latency.",
            ["namespace", "deployment", "pod", "direction"],
            buckets=LINKERD_BUCKETS_MS,
            registry=reg,
        )
        # ingress-nginx names this counter without "_total", which a prometheus_client
        # Counter would add: a Gauge that only grows keeps the real name.
        self.nginx_requests = Gauge(
            "nginx_ingress_controller_requests",
            "ingress-nginx requests.",
            ["namespace", "ingress", "service", "status", "canary"],
            registry=reg,
        )
        self.nginx_latency = Histogram(
            "nginx_ingress_controller_request_duration_seconds",
            "ingress-nginx latency.",
            ["namespace", "ingress", "service"],
            buckets=HTTP_BUCKETS,
            registry=reg,
        )
        self.series: dict[tuple[str, str], list[tuple[Any, tuple[str, ...]]]] = {}

    def record(
        self,
        namespace: str,
        name: str,
        role: str,
        pod: str,
        ok: int,
        errors: int,
        latencies: list[float],
        mirrored: bool,
    ) -> None:
        service = f"{name}-{role}"
        # Series of one pod go with the pod; the mesh's and the ingress's are per Service.
        per_pod = self.series.setdefault((namespace, pod), [])
        per_service = self.series.setdefault((namespace, "svc:" + service), [])

        def inc(metric: Any, labels: tuple[str, ...], amount: float, own: list) -> None:
            if amount:
                metric.labels(*labels).inc(amount)
                if (metric, labels) not in own:
                    own.append((metric, labels))

        def observe(metric: Any, labels: tuple[str, ...], scale: float, own: list) -> None:
            if latencies:
                child = metric.labels(*labels)
                for seconds in latencies:
                    child.observe(seconds * scale)
                if (metric, labels) not in own:
                    own.append((metric, labels))

        ingress = f"{name}-canary" if role == "canary" else name
        for code, n in (("200", ok), ("500", errors)):
            if "http" in self.conventions:
                inc(self.http_requests, (namespace, service, pod, code, "GET"), n, per_pod)
            if "istio" in self.conventions:
                labels = ("destination", "sim", namespace, service, service, namespace, code)
                inc(self.istio_requests, labels, n, per_service)
            if "linkerd" in self.conventions:
                outcome = "success" if code == "200" else "failure"
                labels = (namespace, service, pod, "inbound", outcome, code)
                inc(self.linkerd_requests, labels, n, per_pod)
            if "nginx" in self.conventions and not mirrored:
                canary = service if role == "canary" else ""
                labels = (namespace, ingress, service, code, canary)
                inc(self.nginx_requests, labels, n, per_service)
        if "http" in self.conventions:
            observe(self.http_latency, (namespace, service, pod), 1.0, per_pod)
        if "istio" in self.conventions:
            # Istio labels its histogram like its counter; one code per observation
            # would need per-request codes, so successes and errors share "200" here.
            labels = ("destination", "sim", namespace, service, service, namespace, "200")
            observe(self.istio_latency, labels, 1000.0, per_service)
        if "linkerd" in self.conventions:
            observe(self.linkerd_latency, (namespace, service, pod, "inbound"), 1000.0, per_pod)
        if "nginx" in self.conventions and not mirrored:
            observe(self.nginx_latency, (namespace, ingress, service), 1.0, per_service)

    def forget_pods(self, keep: set[tuple[str, str]]) -> None:
        """Pods that are gone stop exporting, as a real pod's metrics do."""
        for key in [k for k in self.series if k not in keep]:
            for metric, labels in self.series.pop(key):
                with contextlib.suppress(KeyError):
                    metric.remove(*labels)


# --------------------------------------------------------------------------- traffic


@dataclass
class PodState:
    """Carries so that fractions of requests and errors add up exactly over time."""

    requests: float = 0.0
    errors: float = 0.0
    k: int = 0


class Simulator:
    def __init__(self, api: Any, globs: list[str], rps: float, exporter: Exporter) -> None:
        import kubernetes

        self.core = kubernetes.client.CoreV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.globs = globs
        self.rps = rps
        self.exporter = exporter
        self.pods: dict[tuple[str, str], PodState] = {}
        self.last_split: dict[tuple[str, str], str] = {}
        self.verbose = False

    def watched(self, namespace: str) -> bool:
        return not self.globs or any(fnmatch.fnmatchcase(namespace, g) for g in self.globs)

    def routes(self) -> list[dict[str, Any]]:
        found = self.custom.list_cluster_custom_object("shadowroute.io", "v1alpha1", "shadowroutes")
        return [r for r in found.get("items", []) if self.watched(r["metadata"]["namespace"])]

    def _route(self, kind: str, ns: str, name: str) -> dict | None:
        """A route object, read where its provider declares the kind is served."""
        from kubernetes.client.exceptions import ApiException
        from shadowroute.traffic import ROUTE_RESOURCES

        declared = ROUTE_RESOURCES[kind]
        try:
            return self.custom.get_namespaced_custom_object(
                declared.group, declared.version, ns, declared.plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def split(self, route: dict[str, Any], pods: list[dict[str, Any]]) -> Split:
        ns, name = route["metadata"]["namespace"], route["metadata"]["name"]
        traffic = (route.get("spec") or {}).get("traffic") or {}
        provider = traffic.get("provider", "none")
        if provider == "gatewayapi":
            own = ((traffic.get("gatewayAPI") or {}).get("httpRoute")) or {}
            obj = self._route("HTTPRoute", ns, own.get("name") or name)
            return split_gatewayapi(name, obj, own.get("rule"))
        if provider == "nginx":
            stable, canary = (self._route("Ingress", ns, n) for n in (name, f"{name}-canary"))
            return split_nginx(name, stable, canary)
        if provider == "istio":
            return split_istio(name, self._route("VirtualService", ns, name))
        from kubernetes.client.exceptions import ApiException

        try:
            svc = self.core.read_namespaced_service(name, ns)
        except ApiException as exc:
            if exc.status == 404:
                return Split()
            raise
        return split_none(svc.spec.selector, pods)

    def step(self, dt: float) -> None:
        keep: set[tuple[str, str]] = set()
        for route in self.routes():
            ns, name = route["metadata"]["namespace"], route["metadata"]["name"]
            notes = route["metadata"].get("annotations") or {}
            try:
                rps = float(notes.get(ANNOTATION + "rps", self.rps))
            except ValueError:
                rps = self.rps
            listed = self.core.list_namespaced_pod(ns, label_selector=f"shadowroute.io/name={name}")
            pods = [p for p in map(_camel, listed.to_dict()["items"]) if ready(p)]
            split = self.split(route, pods)
            self._report(ns, name, split, rps)
            by_role: dict[str, list[dict[str, Any]]] = {}
            for pod in pods:
                role = (pod["metadata"].get("labels") or {}).get("shadowroute.io/role", "")
                by_role.setdefault(role, []).append(pod)
            sends = [(role, share, False) for role, share in split.shares.items()]
            if split.mirror > 0:
                sends.append(("shadow", split.mirror, True))
            for role, share, mirrored in sends:
                targets = by_role.get(role, [])
                for pod in targets:
                    keep.add((ns, pod["metadata"]["name"]))
                    keep.add((ns, f"svc:{name}-{role}"))
                    self._serve(ns, name, role, pod, rps * share * dt / len(targets), mirrored)
        self.exporter.forget_pods(keep)
        for key in [k for k in self.pods if k not in keep]:
            del self.pods[key]

    def _serve(
        self, ns: str, name: str, role: str, pod: dict[str, Any], n: float, mirrored: bool
    ) -> None:
        state = self.pods.setdefault((ns, pod["metadata"]["name"]), PodState())
        profile = Profile.from_annotations(pod["metadata"].get("annotations"))
        state.requests += n
        count = int(state.requests)
        state.requests -= count
        state.errors += count * profile.error_rate
        errors = min(int(state.errors), count)
        state.errors -= errors
        latencies = []
        for _ in range(count):
            state.k += 1
            latencies.append(profile.latency((0.5 + state.k * GOLDEN) % 1.0))
        self.exporter.record(
            ns, name, role, pod["metadata"]["name"], count - errors, errors, latencies, mirrored
        )

    def _report(self, ns: str, name: str, split: Split, rps: float) -> None:
        text = ", ".join(f"{r} {s:.0%}" for r, s in sorted(split.shares.items())) or "nowhere"
        if split.mirror:
            text += f", mirror {split.mirror:.0%} to shadow"
        text = f"{rps:g} req/s: {text}"
        if self.verbose and self.last_split.get((ns, name)) != text:
            print(f"[sim] {ns}/{name}: {text}", flush=True)
        self.last_split[(ns, name)] = text


def _camel(pod: dict[str, Any]) -> dict[str, Any]:
    """The client's to_dict() is snake_case; the few keys read here, as on the wire."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "labels": meta.get("labels"),
            "annotations": meta.get("annotations"),
            "deletionTimestamp": meta.get("deletionTimestamp", meta.get("deletion_timestamp")),
        },
        "status": {"conditions": status.get("conditions") or []},
    }


# --------------------------------------------------------------------------- main


def default_targets_dir() -> str | None:
    try:
        return json.loads((ROOT / ".cluster" / "state.json").read_text())["prometheusTargets"]
    except (OSError, ValueError, KeyError):
        return None


def register(targets_dir: Path, port: int) -> Path:
    """Tell Prometheus where to scrape (file_sd); the file is replaced atomically."""
    targets_dir.mkdir(parents=True, exist_ok=True)
    path = targets_dir / f"traffic-sim-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"job": "traffic-sim"}}])
    )
    tmp.rename(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG") or str(ROOT / ".cluster" / "kubeconfig"),
    )
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="namespaces to serve (glob; repeatable); default: all",
    )
    parser.add_argument(
        "--rps", type=float, default=50.0, help="requests per second per ShadowRoute (default 50)"
    )
    parser.add_argument("--port", type=int, default=0, help="metrics port on 127.0.0.1")
    parser.add_argument(
        "--targets-dir",
        default=default_targets_dir(),
        help="Prometheus file_sd directory to register in",
    )
    parser.add_argument(
        "--max-runtime",
        type=float,
        default=3600.0,
        help="stop after this many seconds (default 3600)",
    )
    parser.add_argument(
        "--tick",
        type=float,
        default=0.5,
        help="seconds between looks at the API server (default 0.5)",
    )
    parser.add_argument(
        "--conventions",
        default=",".join(CONVENTIONS),
        help=f"metric conventions to export (default {','.join(CONVENTIONS)})",
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="print each route's traffic split when it changes",
    )
    args = parser.parse_args(argv)
    conventions = [c for c in args.conventions.split(",") if c]
    unknown = set(conventions) - set(CONVENTIONS)
    if unknown:
        parser.error(f"unknown conventions {sorted(unknown)}; known: {', '.join(CONVENTIONS)}")

    import kubernetes
    from prometheus_client import start_http_server

    api = kubernetes.config.new_client_from_config(config_file=args.kubeconfig)
    exporter = Exporter(conventions)
    server, _thread = start_http_server(args.port, addr="127.0.0.1", registry=exporter.registry)
    port = server.server_address[1]
    registered = register(Path(args.targets_dir), port) if args.targets_dir else None
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(
        f"[sim] serving metrics on http://127.0.0.1:{port}/metrics"
        + (f"; registered in {registered}" if registered else ""),
        flush=True,
    )
    sim = Simulator(api, args.namespace, args.rps, exporter)
    sim.verbose = args.verbose
    started = last = time.monotonic()
    errors = 0
    try:
        while not stop.is_set() and time.monotonic() - started < args.max_runtime:
            now = time.monotonic()
            try:
                sim.step(now - last)
                errors = 0
            except Exception as exc:  # the API server may be busy: try again next tick
                errors += 1
                print(f"[sim] reading the cluster failed ({errors}): {exc}", file=sys.stderr)
                if errors >= 60:
                    return 1
            last = now
            stop.wait(max(args.tick - (time.monotonic() - now), 0.01))
    finally:
        if registered:
            registered.unlink(missing_ok=True)
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
