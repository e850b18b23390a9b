"""`kubectl shadowroute` against the local cluster, found by kubectl on PATH as a plugin:
every command, its output and its exit code, driving real rollouts of the session's
operator."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest
import yaml
from shadowroute.cli import exit_codes

from .conftest import Cluster, KubectlFn, OperatorProcess
from .test_rbac import sa_kubeconfig
from .test_rollout import Route, route, stable

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


@pytest.fixture
def held(kubectl: KubectlFn, namespace: str, operator: OperatorProcess) -> Route:
    """A stable route whose steps wait for a person, so gates decide every move."""
    r = Route(
        kubectl,
        namespace,
        route(
            "gated", steps=[{"weight": 20, "pause": {}}, {"weight": 60, "pause": {}}], keepWarm="1s"
        ),
    )
    r.apply()
    r.wait("Stable", stable)
    return r


def test_get_status_and_history(plugin, held: Route) -> None:
    ns = held.ns
    res = plugin("get", "-n", ns)
    assert res.returncode == 0, res.stderr
    header, row = res.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "PHASE", "STABLE", "CANARY"]
    assert row.split()[:3] == ["gated", "Stable", held.status()["stableRevision"]]
    res = plugin("get", "-A")
    assert res.returncode == 0 and ns in res.stdout and "NAMESPACE" in res.stdout
    res = plugin("get", "gated", "-n", ns, "-o", "json")
    assert json.loads(res.stdout)["metadata"]["name"] == "gated"
    res = plugin("get", "gated", "-n", ns, "-o", "yaml")
    assert yaml.safe_load(res.stdout)["kind"] == "ShadowRoute"

    res = plugin("status", "gated", "-n", ns)
    assert res.returncode == 0, res.stderr
    assert f"ShadowRoute {ns}/gated   phase Stable" in res.stdout
    assert "Ready=True (Available)" in res.stdout
    assert "Available" in res.stdout.split("EVENTS", 1)[1], "the operator's Event is shown"
    res = plugin("status", "gated", "-n", ns, "-o", "json")
    data = json.loads(res.stdout)
    assert data["object"]["status"]["phase"] == "Stable" and data["events"]

    res = plugin("history", "gated", "-n", ns)
    assert res.returncode == 0 and "no rollout of gated has finished yet" in res.stdout

    for args in (("status", "nope"), ("history", "nope"), ("promote", "nope"), ("get", "nope")):
        res = plugin(*args, "-n", ns)
        assert res.returncode == exit_codes.NOT_FOUND, (args, res.stderr)
        assert "'nope' not found" in res.stderr


def test_gates_drive_a_rollout_to_promotion_and_back(plugin, held: Route) -> None:
    ns = held.ns
    for gate in ("promote", "abort", "resume", "retry"):
        res = plugin(gate, "gated", "-n", ns)
        assert res.returncode == exit_codes.REFUSED, (gate, res.stdout, res.stderr)
        assert "refused: nothing to" in res.stderr
    annotations = held.get()["metadata"].get("annotations") or {}
    assert not [a for a in annotations if a.startswith("shadowroute.io/")], "a refused gate wrote"

    res = plugin("pause", "gated", "-n", ns, "--wait")
    assert res.returncode == 0 and "acknowledged by the operator" in res.stdout, res.stderr
    assert held.status()["userPaused"] is True
    token = held.get()["metadata"]["annotations"]["shadowroute.io/pause"]
    assert held.status()["gates"]["pause"] == token
    assert plugin("pause", "gated", "-n", ns).stdout.endswith("nothing written\n")

    res = plugin("resume", "gated", "-n", ns, "--wait")
    assert res.returncode == 0 and held.status()["userPaused"] is False, res.stderr

    held.set_image("registry.example/app:2")
    held.wait(
        "at step 1, waiting for a person",
        lambda s: s.get("waitingForPromotion") and s["canaryWeight"] == 20,
    )
    res = plugin("resume", "gated", "-n", ns, "--wait")  # one step on
    assert res.returncode == 0, res.stderr
    held.wait("at step 2", lambda s: s.get("waitingForPromotion") and s["canaryWeight"] == 60)
    res = plugin("promote", "gated", "-n", ns)
    assert res.returncode == 0 and "wrote shadowroute.io/promote=" in res.stdout
    res = plugin("status", "gated", "-n", ns, "--watch", "--interval", "0.3", "--timeout", "60")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "serves all traffic" in res.stdout.splitlines()[-1]
    held.wait("handed over", stable)
    res = plugin("history", "gated", "-n", ns)
    assert "Promoted" in res.stdout.splitlines()[1]

    held.set_image("registry.example/app:3")
    held.wait("waiting at step 1", lambda s: s.get("waitingForPromotion"))
    res = plugin("abort", "gated", "-n", ns, "--wait")
    assert res.returncode == 0 and "phase RolledBack" in res.stdout, res.stdout + res.stderr
    res = plugin("status", "gated", "-n", ns, "--watch", "--timeout", "30")
    assert res.returncode == exit_codes.ROLLED_BACK, res.stdout + res.stderr
    assert "did not make it" in res.stdout
    history = plugin("history", "gated", "-n", ns).stdout.splitlines()
    assert "RolledBack" in history[1] and "Aborted" in history[1]
    res = plugin("retry", "gated", "-n", ns, "--wait")
    assert res.returncode == 0, res.stderr
    held.wait("retried", lambda s: s.get("canaryRevision") and s.get("phase") != "RolledBack")


def test_status_watch_times_out_on_a_held_rollout(plugin, held: Route) -> None:
    held.set_image("registry.example/app:2")
    held.wait("waiting", lambda s: s.get("waitingForPromotion"))
    t0 = time.monotonic()
    res = plugin("status", "gated", "-n", held.ns, "--watch", "--timeout", "2")
    assert res.returncode == exit_codes.TIMEOUT and "timed out" in res.stderr
    assert time.monotonic() - t0 < 20
    assert res.stdout.count("ShadowRoute ") == 1, "redrawn only when something changed"


def test_plan_changes_nothing_and_says_what_would(
    plugin, held: Route, kubectl: KubectlFn, tmp_path: Path
) -> None:
    ns = held.ns

    def versions() -> list[str]:
        objs = [held.get()] + [held.deployment(r) for r in ("primary", "canary")]
        return [o["metadata"]["resourceVersion"] for o in objs]

    before = versions()
    same = tmp_path / "same.yaml"
    same.write_text(yaml.safe_dump(held.body))
    res = plugin("plan", "-f", str(same), "-n", ns, "--exit-code")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "spec changes: none" in res.stdout and "would change: nothing" in res.stdout
    assert "server-side dry run: accepted" in res.stdout

    new = dict(held.body, spec=dict(held.body["spec"]))
    new["spec"]["template"] = {
        "metadata": {"labels": {"app": "gated"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:9"}]},
    }
    new["spec"]["replicas"] = 3
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(new))
    res = plugin("plan", "-f", str(changed), "-n", ns, "--exit-code")
    assert res.returncode == exit_codes.CHANGES, res.stdout + res.stderr
    out = res.stdout
    assert "NEW (stable is" in out and "Progressing step 1/2: 20% of traffic" in out
    assert "spec.replicas: 2 -> 3" in out
    assert "image: registry.example/app:1 -> registry.example/app:9" in out
    assert "event Normal RolloutStarted" in out
    assert "update Deployment gated-canary" in out and "spec.replicas: 0 -> 1" in out
    res = plugin("plan", "-f", "-", "-n", ns, "-o", "json", input=changed.read_text())
    data = json.loads(res.stdout)
    assert data["changes"] is True and data["revision"] != held.status()["stableRevision"]

    fresh = dict(new, metadata={"name": "brand-new"})
    res = plugin("plan", "-f", "-", "-n", ns, input=yaml.safe_dump(fresh))
    assert res.returncode == 0 and "brand-new: new" in res.stdout
    assert "create Deployment brand-new-primary" in res.stdout

    assert versions() == before, "plan wrote something"
    assert kubectl("get", "shadowroute", "brand-new", "-n", ns, check=False).returncode != 0

    invalid = dict(new, metadata={"name": "Not_A_Name"})  # only the API server checks names
    res = plugin("plan", "-f", "-", "-n", ns, input=yaml.safe_dump(invalid))
    assert res.returncode == exit_codes.USAGE and "rejected by the API server" in res.stderr
    bad = dict(new, spec=dict(new["spec"], replicas=-1))
    res = plugin("plan", "-f", "-", "-n", ns, input=yaml.safe_dump(bad))
    assert res.returncode == exit_codes.USAGE and "spec.replicas" in res.stderr


def test_forbidden_is_a_clear_error(
    plugin, kubectl: KubectlFn, cluster: Cluster, namespace: str, crds_installed: None, tmp_path
) -> None:
    """An identity without rights on ShadowRoutes: exit 1 and the API server's words."""
    kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    kubeconfig = sa_kubeconfig(kubectl, cluster, namespace, "nobody", tmp_path / "kc")
    res = plugin("get", "--kubeconfig", str(kubeconfig))
    assert res.returncode == exit_codes.ERROR
    assert "forbidden" in res.stderr and "system:serviceaccount" in res.stderr
    assert res.stderr.count("\n") == 1, res.stderr
    res = plugin("status", "web", "--kubeconfig", str(kubeconfig))
    assert res.returncode == exit_codes.ERROR and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("error: ShadowRoute ") and "forbidden" in res.stderr


def test_retry_after_pause_and_abort_goes_and_everything_names_the_images(
    plugin, held: Route, kubectl: KubectlFn
) -> None:
    """Issue 14, items 3, 7, 9 on the real API server: a retry after pause + abort lifts
    the pause gate; status, history and `kubectl get -o wide` name the images; `kubectl
    describe` shows no empty string; provider none makes no -shadow children."""
    ns = held.ns
    for kind in ("deployment", "service"):
        res = kubectl("get", kind, "gated-shadow", "-n", ns, check=False)
        assert res.returncode != 0 and "NotFound" in res.stderr, f"a -shadow {kind} exists"
    described = kubectl("describe", "sr", "gated", "-n", ns).stdout
    assert '""' not in described, described

    held.set_image("registry.example/app:2")
    held.wait("at step 1", lambda s: s.get("waitingForPromotion") and s["canaryWeight"] == 20)
    wide = kubectl("get", "sr", "gated", "-n", ns, "-o", "wide").stdout.splitlines()
    assert "STABLE IMAGE" in wide[0] and "CANARY IMAGE" in wide[0], wide
    assert "app=app:1" in wide[1] and "app=app:2" in wide[1], wide
    assert "IMAGE" not in kubectl("get", "sr", "gated", "-n", ns).stdout  # only with -o wide
    status = plugin("status", "gated", "-n", ns).stdout
    assert "canary " in status and "(app=app:2)" in status and "(app=app:1)" in status
    # Exactly the image: the API server's defaults on the live primary are no change.
    assert "changes    image app: app:1 → app:2\n" in status + "\n", status

    assert plugin("pause", "gated", "-n", ns, "--wait").returncode == 0
    res = plugin("abort", "gated", "-n", ns, "--wait")
    assert res.returncode == 0 and "phase RolledBack" in res.stdout, res.stdout + res.stderr
    assert held.status()["userPaused"] is True
    history = plugin("history", "gated", "-n", ns).stdout.splitlines()
    assert "RolledBack" in history[1] and "app=app:2" in history[1], history
    assert "image app: app:1 → app:2" in history[1], history

    res = plugin("retry", "gated", "-n", ns, "--wait")
    assert res.returncode == 0 and "the retry lifts the pause gate" in res.stdout, res.stdout
    s = held.wait(
        "retried and routed", lambda s: s.get("waitingForPromotion") and s["canaryWeight"] == 20
    )
    assert not s.get("userPaused") and s["phase"] == "Paused"  # the pause: {} step, not the gate
    status = plugin("status", "gated", "-n", ns).stdout
    assert "pause gate" not in status.split("held by", 1)[-1].splitlines()[0], status
    assert "canary step 1/2: weight 20%" in status, status
    described = kubectl("describe", "sr", "gated", "-n", ns).stdout
    assert '""' not in described, described


def test_every_bad_input_is_one_line(
    plugin, cluster: Cluster, namespace: str, crds_installed: None, tmp_path
) -> None:
    """Issue 14: against the real API server, each bad input is one line on stderr and
    the exit code of cli/exit_codes.py."""
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    for c in refused["clusters"]:
        c["cluster"]["server"] = f"https://127.0.0.1:{port}"
    (tmp_path / "refused").write_text(yaml.safe_dump(refused))
    cases = [
        (("get", "-n", "no-such-namespace"), exit_codes.NOT_FOUND,
         "error: namespace 'no-such-namespace' not found"),
        (("status", "web", "-n", "no-such-namespace"), exit_codes.NOT_FOUND,
         "error: namespace 'no-such-namespace' not found"),
        (("history", "nope", "-n", namespace), exit_codes.NOT_FOUND,
         f"error: ShadowRoute 'nope' not found in namespace '{namespace}'"),
        (("get", "--kubeconfig", str(tmp_path / "refused")), exit_codes.ERROR,
         f"error: cannot reach the API server at https://127.0.0.1:{port}: "
         "[Errno 111] Connection refused"),
        (("get", "--context", "nope"), exit_codes.ERROR,
         "error: cannot load kubeconfig: no context"),
        (("get", "--kubeconfig", str(tmp_path / "none")), exit_codes.ERROR,
         f"error: cannot load kubeconfig: {tmp_path / 'none'}: no such file"),
        (("get", "--bogus"), exit_codes.USAGE, "error: unrecognized arguments: --bogus"),
        (("bogus",), exit_codes.USAGE, "error: argument COMMAND: invalid choice: 'bogus'"),
    ]  # fmt: skip
    for argv, code, said in cases:
        res = plugin(*argv)
        assert res.returncode == code, (argv, res.stderr)
        assert res.stderr.startswith(said) and res.stderr.count("\n") == 1, (argv, res.stderr)
        assert res.stdout == "", (argv, res.stdout)
