"""The docs that are generated or checked: the CRD reference is current, and every
relative link in the README and docs/ leads to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

from . import hack_scripts

ROOT = Path(__file__).resolve().parents[2]


def test_reference_is_current() -> None:
    gen = hack_scripts.load("gen_reference")
    assert gen.OUT.read_text() == gen.render(), "stale: run `make crd`"
    assert gen.main(["--check"]) == 0


def test_reference_documents_every_spec_field() -> None:
    from shadowroute.api.models import ShadowRouteSpec

    text = (ROOT / "docs" / "reference.md").read_text()
    for field in ShadowRouteSpec.model_fields.values():
        assert f"| `{field.alias}` |" in text, field.alias


def test_relative_links_resolve() -> None:
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        prose = re.sub(r"`[^`\n]*`", "", doc.read_text())  # code spans hold regexes
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", prose):
            if "://" in target:
                continue
            path = (doc.parent / target).resolve()
            if not path.exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken
