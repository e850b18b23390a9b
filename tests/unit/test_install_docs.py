"""Where the docs say how to install the plugin, they name what exists: the wheel
`make dist` builds, a clone or the Git URL, never the unpublished PyPI name (issue 14)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLACES = ["charts/shadowroute/templates/NOTES.txt", "README.md", "docs/operations.md"]


@pytest.mark.parametrize("place", PLACES)
def test_install_names_what_exists(place: str) -> None:
    text = (ROOT / place).read_text()
    assert not re.search(r"pip install\s+shadowroute\b", text), f"{place}: not on PyPI"
    assert "make dist" in text and "dist/shadowroute-*.whl" in text, place


def test_make_dist_builds_into_the_ignored_dist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^dist: .*\n(\t.*\n)*\t\$\(PY\) -m build --outdir dist", makefile, re.M)
    assert "dist/" in (ROOT / ".gitignore").read_text().split()
