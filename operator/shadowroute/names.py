"""The names every module shares, at the bottom of the package: it imports nothing of
ours, and everything may import it.

- the stage vocabulary: `Stage` (status.stage), the `PAUSED` hold that status.phase
  shows over a rollout stage while it is held, and `Phase` (status.phase), built from
  `Stage` and the hold, so each stage name is spelled once;
- the condition types and the check hooks;
- the resource's API identity (group, version, kind, plural) and its timestamps;
- the children's roles, names, labels and metadata, and the field manager.

It imports nothing heavy either: the kubectl plugin's read commands load only this,
`stages`, `cli/` and `kube/apiserver`, never pydantic (docs/architecture.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

# --------------------------------------------------------------------------- the resource

GROUP = "shadowroute.io"
VERSION = "v1alpha1"
KIND = "ShadowRoute"
PLURAL = "shadowroutes"

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp as an aware UTC datetime; ValueError if it is not one."""
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        raise ValueError(f"not an RFC 3339 timestamp: {text!r} (like 2026-11-25T05:00:00Z)")
    return datetime.fromisoformat(text.upper().replace("Z", "+00:00")).astimezone(UTC)


# --------------------------------------------------------------------------- stages


class Stage(StrEnum):
    """The stage a revision is in; the phase shows Paused over it while it is held."""

    INITIALIZING = "Initializing"
    STABLE = "Stable"
    SHADOWING = "Shadowing"
    PROGRESSING = "Progressing"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


PAUSED = "Paused"
"""Not a stage but a hold: status.phase shows it over a rollout stage while held."""

ROLLOUT_STAGES = (Stage.SHADOWING, Stage.PROGRESSING, Stage.PROMOTING)
"""The stages a new revision is on trial in: the ones a hold, promote or abort act on."""

WARM_STAGE = Stage.SUCCEEDED
"""After promotion: the new revision serves while the previous one is kept warm."""


def _phase_members() -> list[tuple[str, str]]:
    members: list[tuple[str, str]] = []
    for stage in Stage:
        members.append((stage.name, stage.value))
        if stage is Stage.PROGRESSING:  # the wire enum lists the hold here
            members.append(("PAUSED", PAUSED))
    return members


Phase = StrEnum("Phase", _phase_members(), module=__name__)  # type: ignore[misc]
Phase.__doc__ = "Where the ShadowRoute is in the life of a revision."


def stage_of(phase: str) -> Stage | None:
    """The stage a phase names; None for the Paused hold (or an unknown string)."""
    try:
        return Stage(phase)
    except ValueError:
        return None


# --------------------------------------------------------------------------- gates

GATE_PREFIX = "shadowroute.io/"
"""A gate is the annotation `shadowroute.io/<gate>: <token>` on the ShadowRoute."""
GATE_NAMES = ("promote", "abort", "pause", "resume", "retry")
RESUME_NOTED = " (resume noted)"
"""Ends status.message while a resume waits for another hold (status.gates.resumeNoted)."""


# --------------------------------------------------------------------------- conditions


class ConditionType(StrEnum):
    """The condition types every module reports under."""

    READY = "Ready"
    """The desired template serves all live traffic and is available (kstatus: the
    rollout is done). False while a rollout runs, after a rollback, and while the
    version that serves is unavailable."""
    AVAILABLE = "Available"
    """The version taking the live traffic is available, whatever it is (a rollout in
    progress or a rollback does not make it False)."""
    RECONCILING = "Reconciling"
    """kstatus: the operator is still working toward the spec (a rollout runs, or is
    held); True from the first apply until Stable."""
    STALLED = "Stalled"
    """kstatus: the operator cannot go on toward the spec without a person (rolled
    back, progress deadline exceeded, a child it cannot write, a spec it refuses)."""
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    ANALYSIS_HEALTHY = "AnalysisHealthy"


class CheckHook(StrEnum):
    """When a check runs in the life of a revision."""

    BEFORE_TRAFFIC = "BeforeTraffic"
    EACH_STEP = "EachStep"
    BEFORE_PROMOTION = "BeforePromotion"
    AFTER_PROMOTION = "AfterPromotion"


# --------------------------------------------------------------------------- children

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "shadowroute"
"""The managed-by label's value on every child."""
FIELD_MANAGER = "shadowroute-operator"
"""The one server-side-apply field manager of the operator."""
CLI_FIELD_MANAGER = "kubectl-shadowroute"
"""The plugin's field manager (its gate annotations)."""
NAME_LABEL = "shadowroute.io/name"
ROLE_LABEL = "shadowroute.io/role"
REVISION_LABEL = "shadowroute.io/revision"
LIVE_LABEL = "shadowroute.io/live"  # primary and canary pods: what the entry Service may pick
PRIMARY, CANARY, SHADOW = "primary", "canary", "shadow"
ROLES = (PRIMARY, CANARY, SHADOW)
BASELINE, COMPARATOR = "baseline", "comparator"
CHECK_ROLE = "check"
"""The role label of a job check's Jobs and pods: no Service selects it."""
COMPARE_ROLES = (BASELINE, COMPARATOR)
"""The children of a shadow comparison: they exist only for a ShadowRoute whose shadow
stage compares, and run pods only while it shadows."""


@dataclass(frozen=True)
class Owner:
    """The ShadowRoute that owns every child (garbage collection, and our watch)."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def child_name(owner_name: str, role: str | None) -> str:
    return owner_name if role is None else f"{owner_name}-{role}"


def selector(owner_name: str, role: str) -> dict[str, str]:
    return {NAME_LABEL: owner_name, ROLE_LABEL: role}


def child_labels(owner_name: str, role: str | None, revision: str | None = None) -> dict[str, str]:
    labels = {MANAGED_BY: MANAGER, NAME_LABEL: owner_name}
    if role:
        labels[ROLE_LABEL] = role
    if revision:
        labels[REVISION_LABEL] = revision
    return labels


def child_metadata(owner: Owner, name: str, labels: dict[str, str]) -> dict[str, Any]:
    """The metadata of every child we create: its name, our labels, the owner."""
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner.reference()],
    }
