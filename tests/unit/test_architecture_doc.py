"""docs/architecture.md says what the code is: its layer table is the one the layering
test enforces, and every module, function and file it names exists."""

from __future__ import annotations

import re
from pathlib import Path

from shadowroute import wanted as wanted_module
from shadowroute.api import models

from .test_layers import LAYERS

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "shadowroute"
DOC = (ROOT / "docs" / "architecture.md").read_text()


def unit_of(cell: str) -> str:
    name = cell.strip("`").rstrip("/")
    return name.removesuffix(".py")


def test_the_layer_table_is_the_enforced_one() -> None:
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", DOC, re.M)
    documented = [
        frozenset(unit_of(c) for c in re.findall(r"`([^`]+)`", units)) for _, units in rows
    ]
    enforced = [layer - {"shadowroute"} for layer in LAYERS]
    assert documented == enforced


def test_every_module_named_exists() -> None:
    named = set(re.findall(r"`([a-z_/]+(?:\.py|/))`", DOC))
    missing = [
        n
        for n in named
        if not (PACKAGE / n).exists()
        and not (ROOT / "tests" / "unit" / n).exists()
        and not (ROOT / n).exists()
    ]
    assert not missing, missing


def test_the_models_and_functions_named_exist() -> None:
    for name in ("CanaryStep", "TrafficProvider", "MetricPreset"):
        assert hasattr(models, name), name
    assert callable(wanted_module.wanted)
