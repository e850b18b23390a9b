"""Every test a doc, the chart or an example cites exists: a reader who looks for the
proof of a claim finds it (the alerts file once cited a test that did not exist)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITED = re.compile(r"tests/(?:unit|e2e)/[a-z_0-9]+\.py(?:::[A-Za-z_0-9]+)?")
WHERE = ("README.md", "docs", "charts", "examples", "bench", "hack")


def _citations() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for top in WHERE:
        base = ROOT / top
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        for path in files:
            if path.suffix not in (".md", ".yaml", ".yml", ".txt", ".py", ".json", ".tpl"):
                continue
            for ref in CITED.findall(path.read_text(errors="replace")):
                found.setdefault(ref, []).append(str(path.relative_to(ROOT)))
    return found


def test_the_docs_cite_tests():
    assert len(_citations()) > 5  # the scan itself finds what it should


def test_every_cited_test_file_and_test_exists():
    missing = []
    for ref, where in sorted(_citations().items()):
        file, _, name = ref.partition("::")
        path = ROOT / file
        if not path.is_file():
            missing.append(f"{ref} (cited in {', '.join(sorted(set(where)))})")
        elif name and not re.search(rf"^(?:async )?def {name}\b", path.read_text(), re.M):
            missing.append(f"{ref}: no such test (cited in {', '.join(sorted(set(where)))})")
    assert not missing, "\n".join(missing)
