"""`make demo` is the product's first impression: it runs here, on the session's local
cluster, on real requests through Envoy, and must promote the healthy version after
its shadow received mirrored copies, and roll back the bad one on its error rate —
exactly what it prints as passed."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from .conftest import ROOT, Cluster, local_cluster

pytestmark = pytest.mark.e2e


def count(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in:\n{text}"
    return int(found.group(1))


def test_the_demo_promotes_the_healthy_version_and_rolls_back_the_bad_one(
    cluster: Cluster, crds_installed: None
) -> None:
    if cluster.kubeconfig != str(local_cluster.KUBECONFIG):
        pytest.skip("the demo runs on the local cluster; this session uses $KUBECONFIG")
    state = local_cluster.load_state() or {}
    if not state.get("gateway"):
        pytest.skip("the local cluster has no gateway: the demo needs its data plane")
    done = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "demo passed" in out
    timeline, summary = out[: out.index("== summary")], out[out.index("== summary") :]

    # The timeline went through every stage, with the mirror on while shadowing.
    for stage in ("Shadowing", "Progressing", "Succeeded", "RolledBack"):
        assert stage in timeline, timeline
    assert re.search(r"Shadowing .* mirror 100%.*\| shadow \+[1-9]", timeline), timeline
    # While shadowing the timeline shows the comparison's counts.
    compared = re.findall(r"Shadowing .* compared (\d+) mismatch", timeline)
    assert compared and max(map(int, compared)) > 0, timeline

    # v2 promoted after its shadow answered mirrored copies, compared with no mismatch;
    # v3 (a wrong price) caught by the comparison; v4 rolled back on errors.
    assert re.search(r"promoted +\w+ \(v2\)", summary), summary
    assert count(r"shadow: (\d+) mirrored copies", summary) > 0
    assert count(r"compared (\d+), mismatched 0 \(0\.00%\)", summary) >= 100, summary
    assert re.search(r"rolled back +\w+ \(v3\) .*\(ShadowMismatch\)", summary), summary
    assert "body.price" in summary and "clients served by v3: 0" in summary, summary
    assert re.search(r"rolled back +\w+ \(v4\) .*\(AnalysisFailed\)", summary), summary
    assert "error-rate =" in summary and "above max 0.05" in summary, summary
    assert "canary weight 0%" in summary
    assert re.search(r"rolled back +\w+ \(v5\) .*\(CheckFailed\), before any traffic", summary)
    assert "check smoke (BeforeTraffic) failed" in summary and "status 503" in summary, summary
    assert "clients served by v5: 0; mirrored: 0" in summary, summary

    # The plugin shows the route's history and status as a user would type them.
    plugin = out[out.index("== kubectl shadowroute history") :]
    assert "RolledBack" in plugin and "Promoted" in plugin and "CheckFailed" in plugin, plugin
    assert "== kubectl shadowroute status checkout" in plugin and "EVENTS" in plugin, plugin

    # Real requests reached every version, as the clients saw them (X-Version).
    for version in ("v1", "v2", "v4"):
        assert count(rf"by version .*\b{version} (\d+)", summary) > 0, summary
    # The bad canary's 500s reached clients (at its 10 %), reported as such.
    assert count(r"client 5xx +\d+: (\d+) from the v4 canary", summary) > 0
