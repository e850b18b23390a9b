"""Every complete ShadowRoute shown in the README and docs/ is accepted by the real API
server as written (server-side dry run), so the docs cannot drift from the schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .conftest import KubectlFn

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
YAML_BLOCK = re.compile(r"```ya?ml\n(.*?)```", re.DOTALL)


def shadowroutes_in_docs() -> list[tuple[str, dict]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in YAML_BLOCK.findall(doc.read_text()):
            for obj in yaml.safe_load_all(block):
                if isinstance(obj, dict) and obj.get("kind") == "ShadowRoute":
                    found.append((f"{doc.name}:{obj['metadata']['name']}", obj))
    return found


DOC_ROUTES = shadowroutes_in_docs()


def test_the_readme_shows_a_shadowroute() -> None:
    assert any(where.startswith("README.md") for where, _ in DOC_ROUTES)


@pytest.mark.parametrize("obj", [o for _, o in DOC_ROUTES], ids=[w for w, _ in DOC_ROUTES])
def test_documented_shadowroute_is_accepted(obj: dict, kubectl: KubectlFn, namespace: str) -> None:
    obj["metadata"].pop("namespace", None)
    kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump(obj),
    )
