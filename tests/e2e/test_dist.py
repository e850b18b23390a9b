"""`make dist`: the wheel installs in a clean virtualenv and its console scripts run
(needs no cluster; here because it builds and installs, too slow for the unit suite).

The dependencies' wheels are cached in $SHADOWROUTE_CACHE/wheels (PyPI the first time,
then --no-index from the cache), so the install is offline and fast after one run."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SHADOWROUTE_CACHE", Path.home() / ".cache" / "shadowroute"))


def run(*argv: str | Path, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=True, timeout=900, **kw
    )


def test_the_wheel_installs_clean_and_its_scripts_run(tmp_path) -> None:
    run("make", "dist", cwd=ROOT)
    wheels = list((ROOT / "dist").glob("shadowroute-*.whl"))
    assert len(wheels) == 1 and list((ROOT / "dist").glob("shadowroute-*.tar.gz"))
    wheel = wheels[0]
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        str(p.relative_to(ROOT / "operator"))
        for p in (ROOT / "operator" / "shadowroute").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sources <= names, f"not in the wheel: {sorted(sources - names)}"

    wheels_dir = CACHE / "wheels"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    pip = [venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    offline = [*pip, "install", "--no-index", "--find-links", wheels_dir, wheel]
    if subprocess.run([str(a) for a in offline], capture_output=True).returncode != 0:
        run(*pip, "wheel", "--wheel-dir", wheels_dir, wheel)  # fill the cache from PyPI
        run(*offline)

    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    res = run(venv / "bin" / "kubectl-shadowroute", "--version", env=env)
    assert res.stdout.strip() == "shadowroute 0.1.0"
    res = run(venv / "bin" / "shadowroute-operator", "--help", env=env)
    assert "usage:" in res.stdout and "--namespace" in res.stdout
    res = run(venv / "bin" / "shadowroute-compare", "--help", env=env)
    assert "usage:" in res.stdout
    # the installed package, not this clone's
    where = run(venv / "bin" / "python", "-c", "import shadowroute; print(shadowroute.__file__)")
    assert str(venv) in where.stdout
