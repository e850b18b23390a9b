"""The package's layers, checked on the source: no module imports "up" a layer, peers
in a layer do not import each other, no module reaches into another's private names,
and the stage names are spelled once (in shadowroute.names).

A unit is a top-level module or package of shadowroute (``rollout``, ``names``, ...).
A new unit must be given its layer here: where it sits is a design decision.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from shadowroute.names import PAUSED, Stage

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "shadowroute"

LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        "shadowroute names revision reasons api_errors",  # the root, the vocabulary, reasons
        "api",  # the resource's models
        "stages",  # what a stage means: pure queries every layer above asks
        "acceptance",  # what an acceptance check is, what status records of it, what next
        # the state machine; the children; metrics/logs; Secrets read; the HTTP session
        "rollout render observability secrets http",
        "compare",  # shadow comparison: the differ, the tally, the comparator, its gate
        # the providers' routes; the Prometheus checks; acceptance checks' requests and
        # Jobs (above compare: they read JSON paths with its differ)
        "traffic analysis checks",
        "kube notify",  # the only code that talks to the API server; the webhooks
        "wanted",  # what one reconcile wants: decision plus desired objects
        "reconciler cli",  # the operator's reconcile; the kubectl plugin
        "scheduler",
        "services",  # the operator-wide services, built at startup
        "handlers",  # kopf wiring
        "__main__",
    )
)
LAYER_OF = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
STAGE_NAMES = {str(s) for s in Stage} | {PAUSED}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports(module: str, path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, imported module, names) of every import of ours, function-level too."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "shadowroute":
                yield node.lineno, target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "shadowroute":
                    yield node.lineno, a.name, []


ALL = list(modules())
KNOWN = {m for m, _ in ALL}


def targets(target: str, names: list[str]) -> list[str]:
    """The modules an import reaches: `from ..render import diff` reaches render.diff."""
    found = [f"{target}.{n}" for n in names if f"{target}.{n}" in KNOWN]
    return found or [target]


def test_every_unit_has_a_layer() -> None:
    missing = sorted({unit(m) for m, _ in ALL} - set(LAYER_OF))
    assert not missing, f"give these units a layer in {__name__}.LAYERS: {missing}"


@pytest.mark.parametrize(("module", "path"), ALL, ids=[m for m, _ in ALL])
def test_no_import_points_up_a_layer(module: str, path: Path) -> None:
    here = unit(module)
    wrong = []
    for line, target, names in imports(module, path):
        for reached in targets(target, names):
            there = unit(reached)
            if there == here or there not in LAYER_OF or here not in LAYER_OF:
                continue
            if LAYER_OF[there] > LAYER_OF[here]:
                wrong.append(f"line {line}: {here} imports {reached}, a layer up")
            elif LAYER_OF[there] == LAYER_OF[here]:
                wrong.append(f"line {line}: {here} imports its peer {reached}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(("module", "path"), ALL, ids=[m for m, _ in ALL])
def test_no_private_name_crosses_a_module(module: str, path: Path) -> None:
    wrong = [
        f"line {line}: {name} from {target}"
        for line, target, names in imports(module, path)
        for name in names
        if target != module and name.startswith("_") and not name.startswith("__")
    ]
    assert not wrong, "\n".join(wrong)


def _stage_literals(node: ast.AST) -> list[str]:
    """Stage names written as string literals where code compares or lists stages."""
    found = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Compare):
            for side in [sub.left, *sub.comparators]:
                items = side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]
                found += [
                    i.value for i in items if isinstance(i, ast.Constant) and i.value in STAGE_NAMES
                ]
        elif isinstance(sub, ast.Tuple | ast.List | ast.Set):
            names = [e.value for e in sub.elts if isinstance(e, ast.Constant)]
            staged = [n for n in names if n in STAGE_NAMES]
            if len(staged) >= 2:
                found += staged
    return found


@pytest.mark.parametrize(("module", "path"), ALL, ids=[m for m, _ in ALL])
def test_stage_names_are_spelled_once(module: str, path: Path) -> None:
    if module == "shadowroute.names":
        return
    literals = _stage_literals(ast.parse(path.read_text(), str(path)))
    assert not literals, f"compare with shadowroute.names.Stage/PAUSED, not {literals}"


VOCABULARY = {"Stage", "Phase", "ConditionType", "GATE_NAMES", "GATE_PREFIX", "ROLLOUT_STAGES"}


@pytest.mark.parametrize(("module", "path"), ALL, ids=[m for m, _ in ALL])
def test_the_vocabulary_is_defined_only_in_names(module: str, path: Path) -> None:
    if module == "shadowroute.names":
        return
    defined = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    assert not defined & VOCABULARY, f"import these from shadowroute.names: {defined & VOCABULARY}"
