"""`make demo` is the product's first impression: it runs here, on the session's local
cluster, and must promote the healthy version and roll back the bad one on its error
rate — exactly what it prints as passed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT, Cluster, local_cluster

pytestmark = pytest.mark.e2e


def test_the_demo_promotes_the_healthy_version_and_rolls_back_the_bad_one(
    cluster: Cluster, crds_installed: None
) -> None:
    if cluster.kubeconfig != str(local_cluster.KUBECONFIG):
        pytest.skip("the demo runs on the local cluster; this session uses $KUBECONFIG")
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
    summary = out[out.index("== summary") :]
    assert "promoted" in summary
    assert "(AnalysisFailed)" in summary and "error-rate" in summary, summary
    assert "canary weight 0%" in summary
