"""A second local cluster, in a folder of its own, brought up and down: `status` shows
the gateway's health, and `down` leaves no process, no open port and no network
namespace behind (the data plane's processes included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, Cluster, local_cluster

pytestmark = pytest.mark.e2e


def cluster_py(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHADOWROUTE_CLUSTER_DIR": str(folder)}
    env.pop("KUBECONFIG", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "hack" / "cluster.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_a_second_cluster_comes_up_with_its_gateway_and_goes_without_a_trace(
    cluster: Cluster, tmp_path: Path
) -> None:
    if cluster.kubeconfig != str(local_cluster.KUBECONFIG):
        pytest.skip("only the local cluster's scripts are under test here")
    folder = tmp_path / "second"
    up = cluster_py(folder, "up")
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads((folder / "state.json").read_text())
        assert state["gateway"].startswith("http://127.0.0.1:")
        status = cluster_py(folder, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"gateway {state['gateway']}: answering" in status.stdout
        netns = os.readlink(f"/proc/{state['podNetworkPid']}/ns/net")
        assert netns != os.readlink("/proc/self/ns/net")
        assert (
            len(local_cluster.processes_in_namespace(netns)) >= 4
        )  # the bridge, the test kubelet, the kube-proxy, Envoy Gateway
    finally:
        down = cluster_py(folder, "down")
    assert down.returncode == 0, down.stderr
    assert not [p["name"] for p in state["processes"] if local_cluster.alive(p["pid"])]
    assert local_cluster.processes_in_namespace(netns) == []
    assert [n for n, port in state["ports"].items() if local_cluster.port_open(port)] == []
