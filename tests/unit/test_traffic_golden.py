"""Golden files: the route objects of every provider at every stage of a rollout.

One file per provider configuration and stage under tests/unit/golden/traffic/. A
change to what the operator writes shows up as a reviewable diff of these files:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_traffic_golden.py

rewrites them (and removes files of cases that no longer exist); without it, any
difference fails the test. tests/e2e/test_traffic_golden_apply.py sends every file to
the real API server (a server-side dry run), so the Gateway API, Ingress and Istio
schemas validate what is recorded here.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from shadowroute import traffic
from shadowroute.render.workloads import services
from shadowroute.traffic.none import approximation

from .traffic_cases import OWNER, TRAFFIC, YOUR_ROUTE, stage_statuses

GOLDEN = Path(__file__).parent / "golden" / "traffic"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
STAGES = (
    "stable",
    "shadow",
    "step-1-weight-10",
    "step-2-weight-50",
    "preview",
    "promoted",
    "rolled-back",
)


def cases() -> list[tuple[str, str]]:
    return [
        (name, stage)
        for name, cfg in TRAFFIC.items()
        for stage in STAGES
        if not (stage == "shadow" and cfg["provider"] == "none")  # refused: cannot mirror
    ]


_STATUSES: dict[str, Any] = {}


def statuses(name: str) -> dict[str, Any]:
    if name not in _STATUSES:
        _STATUSES[name] = stage_statuses(name)
    return _STATUSES[name]


def render(name: str, stage: str) -> str:
    """The golden text of a case: a header saying what the status is, then the objects."""
    spec, status = statuses(name)[stage]
    objs = traffic.render_routes(OWNER, spec, status)
    lines = [
        f"# {name}, {stage}: stage={status.stage} weight={status.canary_weight} "
        f"mirror={status.mirror_percent}",
    ]
    docs: list[Any] = []
    if spec.traffic.provider == "none":
        # No route: the entry Service's selector carries the weight.
        assert objs == []
        lines.append("# no route object; the entry Service moves traffic by selector")
        note = approximation(spec, status)
        lines.append(f"# status note: {note}" if note else "# status note: none")
        docs = [services(OWNER, spec, status)[0]]
    for obj in objs:
        if isinstance(obj, traffic.RuleEdit):
            lines.append("# the part of your HTTPRoute the operator manages:")
            docs.append(dict(obj))
            body = obj.apply_to(YOUR_ROUTE)
            docs.append(body if body is not None else {"noWrite": "the route already says so"})
        else:
            docs.append(obj)
    return "\n".join(lines) + "\n" + yaml.safe_dump_all(docs, sort_keys=False, width=100)


@pytest.mark.parametrize("name,stage", cases(), ids=[f"{n}/{s}" for n, s in cases()])
def test_golden(name: str, stage: str) -> None:
    path = GOLDEN / name / f"{stage}.yaml"
    text = render(name, stage)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"no golden file {path}: run with UPDATE_GOLDEN=1"
    recorded = path.read_text()
    if recorded != text:
        diff = "".join(
            difflib.unified_diff(
                recorded.splitlines(True), text.splitlines(True), str(path), "rendered now"
            )
        )
        pytest.fail(f"{path} differs (UPDATE_GOLDEN=1 to accept):\n{diff}")


def test_no_stale_golden_files() -> None:
    wanted = {GOLDEN / name / f"{stage}.yaml" for name, stage in cases()}
    present = set(GOLDEN.glob("*/*.yaml"))
    if UPDATE:
        for path in present - wanted:
            path.unlink()
        return
    assert present == wanted, f"stale: {sorted(present - wanted)}; missing: {wanted - present}"


def test_the_stages_are_what_their_names_say() -> None:
    """The golden files would be worthless if the driven statuses were not the stages
    they are filed under."""
    for name in TRAFFIC:
        s = statuses(name)
        assert (s["stable"][1].stage, s["stable"][1].canary_weight) == ("Stable", 0)
        if "shadow" in s:
            assert s["shadow"][1].stage == "Shadowing" and s["shadow"][1].mirror_percent > 0
        assert s["step-1-weight-10"][1].canary_weight == 10
        assert s["step-2-weight-50"][1].canary_weight == 50
        assert (s["promoted"][1].stage, s["promoted"][1].canary_weight) == ("Succeeded", 100)
        assert (s["rolled-back"][1].stage, s["rolled-back"][1].canary_weight) == (
            "RolledBack",
            0,
        )
        preview = s["preview"][1]
        assert preview.stage == "Progressing" and preview.canary_weight == 0
        assert preview.stage_ready_at is not None
