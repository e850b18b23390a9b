"""Fuzz (issue 9): ShadowRoutes drawn from the models (tests/unit/spec_strategies.py) are
applied to the real API server and reconciled by the real operator.

- The models and the API server agree: what the models accept is stored, what they
  refuse is refused (a server-side dry run), durations' bounds included.
- Every stored object is reconciled without an exception and ends Ready, or with a
  condition that says why (a reason and a message), for the spec as written and again
  after a new template starts a rollout.
- No route is reconciled in a loop (the bug was 22 reconciles/s from one route with
  `analysis.interval: 0s`): each route's own reconciles, counted from the debug log of an
  operator that serves only this test's namespace, stay within an event budget plus the
  fastest timer a spec allows.

CI runs 24 routes, the same every time (derandomized: a failure in CI reproduces);
set SHADOWROUTE_FUZZ_EXAMPLES for a longer, random run, e.g.
SHADOWROUTE_FUZZ_EXAMPLES=200.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.unit.spec_strategies import accepted, raw_specs

from .conftest import Cluster, KubectlFn, OperatorProcess, get_json, wait_for

RECONCILED = re.compile(r"reconciled ([^/\s]+)/(\S+); next in")

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("SHADOWROUTE_FUZZ_EXAMPLES", "24"))
RECONCILES_PER_ROUTE_EVENTS = 40
"""A route's reconciles that events explain: two applies, its children's creations and
status changes, each rollout step's writes. A run measured 12 or so."""
RECONCILES_PER_ROUTE_PER_SECOND = 2.0
"""Its own timers: analysis.interval is at least 1 s; a hot loop is 20 a second."""


def _manifest(i: int, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "shadowroute.io/v1alpha1",
        "kind": "ShadowRoute",
        "metadata": {"name": f"fuzz-{i}"},
        "spec": spec,
    }


def _apply(kubectl: KubectlFn, namespace: str, objs: list[dict[str, Any]], *flags: str):
    # JSON, not YAML: kubectl reads YAML 1.1, where a drawn name such as `y` or `n` is a
    # boolean that PyYAML (YAML 1.2 rules) writes unquoted.
    as_list = {"apiVersion": "v1", "kind": "List", "items": objs}
    return kubectl(
        "apply", *flags, "-n", namespace, "-f", "-",
        input=json.dumps(as_list), check=False, timeout=180,
    )  # fmt: skip


def _explained(c: dict[str, Any]) -> bool:
    return bool(c.get("reason")) and bool(c.get("message"))


def _troubled(c: dict[str, Any]) -> bool:
    """A condition that reports something wrong or not yet done."""
    if c["type"] in ("Degraded", "Stalled"):
        return c["status"] == "True"
    return c["type"] not in ("Progressing", "Reconciling") and c["status"] != "True"


def _ended(obj: dict[str, Any], after_change: bool) -> bool:
    """Reconciled for its generation, and in a state that says where it is: Degraded
    with a reason and a message, or out of Initializing with every troubled condition
    explained. Stable with pods means Ready; after a template change a rollout may hold
    on purpose for long (a pause, a gate, no data yet), which counts as an end here."""
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return False
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    degraded = conditions.get("Degraded")
    if degraded and degraded["status"] == "True":
        return _explained(degraded)
    if status.get("phase") == "Initializing":
        return False
    ready = conditions.get("Ready", {}).get("status") == "True"
    if not after_change and obj["spec"]["replicas"] > 0 and not ready:
        return False
    return all(_explained(c) for c in conditions.values() if _troubled(c))


def _summary(objs: list[dict[str, Any]]) -> str:
    lines = []
    for obj in objs:
        s = obj.get("status") or {}
        conds = [
            f"{c['type']}={c['status']}/{c.get('reason')}: {c.get('message', '')[:100]}"
            for c in s.get("conditions") or []
        ]
        lines.append(f"{obj['metadata']['name']} {s.get('phase')} {conds}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def fuzz_namespace(kubectl: KubectlFn, crds_installed: None) -> Any:
    """Outside the session's prefix: the session's operator, which other modules' routes
    keep busy, never reconciles here; `fuzz_operator` alone does."""
    name = f"own-fuzz-{os.getpid()}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def fuzz_operator(cluster: Cluster, fuzz_namespace: str, tmp_path_factory) -> Any:
    """The operator of the fuzz namespace alone, with debug logs: one line per reconcile
    names its route."""
    op = OperatorProcess(
        cluster.kubeconfig, tmp_path_factory.mktemp("fuzz-operator"),
        "--namespace", fuzz_namespace, "--verbose",
    )  # fmt: skip
    op.start()
    yield op
    op.stop()


def reconciles_by_route(log: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for match in RECONCILED.finditer(log):
        counts[match[2]] = counts.get(match[2], 0) + 1
    return counts


def draw_batch(prometheus: str) -> list[dict[str, Any]]:
    """EXAMPLES raw specs as hypothesis draws them (random, not shrunk: the batch is
    applied at once, and a failure below prints the specs it is about)."""
    batch: list[dict[str, Any]] = []

    @settings(
        max_examples=EXAMPLES,
        derandomize="SHADOWROUTE_FUZZ_EXAMPLES" not in os.environ,
        phases=[Phase.generate],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        raw_specs(
            max_replicas=2,
            prometheus=st.sampled_from([prometheus, "http://127.0.0.1:9"]),
            image=st.just("fuzz.example/app:1"),
        )
    )
    def collect(raw: dict[str, Any]) -> None:
        batch.append(raw)

    collect()
    return batch


def test_drawn_routes_are_accepted_alike_and_reconciled(
    cluster: Cluster, kubectl: KubectlFn, fuzz_operator: OperatorProcess, fuzz_namespace: str
) -> None:
    operator = fuzz_operator
    raws = draw_batch((cluster.prometheus or "http://127.0.0.1:9").rstrip("/"))
    good = [_manifest(i, raw) for i, raw in enumerate(raws) if accepted(raw) is not None]
    bad = [_manifest(i, raw) for i, raw in enumerate(raws) if accepted(raw) is None]
    ns = fuzz_namespace

    # The models and the API server agree, both ways.
    if bad:
        refused = _apply(kubectl, ns, bad, "--dry-run=server")
        said = set(re.findall(r'"(fuzz-\d+)" is invalid', refused.stderr))
        wrongly_stored = [o["metadata"]["name"] for o in bad if o["metadata"]["name"] not in said]
        assert not wrongly_stored, (
            f"the models refuse {wrongly_stored}, the API server accepts them:\n"
            + yaml.safe_dump_all([o for o in bad if o["metadata"]["name"] in wrongly_stored])
        )
    if not good:
        return
    errors_before = operator.sum("shadowroute_reconcile_errors_total")
    started = time.monotonic()
    stored = _apply(kubectl, ns, good)
    assert stored.returncode == 0, f"the models accept, the API server refuses:\n{stored.stderr}"

    def listed() -> list[dict[str, Any]]:
        return get_json(kubectl, "shadowroutes", "-n", ns)["items"]

    def all_ended(revision_changed: bool):
        objs = listed()
        return objs if all(_ended(o, revision_changed) for o in objs) else None

    try:
        wait_for(lambda: all_ended(False), timeout=150, every=1, what="every route settled")
        # A new template: every route starts a rollout (shadow, canary or blue/green).
        for obj in good:
            containers = obj["spec"]["template"]["spec"]["containers"]
            containers[0]["image"] = "fuzz.example/app:2"
        assert _apply(kubectl, ns, good).returncode == 0
        final = wait_for(lambda: all_ended(True), timeout=150, every=1, what="rollouts")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_summary(listed())}") from None
    elapsed = time.monotonic() - started

    for obj in final:
        for c in obj["status"]["conditions"]:
            assert c.get("reason"), f"{obj['metadata']['name']}: {c}"
            assert _explained(c) or not _troubled(c), f"{obj['metadata']['name']}: {c}"
    assert operator.sum("shadowroute_reconcile_errors_total") == errors_before, (
        "reconcile errors; see " + str(operator.log)
    )
    log = operator.log.read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") :][:3000]
    counts = reconciles_by_route(log)
    assert counts, f"no reconcile logged; see {operator.log}"
    bound = RECONCILES_PER_ROUTE_EVENTS + RECONCILES_PER_ROUTE_PER_SECOND * elapsed
    busiest = max(counts, key=counts.__getitem__)
    phases: dict[str, int] = {}
    for obj in final:
        phase = obj["status"].get("phase", "")
        phases[phase] = phases.get(phase, 0) + 1
    print(
        f"fuzz: {len(good)} stored, {len(bad)} refused alike; after the new template "
        f"{phases}; over {elapsed:.0f}s {sum(counts.values()) / len(good):.1f} reconciles "
        f"per route, at most {counts[busiest]} ({busiest})"
    )
    assert counts[busiest] <= bound, (
        f"{busiest} reconciled {counts[busiest]} times in {elapsed:.0f}s (bound {bound:.0f})"
    )
