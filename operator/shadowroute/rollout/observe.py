"""What the state machine is told about the world: plain, immutable values.

The shell (handlers, kube/) builds these from live objects; the core never reads the
API server or the clock itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class Workload:
    """One child Deployment as last seen."""

    revision: str
    """The `shadowroute.io/revision` label of its pod template."""
    replicas: int
    """The replicas its spec asks for."""
    ready: bool
    """Rolled out: the controller saw the latest spec, every replica is updated and
    available, and no old replica is left."""


@dataclass(frozen=True)
class Gates:
    """The gate annotations (`shadowroute.io/<gate>: <token>`) on the ShadowRoute.

    A gate fires when its token differs from the one last acknowledged in
    `status.gates`; the operator then records the token, so seeing the same
    annotation again does nothing. Tokens are opaque; the kubectl plugin writes an
    RFC 3339 time, which also orders a pause against a resume."""

    promote: str = ""
    abort: str = ""
    pause: str = ""
    resume: str = ""
    retry: str = ""


class Health(StrEnum):
    """The analysis verdict as the state machine needs it."""

    HEALTHY = "Healthy"  # every check passed: may advance
    PENDING = "Pending"  # not enough evidence yet: hold
    FAILED = "Failed"  # failure limit reached: roll back now


@dataclass(frozen=True)
class AnalysisSignal:
    health: Health
    reason: str = ""
    message: str = ""
    evidence_at: datetime | None = None
    """When the passing run that makes it Healthy ran. A stage advances only on a run
    made after its traffic was set (stage_ready_at); None when unknown (no constraint)."""


@dataclass(frozen=True)
class CheckResult:
    """A finished attempt of an acceptance check, as the shell saw it end (the answer
    judged, or the Job done): the machine records it in status.checks."""

    name: str
    hook: str
    revision: str
    attempt: int
    passed: bool
    message: str
    step: int | None = None


@dataclass(frozen=True)
class Observation:
    generation: int
    primary: Workload | None = None
    canary: Workload | None = None
    shadow: Workload | None = None
    baseline: Workload | None = None
    comparator: Workload | None = None
    gates: Gates = field(default_factory=Gates)
    analysis: AnalysisSignal | None = None
    """None when the spec has no analysis: the checks are then the health gates alone."""
    comparison: AnalysisSignal | None = None
    """The shadow comparison's verdict; None when the stage is not gated by one."""
    check_results: tuple[CheckResult, ...] = ()
    """Attempts of acceptance checks that ended since status last recorded them."""
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The pod templates known, by revision (the desired one and those the live
    Deployments run): the images and changes status and history name."""
    primary_template_known: bool = True
    """False when the primary must keep running an older revision but its template
    could not be read from the live primary Deployment (someone deleted it)."""
