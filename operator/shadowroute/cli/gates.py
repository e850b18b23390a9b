"""The gates a person pulls on a rollout, decided without I/O: which gate makes sense in
which state, and the token written into the annotation.

The operator acts on a gate once, when the annotation's token differs from the one it
recorded in `status.gates`; pause and resume are ordered by comparing their tokens as
strings, so a token must sort like the time it was written: RFC 3339 in UTC with a
fixed nine-digit fraction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..names import GATE_NAMES as GATES
from ..names import GATE_PREFIX as PREFIX
from ..names import PAUSED, RESUME_NOTED, Stage
from ..reasons import Reason
from ..stages import in_rollout, keeps_previous_warm


def token(now_ns: int | None = None) -> str:
    """`2026-11-25T05:00:00.123456789Z`: sortable as a string, unique per nanosecond."""
    ns = time.time_ns() if now_ns is None else now_ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def annotation(gate: str) -> str:
    return PREFIX + gate


@dataclass(frozen=True)
class Verdict:
    """Whether to write the gate: `write` False with `ok` True is a harmless no-op
    (already paused); `ok` False is a refusal that --force overrides."""

    ok: bool
    write: bool
    message: str


def check(gate: str, status: dict[str, Any], spec: dict[str, Any] | None = None) -> Verdict:
    """Does pulling this gate do anything in this status (and spec)? Refusing a gate that
    would be acknowledged and ignored saves a person from believing it worked."""
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}")
    stage = status.get("stage") or status.get("phase") or Stage.INITIALIZING
    phase = status.get("phase") or stage
    rolling = in_rollout(stage)
    warm = keeps_previous_warm(stage, status.get("primaryRevision"), status.get("previousRevision"))
    canary = status.get("canaryRevision") or "-"
    if gate == "promote":
        if stage == Stage.PROMOTING:
            return Verdict(True, False, f"revision {canary} is already being promoted")
        if rolling:
            return Verdict(True, True, f"promote revision {canary}: skip the remaining stages")
        return Verdict(False, False, f"nothing to promote: the phase is {phase}, no rollout runs")
    if gate == "abort":
        if rolling:
            return Verdict(True, True, f"abort revision {canary}: all traffic back on stable")
        if warm:
            return Verdict(
                True,
                True,
                f"abort revision {status.get('stableRevision')} in its warm period: "
                f"traffic back on {status.get('previousRevision')}",
            )
        if stage == Stage.SUCCEEDED:
            hint = "the previous revision is no longer running; revert the template instead"
        else:
            hint = "no rollout runs"
        return Verdict(False, False, f"nothing to abort: the phase is {phase}; {hint}")
    if gate == "pause":
        if status.get("userPaused"):
            return Verdict(True, False, "already paused by the pause gate")
        what = "the rollout" if rolling else "the next rollout"
        return Verdict(True, True, f"pause {what}")
    if gate == "resume":
        if status.get("userPaused"):
            return Verdict(True, True, "resume the paused rollout")
        if status.get("waitingForPromotion"):
            return Verdict(True, True, "resume: advance past the step that waits for a person")
        if phase == PAUSED:
            return Verdict(
                False, False, "paused by spec.paused: change the spec (in Git) to resume"
            )
        return Verdict(False, False, f"nothing to resume: the phase is {phase}, not paused")
    # retry
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    cooling = stage == Stage.STABLE and ready.get("reason") == Reason.COOLING_DOWN
    if stage == Stage.ROLLED_BACK or cooling:
        revision = status.get("rolledBackRevision") or "-"
        message = f"retry revision {revision}, ignoring its cooldown"
        if status.get("userPaused"):
            message += "; the retry lifts the pause gate"
        if (spec or {}).get("paused"):
            message += "; spec.paused still holds the rollout it starts (change the spec to go)"
        return Verdict(True, True, message)
    return Verdict(
        False, False, f"nothing to retry: the phase is {phase}, not RolledBack or cooling down"
    )


def seen(gate: str, value: str, status: dict[str, Any]) -> str | None:
    """What to say once the operator has seen this token (None until it has): it acted
    on it, or (a resume at a step that waits for a person) noted it while another hold
    keeps the step — then the answer names that hold."""
    message = status.get("message") or ""
    if acknowledged(gate, value, status):
        return (
            f"acknowledged by the operator: phase {status.get('phase')}, "
            f"canary weight {status.get('canaryWeight', 0)}%" + (f" — {message}" if message else "")
        )
    if gate == "resume" and (status.get("gates") or {}).get("resumeNoted") == value:
        hold = message.partition(RESUME_NOTED)[0] or "another hold"
        return (
            f"noted by the operator, not acted on yet: {hold}; the step advances once "
            "that hold lifts"
        )
    return None


def acknowledged(gate: str, value: str, status: dict[str, Any]) -> bool:
    """The operator recorded this token: it has acted on the gate."""
    return (status.get("gates") or {}).get(gate) == value
