"""The golden files of tests/unit/golden/traffic, sent to the real API server as a
server-side dry run: what the unit tests record is what the Gateway API, Ingress and
Istio schemas (and Gateway API's CEL rules) accept."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import KubectlFn

pytestmark = pytest.mark.e2e
GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "unit" / "golden" / "traffic"
FILES = sorted(GOLDEN.glob("*/*.yaml"))


def applicable(doc: dict[str, Any], namespace: str) -> dict[str, Any] | None:
    """The object to dry-run: the managed fragment of a user's route is not a whole
    object, and a merged one is checked as the whole route it becomes."""
    if "noWrite" in doc:
        return None
    obj = copy.deepcopy(doc)
    meta = obj["metadata"]
    if obj["kind"] == "HTTPRoute" and "labels" not in meta:
        if "resourceVersion" not in meta:
            return None  # the fragment
        del meta["resourceVersion"]
        obj["spec"] = {"parentRefs": [{"name": "gw"}], **obj["spec"]}
    meta["namespace"] = namespace
    return obj


def test_there_are_golden_files() -> None:
    assert len(FILES) >= 40


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
def test_golden_file_is_accepted_by_the_api_server(
    path: Path, kubectl: KubectlFn, namespace: str
) -> None:
    docs = [applicable(d, namespace) for d in yaml.safe_load_all(path.read_text()) if d]
    docs = [d for d in docs if d is not None]
    if not docs:  # the operator writes nothing to your route in this stage
        assert "noWrite" in path.read_text()
        return
    result = kubectl(
        "apply", "--dry-run=server", "--server-side", "--validate=strict", "-f", "-",
        input=yaml.safe_dump_all(docs), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
