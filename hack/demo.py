"""`make demo`: one command from a fresh machine to a Prometheus-gated rollout on real
traffic.

    python hack/demo.py [--keep] [--rate 40]      # KEEP=1 does the same as --keep

It brings up the local cluster (hack/cluster.py, cached build: control plane,
Prometheus, Envoy Gateway and the test kubelet that runs the sample app's pods as real
processes), installs the CRD, starts the operator, applies the sample app's ShadowRoute
(examples/app/deployment.yaml, with the local Prometheus' address and a hostname of its
own) in a namespace of its own, and sends real requests through Envoy from the first
apply to the end (hack/load.py: a bounded open-loop rate). Then it rolls out

1. v1, which becomes Stable;
2. a healthy v2: shadowed (Envoy mirrors every request to the comparator, which asks
   the shadow and two baseline pods of v1 and compares their answers), then canaried
   at 10 % and 50 %, then promoted;
3. a v3 that answers a wrong price for 5 % of the requests: no error, nothing
   Prometheus would see; the shadow comparison catches it and it is rolled back
   (ShadowMismatch, naming body.price) before any client gets an answer from it;
4. a bad v4 that answers 20 % of its requests with a 500, shipped without the shadow
   stage: its canary's error rate fails the analysis and it is rolled back;
5. a v5 whose /healthz answers 503, shipped with an acceptance check (GET /healthz,
   before any traffic): the check fails twice and v5 is rolled back (CheckFailed)
   before it got a single mirrored copy or client request;

printing a timeline (stage, weight, mirror, the comparison's counts while shadowing,
the analysis' verdict and values, the requests each version answered since the
previous line as clients saw them by X-Version, and the mirrored copies the shadow
answered, from its own counter in Prometheus), a summary with the totals, and what
`kubectl shadowroute history` and `status` say about the route at the end. It exits
0 when the four rollouts ended as expected, and stops everything it started — the
load, the operator, its namespace, and the cluster if it was not already up — unless
--keep.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "hack"))
import cluster  # noqa: E402
from load import Load, Record  # noqa: E402
from operator_process import check_proxy  # noqa: E402

EXAMPLE = ROOT / "examples" / "app" / "deployment.yaml"
NAME = "checkout"
ROLLOUT_TIMEOUT = 240.0  # per rollout; the example's stages take about 90 s
HEARTBEAT = 5.0  # a timeline line at least this often while analysis runs
POLL = 0.5
LOAD_DURATION = 900.0  # load.py's bound; the demo stops it long before


def say(text: str = "") -> None:
    print(text, flush=True)


class Demo:
    def __init__(self, keep: bool, rate: float) -> None:
        self.keep = keep
        self.rate = rate
        self.logs = Path(tempfile.mkdtemp(prefix="shadowroute-demo-"))
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.started_cluster = False
        self.namespace = f"shadowroute-demo-{uuid.uuid4().hex[:5]}"
        self.hostname = f"{NAME}.{self.namespace}.example.test"
        self.kubectl_exe = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or (
            shutil.which("kubectl") or "kubectl"
        )
        self.load: Load | None = None
        self.t0, self.wall0 = time.monotonic(), time.time()
        # Per timeline line: what the clients and the shadow had answered at the last one.
        self.seen_versions: Counter[str] = Counter()
        self.shadow_pods: dict[str, float] = {}  # pod -> its counter at the last line
        self.shadow_total = 0

    # ------------------------------------------------------------------ plumbing

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        res = subprocess.run(
            [self.kubectl_exe, "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and res.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.logs / f"{name}.log"
        proc = subprocess.Popen(
            argv,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        self.procs.append((name, proc))

    def check_children(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.logs / (name + '.log')}")

    def up(self) -> None:
        before = cluster.load_state()
        self.started_cluster = not (before and cluster.healthy(before))
        say(
            "== local cluster: control plane, Prometheus, Envoy Gateway, test kubelet"
            + (" (starting)" if self.started_cluster else " (already up)")
        )
        state = cluster.up()
        self.kubeconfig = state["kubeconfig"]
        self.prometheus = state["prometheus"]
        self.gateway = state["gateway"]
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        argv = [self.kubectl_exe, "--kubeconfig", self.kubeconfig]
        cluster.wait_crd_established(argv, "shadowroutes.shadowroute.io")
        self.kubectl("create", "namespace", self.namespace)
        say(f"   API server {state['server']}, Prometheus {self.prometheus}")
        say(f"   gateway {self.gateway} (Host: {self.hostname})")
        say(f"   namespace {self.namespace}; logs in {self.logs}")
        self.spawn(
            "operator",
            [
                sys.executable,
                "-m",
                "shadowroute",
                "--namespace",
                self.namespace,
                "--metrics-port",
                "0",
            ],
            env={
                "KUBECONFIG": self.kubeconfig,
                "SHADOWROUTE_COMPARATOR_IMAGE": "shadowroute.local/shadowroute",
                **check_proxy(),
            },
        )

    def down(self) -> None:
        if self.load is not None:
            self.load.stop()
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _name, proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not hasattr(self, "kubeconfig"):
            return
        self.kubectl("delete", "namespace", self.namespace, "--wait=false", check=False)
        if self.started_cluster:
            say("== stopping the local cluster (it was not running before)")
            cluster.down()

    def prom_query(self, query: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.load(response)
        except (OSError, ValueError):
            return []  # a missed read only delays the count to the next line
        return body.get("data", {}).get("result", []) if body.get("status") == "success" else []

    # ------------------------------------------------------------------ the route

    def route(self) -> dict[str, Any]:
        (body,) = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
        body["spec"]["analysis"]["prometheus"]["address"] = self.prometheus
        body["spec"]["traffic"]["gatewayAPI"]["hostnames"] = [self.hostname]
        return body

    def apply(self, body: dict[str, Any]) -> None:
        self.kubectl("apply", "-n", self.namespace, "-f", "-", input=yaml.safe_dump(body))

    def status(self) -> dict[str, Any]:
        out = self.kubectl("get", "shadowroute", NAME, "-n", self.namespace, "-o", "json")
        return json.loads(out).get("status") or {}

    # ------------------------------------------------------------------ the timeline

    def follow(self, until: Any, what: str) -> dict[str, Any]:
        """Print a timeline line whenever the stage, weight, mirror or verdict changes,
        and every HEARTBEAT seconds while the analysis runs; each line counts what was
        answered since the previous one."""
        deadline = time.monotonic() + ROLLOUT_TIMEOUT
        last_key, last_at = None, 0.0
        while time.monotonic() < deadline:
            self.check_children()
            s = self.status()
            state = self.state_of(s)
            run = (s.get("analysis") or {}).get("lastRunAt")
            now = time.monotonic()
            done = until(s)
            if state != last_key or done or (run and now - last_at >= HEARTBEAT):
                say(f"  {now - self.t0:6.1f}s  {self.line(s)}  |  {self.traffic()}")
                last_key, last_at = state, now
            if done:
                return s
            time.sleep(POLL)
        raise RuntimeError(f"timed out waiting for {what}; see {self.logs}")

    def state_of(self, s: dict[str, Any]) -> tuple[Any, ...]:
        cond = self.analysis_condition(s)
        return (
            s.get("phase"),
            s.get("currentStep"),
            s.get("canaryWeight"),
            s.get("mirrorPercent"),
            cond and (cond["status"], cond["reason"]),
            (s.get("comparison") or {}).get("verdict"),
        )

    @staticmethod
    def analysis_condition(s: dict[str, Any]) -> dict[str, Any] | None:
        return next((c for c in s.get("conditions") or [] if c["type"] == "AnalysisHealthy"), None)

    def line(self, s: dict[str, Any]) -> str:
        stage = s.get("phase") or "-"
        step = f"step {s.get('currentStep', 0) + 1}" if s.get("stage") == "Progressing" else ""
        a = s.get("analysis") or {}
        values = " ".join(
            f"{m['name']}={_fmt(m.get('value'), 's' if 'latency' in m['name'] else '')}"
            for m in a.get("metrics") or []
        )
        cond = self.analysis_condition(s)
        verdict = f"{cond['status']}/{cond['reason']}" if cond else "-"
        c = s.get("comparison") or {}
        compared = ""
        if s.get("stage") == "Shadowing" and c:
            rate = c.get("mismatchRate")
            compared = (
                f"  compared {c.get('compared', 0)} mismatch "
                f"{'-' if rate is None else f'{rate:.1%}'} ({c.get('verdict', '-')})"
            )
        return (
            f"{stage:<12} {step:<6} weight {s.get('canaryWeight', 0):>3}%  "
            f"mirror {s.get('mirrorPercent', 0):>3}%  analysis {verdict:<22} "
            f"failures {a.get('consecutiveFailures', 0)}  {values or '-'}{compared}"
        )

    def traffic(self) -> str:
        """Answers since the previous line: per version as clients saw them (X-Version;
        "none" is Envoy answering itself), and the shadow's, from its own counter."""
        assert self.load is not None
        versions = Counter(self.load.snapshot().versions)
        since = versions - self.seen_versions
        self.seen_versions = versions
        served = " ".join(f"{v} +{n}" for v, n in sorted(since.items())) or "no answers"
        copies = self.shadow_copies()
        return f"clients {served}" + (f" | shadow +{copies} copies" if copies else "")

    def shadow_copies(self) -> int:
        """Requests the shadow's pods answered since the last call: the difference of
        each pod's http_requests_total (a pod that is new, or restarted, counts from 0)."""
        query = (
            f'sum by (pod) (http_requests_total{{namespace="{self.namespace}",'
            f'service="{NAME}-shadow"}})'
        )
        added = 0.0
        for series in self.prom_query(query):
            pod, value = series["metric"].get("pod", ""), float(series["value"][1])
            before = self.shadow_pods.get(pod, 0.0)
            added += value - before if value >= before else value
            self.shadow_pods[pod] = value
        self.shadow_total += round(added)
        return round(added)

    # ------------------------------------------------------------------ the story

    def run(self) -> int:
        self.up()
        base = self.route()
        say(f"\n== 1. v1 becomes Stable; {self.rate:g} requests/s through Envoy from now on")
        self.apply(base)
        self.load = Load(
            self.gateway,
            rate=self.rate,
            duration=LOAD_DURATION,
            host=self.hostname,
            path="/cart",
            record=True,
        ).start()
        self.follow(lambda s: s.get("phase") == "Stable", "v1")
        v1_stable = time.time()

        say(
            "\n== 2. a healthy v2: shadow (copies compared with v1's answers) -> canary 10 % "
            "-> 50 % -> promoted"
        )
        good = with_version(base, "v2")
        self.apply(good)
        started, shadow_before = time.monotonic(), self.shadow_total
        passed = self.follow(lambda s: s.get("stage") not in ("Shadowing", None), "the shadow")
        compared = passed.get("comparison") or {}
        s = self.follow(
            lambda s: s.get("phase") == "Stable" and _last_outcome(s) == "Promoted", "the promotion"
        )
        good_time = time.monotonic() - started
        shadow_copies = self.shadow_total - shadow_before
        promoted = s["history"][0]

        say("\n== 3. a v3 that answers a wrong price for 5 % of the requests (no error at all):")
        say("      the shadow comparison catches it before any client sees it")
        wrong = with_version(
            good, "v3", DIFF_FIELDS='{"price": 13}', DIFF_RATE="0.05", DIFF_PATHS="/cart"
        )
        self.apply(wrong)
        started = time.monotonic()
        s = self.follow(lambda s: s.get("phase") == "RolledBack", "the shadow's rollback")
        wrong_time = time.monotonic() - started
        mismatch = s["history"][0]
        caught = s.get("comparison") or {}

        say("\n== 4. a bad v4 (20 % of its answers are 500s), shipped without the shadow stage:")
        say("      its canary is rolled back on error rate")
        bad = with_version(good, "v4", ERROR_RATE="0.2")
        del bad["spec"]["strategy"]["shadow"]
        self.apply(bad)
        started = time.monotonic()
        s = self.follow(lambda s: s.get("phase") == "RolledBack", "the rollback")
        bad_time = time.monotonic() - started
        rolled = s["history"][0]

        say("\n== 5. a v5 whose /healthz answers 503 (ready by its port all the same), with an")
        say("      acceptance check: it fails before the version gets any mirror or traffic")
        unhealthy = with_version(good, "v5", HEALTHZ_FAIL="1")
        (container,) = unhealthy["spec"]["template"]["spec"]["containers"]
        container["readinessProbe"] = {"tcpSocket": {"port": "http"}, "periodSeconds": 1}
        unhealthy["spec"]["checks"] = [SMOKE_CHECK]
        shadow_before = self.shadow_total
        self.apply(unhealthy)
        started = time.monotonic()
        s = self.follow(lambda s: s.get("phase") == "RolledBack", "the check's rollback")
        check_time = time.monotonic() - started
        check_copies = self.shadow_total - shadow_before
        checked = s["history"][0]
        # Until the clients have seen the stable version alone for a few seconds.
        self.follow_until_quiet("v4")
        report = self.load.stop()
        records = self.load.records()
        events = json.loads(
            self.kubectl("get", "events.events.k8s.io", "-n", self.namespace, "-o", "json")
        )["items"]
        warnings = [e for e in events if e.get("type") == "Warning"]
        served_v3 = [r for r in records if r.version == "v3"]
        served_v5 = [r for r in records if r.version == "v5"]

        say("\n== summary")
        say(f"  promoted     {promoted['revision']} (v2) in {good_time:.0f}s:")
        say(f"               {promoted['message']}")
        say(f"               shadow: {shadow_copies} mirrored copies (no client saw them)")
        say(
            f"               compared {compared.get('compared', 0)}, mismatched "
            f"{compared.get('mismatched', 0)} ({_rate(compared.get('mismatchRate'))}): "
            f"{compared.get('message', '-')}"
        )
        say(
            f"  rolled back  {mismatch['revision']} (v3) in {wrong_time:.0f}s "
            f"({mismatch['reason']}), while shadowing:"
        )
        say(f"               {mismatch['message']}")
        say(
            f"               compared {caught.get('compared', 0)}, mismatched "
            f"{caught.get('mismatched', 0)} ({_rate(caught.get('mismatchRate'))}); "
            f"clients served by v3: {len(served_v3)}"
        )
        say(f"  rolled back  {rolled['revision']} (v4) in {bad_time:.0f}s ({rolled['reason']}):")
        say(f"               {rolled['message']}")
        say(
            f"  rolled back  {checked['revision']} (v5) in {check_time:.0f}s "
            f"({checked['reason']}), before any traffic:"
        )
        say(f"               {checked['message']}")
        say(f"               clients served by v5: {len(served_v5)}; mirrored: {check_copies}")
        say(f"  serving      {s['stableRevision']} (canary weight {s['canaryWeight']}%)")
        for e in warnings[-3:]:
            say(f"  event        {e['reason']}: {e.get('note', '')[:160]}")
        say(
            f"  requests     {report.sent} sent in {report.elapsed:.0f}s ({report.rate:.1f}/s), "
            f"{report.responses} answered; no answer: {_counts(report.errors) or '0'}"
            + (f"; skipped {report.skipped}" if report.skipped else "")
        )
        say(f"  by version   {_counts(report.versions)}  (X-Version; none: Envoy itself)")
        say(f"  by status    {_counts(report.statuses)}")
        by_version = Counter((r.version, r.status) for r in records if r.error is None)
        for version in sorted({v for v, _ in by_version}, key=str):
            codes = {c: n for (v, c), n in sorted(by_version.items()) if v == version}
            say(f"    {version:<10} {_counts(codes)}")
        client_5xx = sum(n for c, n in report.statuses.items() if c >= 500)
        v4 = [r for r in records if r.version == "v4"]
        v4_5xx = sum(r.status >= 500 for r in v4)
        say(
            f"  client 5xx   {client_5xx}: {v4_5xx} from the v4 canary, the bad version doing "
            f"what it does ({len(v4)} answers, {100 * v4_5xx / max(1, len(v4)):.0f} % 500s)"
        )
        # Envoy answers by itself (no X-Version) while the route or its endpoints are
        # not programmed yet: expected while v1 starts, worth a look after.
        envoy = [r for r in records if r.version == "none"]
        early = [r for r in envoy if r.sent_at < v1_stable]
        late = [r for r in envoy if r.sent_at >= v1_stable]
        say(
            f"               Envoy answered {len(envoy)} by itself: {len(early)} while v1 started "
            f"({_counts(Counter(r.status for r in early)) or '-'}; 404: no route yet, 5xx: "
            f"no ready endpoint yet), {len(late)} after v1 was Stable"
            + "".join(f"; {r.status} at {r.sent_at - self.wall0:.1f}s" for r in late[:10])
        )
        last_bad = last_answer(records, "v4")
        rolled_at = _timestamp(rolled.get("at"))
        if last_bad is not None and rolled_at is not None:
            # `at` is to the second: the write happened within the second after it.
            after = last_bad - rolled_at
            say(
                f"  the v4 canary answered its last request {max(0.0, after - 1):.1f}-"
                f"{after:.1f}s after the rollback was written ({rolled['at']})"
            )
        ok = promoted["outcome"] == "Promoted" and rolled["reason"] == "AnalysisFailed"
        ok = ok and "error-rate" in rolled["message"]  # rolled back on its error rate
        ok = ok and compared.get("verdict") == "Pass" and compared.get("mismatched") == 0
        ok = ok and mismatch["reason"] == "ShadowMismatch" and "body.price" in mismatch["message"]
        ok = ok and not served_v3  # caught while shadowing: no client got a v3 answer
        ok = ok and checked["reason"] == "CheckFailed" and "check smoke" in checked["message"]
        ok = ok and not served_v5 and check_copies == 0  # stopped before any request
        ok = ok and s["canaryWeight"] == 0 and s["stableRevision"] == promoted["revision"]
        ok = ok and report.versions.get("v2", 0) > 0 and len(v4) > 0 and shadow_copies > 0
        self.show_plugin()
        say("\n" + ("demo passed" if ok else "demo FAILED: see the timeline above"))
        if self.keep:
            pids = ", ".join(f"{n} {p.pid}" for n, p in self.procs)
            say(f"\n--keep: left running ({pids}; the load has stopped); look with")
            say(f"  export KUBECONFIG={self.kubeconfig} PATH={Path(sys.executable).parent}:$PATH")
            say(f"  kubectl -n {self.namespace} get shadowroutes -o wide")
            say(f"  kubectl shadowroute status {NAME} -n {self.namespace}")
            say(f"  kubectl shadowroute history {NAME} -n {self.namespace}")
            say(f"  python hack/load.py {self.gateway} --host {self.hostname} --rate 20")
        return 0 if ok else 1

    def show_plugin(self) -> None:
        """What a user types next: the kubectl plugin's history and status of the route
        (kubectl finds kubectl-shadowroute on PATH, next to this Python)."""
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
        env = {**os.environ, "PATH": path, "KUBECONFIG": self.kubeconfig}
        for command in ("history", "status"):
            argv = ["shadowroute", command, NAME, "-n", self.namespace]
            say(f"\n== kubectl {' '.join(argv)}")
            res = subprocess.run(
                [self.kubectl_exe, *argv], capture_output=True, text=True, timeout=60, env=env,
            )  # fmt: skip
            say((res.stdout + res.stderr).rstrip())

    def follow_until_quiet(self, version: str, quiet: float = 3.0) -> None:
        """Polls until `version` has answered nothing for `quiet` seconds (the route's
        change reaching Envoy), printing one more line."""
        assert self.load is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            last = last_answer(self.load.records(), version)
            if last is None or time.time() - last >= quiet:
                break
            time.sleep(POLL)
        s = self.status()
        say(f"  {time.monotonic() - self.t0:6.1f}s  {self.line(s)}  |  {self.traffic()}")


SMOKE_CHECK = {
    "name": "smoke",
    "when": "BeforeTraffic",
    "timeout": "5s",
    "retries": 1,
    "http": {"path": "/healthz"},
}
"""Step 5's acceptance check (docs/checks.md): GET /healthz on the new version's
Service before it gets anything; any 2xx passes."""


def with_version(body: dict[str, Any], version: str, **env: str) -> dict[str, Any]:
    """The route with the sample app's image tag and VERSION (and other env) changed."""
    new = copy.deepcopy(body)
    (container,) = new["spec"]["template"]["spec"]["containers"]
    container["image"] = f"{container['image'].rpartition(':')[0]}:{version}"
    wanted = {"VERSION": version, **env}
    for var in container.setdefault("env", []):
        if var["name"] in wanted:
            var["value"] = wanted.pop(var["name"])
    container["env"].extend({"name": k, "value": v} for k, v in wanted.items())
    return new


def last_answer(records: list[Record], version: str) -> float | None:
    """Unix time the last answer from `version` arrived, None if it never answered."""
    ends = [r.sent_at + r.latency for r in records if r.version == version]
    return max(ends) if ends else None


def _rate(value: Any) -> str:
    return "-" if value is None else f"{value:.2%}"


def _counts(counts: dict[Any, int]) -> str:
    return "  ".join(f"{k} {n}" for k, n in counts.items())


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def _last_outcome(s: dict[str, Any]) -> str:
    return ((s.get("history") or [{}])[0]).get("outcome", "")


def _fmt(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3f}{unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        default=os.environ.get("KEEP", "") not in ("", "0"),
        help="leave the cluster and the operator running (KEEP=1)",
    )
    parser.add_argument(
        "--rate", type=float, default=40.0, help="requests per second through Envoy (default 40)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.rate <= 200:
        parser.error("--rate must be within 1..200 requests per second")
    demo = Demo(args.keep, args.rate)
    code = 1
    try:
        code = demo.run()
    except (RuntimeError, cluster.ClusterError) as exc:
        say(f"\ndemo FAILED: {exc}")
    except KeyboardInterrupt:
        say("\ninterrupted")
    finally:
        if demo.load is not None:
            with contextlib.suppress(Exception):
                demo.load.stop()
        if not args.keep:
            with contextlib.suppress(Exception):
                demo.down()
    return code


if __name__ == "__main__":
    sys.exit(main())
