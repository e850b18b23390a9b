"""`make demo`: one command from a fresh machine to a Prometheus-gated rollout.

    python hack/demo.py [--keep]      # KEEP=1 does the same as --keep

It brings up the local control plane and Prometheus (hack/cluster.py, cached build),
installs the CRD, starts the traffic simulator and the operator, applies
examples/analysis.yaml in a namespace of its own, then rolls out

1. a healthy version: it walks the canary steps and is promoted;
2. a version with 20 % errors: the analysis fails and it is rolled back;

printing a timeline (stage, weight, metric values) as it goes and a summary at the
end. It exits 0 when both went as expected, and stops everything it started — the
operator, the simulator, its namespace, and the cluster if it was not already up —
unless --keep.
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
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "hack"))
import cluster  # noqa: E402

EXAMPLE = ROOT / "examples" / "analysis.yaml"
ROLLOUT_TIMEOUT = 180.0


def say(text: str = "") -> None:
    print(text, flush=True)


class Demo:
    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.logs = Path(tempfile.mkdtemp(prefix="shadowroute-demo-"))
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.started_cluster = False
        self.namespace = f"shadowroute-demo-{uuid.uuid4().hex[:5]}"
        self.kubectl_exe = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or (
            shutil.which("kubectl") or "kubectl"
        )
        self.t0 = time.monotonic()

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

    def up(self) -> None:
        before = cluster.load_state()
        self.started_cluster = not (before and cluster.healthy(before))
        say(
            "== local control plane and Prometheus"
            + (" (starting)" if self.started_cluster else " (already up)")
        )
        state = cluster.up()
        self.kubeconfig = state["kubeconfig"]
        self.prometheus = state["prometheus"]
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/shadowroutes.shadowroute.io",
        )
        self.kubectl("create", "namespace", self.namespace)
        say(f"   API server {state['server']}, Prometheus {self.prometheus}")
        say(f"   namespace {self.namespace}; logs in {self.logs}")
        self.spawn(
            "traffic-sim",
            [
                sys.executable,
                str(ROOT / "hack" / "traffic_sim.py"),
                "--kubeconfig",
                self.kubeconfig,
                "--namespace",
                self.namespace,
                "--targets-dir",
                state["prometheusTargets"],
                "--rps",
                "100",
                "--max-runtime",
                "1800",
            ],
        )
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
            env={"KUBECONFIG": self.kubeconfig},
        )
        time.sleep(1.0)
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.logs / (name + '.log')}")

    def down(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _name, proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not hasattr(self, "kubeconfig"):
            return
        self.kubectl("delete", "namespace", self.namespace, "--wait=false", check=False)
        if self.started_cluster:
            say("== stopping the local control plane (it was not running before)")
            cluster.down()

    # ------------------------------------------------------------------ the story

    def route(self) -> dict[str, Any]:
        body = yaml.safe_load(EXAMPLE.read_text())
        body["spec"]["analysis"]["prometheus"]["address"] = self.prometheus
        return body

    def apply(self, body: dict[str, Any]) -> None:
        self.kubectl("apply", "-n", self.namespace, "-f", "-", input=yaml.safe_dump(body))

    def status(self) -> dict[str, Any]:
        out = self.kubectl("get", "shadowroute", "checkout", "-n", self.namespace, "-o", "json")
        return json.loads(out).get("status") or {}

    def follow(self, until: Any, what: str) -> dict[str, Any]:
        """Print a timeline line whenever the stage, weight, verdict or a run changes."""
        deadline = time.monotonic() + ROLLOUT_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            s = self.status()
            line = self.line(s)
            key = (line, (s.get("analysis") or {}).get("lastRunAt"))
            if key != last:
                say(f"  {time.monotonic() - self.t0:6.1f}s  {line}")
                last = key
            if until(s):
                return s
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}; see {self.logs}")

    def line(self, s: dict[str, Any]) -> str:
        stage = s.get("phase") or "-"
        step = ""
        if s.get("stage") == "Progressing":
            step = f"step {s.get('currentStep', 0) + 1}"
        a = s.get("analysis") or {}
        values = " ".join(
            f"{m['name']}={_fmt(m.get('value'), 's' if 'latency' in m['name'] else '')}"
            for m in a.get("metrics") or []
        )
        cond = next((c for c in s.get("conditions") or [] if c["type"] == "AnalysisHealthy"), None)
        verdict = f"{cond['status']}/{cond['reason']}" if cond else "-"
        failures = a.get("consecutiveFailures", 0)
        return (
            f"{stage:<12} {step:<7} weight {s.get('canaryWeight', 0):>3}%  "
            f"analysis {verdict:<24} failures {failures}  {values}"
        )

    def run(self) -> int:
        self.up()
        base = self.route()
        say("\n== 1. the first version becomes Stable")
        self.apply(base)
        self.follow(lambda s: s.get("phase") == "Stable", "the first version")

        say("\n== 2. a healthy version (0.1 % errors, p95 120 ms): canary 10 % -> 50 % -> promoted")
        good = copy.deepcopy(base)
        good["spec"]["template"]["spec"]["containers"][0]["image"] = (
            "registry.example/checkout:1.1.0"
        )
        self.apply(good)
        started = time.monotonic()
        s = self.follow(
            lambda s: s.get("phase") == "Stable" and _last_outcome(s) == "Promoted", "the promotion"
        )
        good_time = time.monotonic() - started
        promoted = s["history"][0]

        say("\n== 3. a bad version (20 % errors): rolled back on error rate")
        bad = copy.deepcopy(good)
        bad["spec"]["template"]["spec"]["containers"][0]["image"] = (
            "registry.example/checkout:1.2.0"
        )
        bad["spec"]["template"]["metadata"]["annotations"]["sim.shadowroute.io/error-rate"] = "0.2"
        self.apply(bad)
        started = time.monotonic()
        s = self.follow(lambda s: s.get("phase") == "RolledBack", "the rollback")
        bad_time = time.monotonic() - started
        rolled = s["history"][0]
        events = json.loads(
            self.kubectl("get", "events.events.k8s.io", "-n", self.namespace, "-o", "json")
        )["items"]
        warnings = [e for e in events if e.get("type") == "Warning"]

        say("\n== summary")
        say(f"  promoted     {promoted['revision']} in {good_time:.0f}s: {promoted['message']}")
        say(f"  rolled back  {rolled['revision']} in {bad_time:.0f}s ({rolled['reason']}):")
        say(f"               {rolled['message']}")
        say(f"  serving      {s['stableRevision']} (canary weight {s['canaryWeight']}%)")
        for e in warnings[-3:]:
            say(f"  event        {e['reason']}: {e.get('note', '')[:160]}")
        ok = promoted["outcome"] == "Promoted" and rolled["reason"] == "AnalysisFailed"
        ok = ok and "error-rate" in rolled["message"]  # rolled back on its error rate
        ok = ok and s["canaryWeight"] == 0 and s["stableRevision"] == promoted["revision"]
        say("\n" + ("demo passed" if ok else "demo FAILED: see the timeline above"))
        if self.keep:
            pids = ", ".join(f"{n} {p.pid}" for n, p in self.procs)
            say(f"\n--keep: left running ({pids}); look with")
            say(f"  kubectl --kubeconfig {self.kubeconfig} -n {self.namespace} get shadowroutes")
        return 0 if ok else 1


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
        help="leave the cluster, operator and simulator running (KEEP=1)",
    )
    args = parser.parse_args(argv)
    demo = Demo(args.keep)
    code = 1
    try:
        code = demo.run()
    except (RuntimeError, cluster.ClusterError) as exc:
        say(f"\ndemo FAILED: {exc}")
    except KeyboardInterrupt:
        say("\ninterrupted")
    finally:
        if not args.keep:
            with contextlib.suppress(Exception):
                demo.down()
    return code


if __name__ == "__main__":
    sys.exit(main())
