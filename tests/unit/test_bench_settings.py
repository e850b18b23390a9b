"""A benchmark pointed at another cluster (KUBECONFIG) without the Prometheus settings
it needs says which are missing in one line, before it creates anything (it used to die
on KeyError: 'prometheus')."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "bench", ["rollback_latency.py", "error_rate_bias.py", "shadow_compare.py", "scale.py"]
)
def test_a_missing_prometheus_setting_is_a_one_line_error(bench: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWROUTE_PROMETHEUS")}
    env["KUBECONFIG"] = str(tmp_path / "no-such-kubeconfig")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / bench)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") <= 1
    assert "SHADOWROUTE_PROMETHEUS and SHADOWROUTE_PROMETHEUS_TARGETS" in done.stderr


@pytest.mark.parametrize(
    "argv",
    [["--routes", "0"], ["--rest", "10", "--resync", "30"], ["--interval", "soon"],
     ["--timeout", "-1"], ["--concurrency", "0"], ["--routes", "many"]],
)  # fmt: skip
def test_a_bad_scale_setting_is_a_one_line_error(argv: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "no-such-kubeconfig")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), *argv],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert done.stderr.startswith("scale.py: ")
