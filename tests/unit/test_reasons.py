"""Every reason the operator can write is explained in the docs, and the reasons the
code spells out are the catalogue's."""

from __future__ import annotations

import ast
from pathlib import Path

from shadowroute.reasons import Reason

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "shadowroute"


def test_every_reason_is_explained_in_the_docs() -> None:
    docs = "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    missing = [r.value for r in Reason if f"`{r.value}`" not in docs]
    assert not missing, f"reasons no doc explains: {missing}"


def test_the_shell_and_the_providers_spell_no_reason_of_their_own() -> None:
    """Where reasons are written (the reconciler, route failures), each is a
    catalogue member, not a string literal that could drift from the docs."""
    values = {r.value for r in Reason}
    for path in (
        "reconciler.py",
        "traffic/failures.py",
        "traffic/gatewayapi.py",
        "rollout/machine.py",
        "rollout/conditions.py",
    ):
        tree = ast.parse((PACKAGE / path).read_text())
        literals = {
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in values
        }
        assert not literals - {"Degraded", "Ready"}, f"{path} spells {literals}"
