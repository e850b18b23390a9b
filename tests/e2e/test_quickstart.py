"""The quickstart's "To play by hand" commands run as written, in order, on the local
cluster: a reader who types them gets what the page promises (the gate sequence once
failed when followed literally: the rollout had already finished)."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from .conftest import ROOT, Cluster, KubectlFn, local_cluster

pytestmark = pytest.mark.e2e

QUICKSTART = ROOT / "docs" / "quickstart.md"


def by_hand_commands() -> list[str]:
    """The shell blocks of the section that starts at "To play by hand", up to the next
    heading."""
    text = QUICKSTART.read_text()
    section = text[text.index("To play by hand") :]
    section = section[: section.index("\n## ")]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_the_section_has_the_commands_it_shows() -> None:
    blocks = by_hand_commands()
    assert len(blocks) >= 3
    joined = "\n".join(blocks)
    for gate in ("pause", "resume", "abort", "retry", "promote"):
        assert f"kubectl shadowroute {gate} checkout" in joined


def test_every_command_by_hand_runs_as_written(
    cluster: Cluster, kubectl: KubectlFn, crds_installed: None
) -> None:
    if cluster.kubeconfig != str(local_cluster.KUBECONFIG):
        pytest.skip("the quickstart runs on the local cluster; this session uses $KUBECONFIG")
    kubectl("delete", "namespace", "shop", "--ignore-not-found", "--wait=true", timeout=300)
    script = "\n".join(
        [
            "set -euxo pipefail",
            # The operator the quickstart starts with `&` stops with the script.
            "trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT",
            *by_hand_commands(),
        ]
    )
    try:
        done = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=900, env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
        )  # fmt: skip
        out = done.stdout  # each command's output follows its `+ command` line
        assert done.returncode == 0, out[-6000:]

        def said(command: str) -> str:
            after = out[out.index(f"+ {command}\n") + len(command) + 3 :]
            return after[: after.find("\n+ ")]

        assert "Promoted" in said("kubectl shadowroute history checkout -n shop"), out[-6000:]
        assert "waiting for the resume gate" in said("kubectl shadowroute status checkout -n shop")
        assert "acknowledged" in said("kubectl shadowroute abort checkout -n shop --wait")
        assert "serves all traffic" in said("kubectl shadowroute status checkout -n shop --watch")
        served = json.loads(kubectl("get", "sr", "checkout", "-n", "shop", "-o", "json").stdout)
        image = served["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "registry.example/checkout:1.2.0"
        assert served["status"]["phase"] in ("Succeeded", "Stable"), served["status"]
    finally:
        kubectl("delete", "namespace", "shop", "--ignore-not-found", "--wait=false", check=False)
