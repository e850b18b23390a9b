"""A tiny, pure fake cluster to drive the operator's core in unit tests.

Each reconcile calls ``wanted`` — the very function the reconciler and ``plan`` call —
with the fake Deployments as the live ones, then "applies" the Deployments it asks
for. A Deployment whose revision or replica count changed becomes ready after
``ready_after[role]`` ticks (0: at once, before the next reconcile). A tick moves the
clock, lets the rollouts progress, then reconciles.

The world can be steered: change the template, set gate tokens, inject an analysis
signal, break a revision (its pods never become ready) or make a role flap (reported
not ready whatever it runs).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shadowroute.api import ShadowRouteSpec, ShadowRouteStatus
from shadowroute.names import (
    CANARY,
    COMPARE_ROLES,
    GATE_NAMES,
    GATE_PREFIX,
    PRIMARY,
    REVISION_LABEL,
    ROLE_LABEL,
    ROLES,
    SHADOW,
    Owner,
)
from shadowroute.rollout.machine import Decision, Event, desired_revision
from shadowroute.rollout.observe import AnalysisSignal, CheckResult, Gates, Observation
from shadowroute.wanted import Seen, wanted

T0 = datetime(2026, 11, 25, 5, 0, 0, tzinfo=UTC)
OWNER = Owner("shadowroute.io/v1alpha1", "ShadowRoute", "web", "default", "uid-web")

__all__ = ["CANARY", "PRIMARY", "SHADOW", "T0", "Dep", "Sim", "image_template", "spec_dict"]


def image_template(image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


MIRRORING_TRAFFIC = {"provider": "gatewayapi", "gatewayAPI": {"parentRefs": [{"name": "gw"}]}}
"""The traffic of specs with a shadow stage unless a test says otherwise."""


def spec_dict(
    *,
    replicas: int = 3,
    image: str = "web:1",
    steps: list[dict[str, Any]] | None = None,
    shadow: dict[str, Any] | None = None,
    blue_green: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A camelCase spec as a user would write it."""
    strategy: dict[str, Any] = {}
    if shadow is not None:
        strategy["shadow"] = shadow
    if blue_green is not None:
        strategy["blueGreen"] = blue_green
    else:
        strategy["canary"] = {"steps": steps if steps is not None else [{"weight": 50}]}
    if shadow is not None:
        # Provider none cannot mirror, so a shadow stage needs a route that can.
        extra.setdefault("traffic", MIRRORING_TRAFFIC)
    return {
        "replicas": replicas,
        "template": image_template(image),
        "service": {"ports": [{"port": 80, "targetPort": 8080}]},
        "strategy": strategy,
        **extra,
    }


@dataclass
class Dep:
    """A fake Deployment: the object as applied and how many ticks until rolled out."""

    obj: dict[str, Any]
    ticks_left: int

    @property
    def revision(self) -> str:
        return self.obj["metadata"]["labels"][REVISION_LABEL]

    @property
    def replicas(self) -> int:
        return int(self.obj["spec"]["replicas"])


@dataclass
class Sim:
    raw: dict[str, Any]
    now: datetime = T0
    ready_after: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((*ROLES, *COMPARE_ROLES), 0)
    )
    status: ShadowRouteStatus = field(default_factory=ShadowRouteStatus)
    deps: dict[str, Dep] = field(default_factory=dict)
    gates: Gates = field(default_factory=Gates)
    analysis: AnalysisSignal | None = None
    comparison: AnalysisSignal | None = None
    check_results: tuple[CheckResult, ...] = ()
    """Attempts that ended, told to the next reconcile only (as the runner does)."""
    broken: set[str] = field(default_factory=set)
    """Revisions whose pods never become ready."""
    flapping: set[str] = field(default_factory=set)
    """Roles reported not ready whatever they run."""
    generation: int = 1
    events: list[Event] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.spec = ShadowRouteSpec.model_validate(self.raw)

    # ------------------------------------------------------------------ the world

    @property
    def desired(self) -> str:
        return desired_revision(self.spec)

    def revision_of(self, image: str) -> str:
        raw = copy.deepcopy(self.raw)
        raw["template"] = image_template(image)
        return desired_revision(ShadowRouteSpec.model_validate(raw))

    def set_spec(self, **changes: Any) -> None:
        """Change top-level spec fields (camelCase), as `kubectl apply` would."""
        raw = copy.deepcopy(self.raw)
        raw.update(changes)
        self.raw = raw
        self.spec = ShadowRouteSpec.model_validate(raw)
        self.generation += 1

    def set_image(self, image: str) -> None:
        self.set_spec(template=image_template(image))

    def gate(self, name: str, token: str | None = None) -> None:
        """Set a gate annotation; a new token each time unless one is given."""
        token = token or f"{name}-{self.now.isoformat()}-{len(self.events)}"
        self.gates = Gates(**{**self.gates.__dict__, name: token})

    def live(self, role: str, dep: Dep) -> dict[str, Any]:
        """The Deployment as the API server would show it: rolled out, or not yet."""
        ready = dep.ticks_left == 0 and dep.revision not in self.broken
        ready = ready and role not in self.flapping
        n = dep.replicas
        obj = copy.deepcopy(dep.obj)
        obj["metadata"]["generation"] = 1
        obj["status"] = {
            "observedGeneration": 1,
            "replicas": n,
            "updatedReplicas": n if ready else 0,
            "availableReplicas": n if ready else 0,
        }
        return obj

    def seen(self) -> Seen:
        gates = {
            GATE_PREFIX + g: getattr(self.gates, g) for g in GATE_NAMES if getattr(self.gates, g)
        }
        return Seen(
            generation=self.generation,
            annotations=gates,
            deployments=[self.live(role, dep) for role, dep in self.deps.items()],
            analysis=self.analysis,
            comparison=self.comparison,
            check_results=self.check_results,
            comparator_image="shadowroute:test",
        )

    def observation(self) -> Observation:
        """What the state machine is told now."""
        return wanted(self.spec, self.status, self.seen(), OWNER, self.now).observation

    # ------------------------------------------------------------------ the loop

    def reconcile(self) -> Decision:
        """Observe, decide, apply: one pass of the operator at the current time."""
        want = wanted(self.spec, self.status, self.seen(), OWNER, self.now)
        self.check_results = ()
        self.status = want.status
        self.events.extend(want.decision.events)
        self.decisions.append(want.decision)
        self.apply(want.objects)
        return want.decision

    def apply(self, objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            if obj["kind"] != "Deployment":
                continue
            role = obj["metadata"]["labels"][ROLE_LABEL]
            new = Dep(obj, self.ready_after[role])
            dep = self.deps.get(role)
            if dep is None or (dep.revision, dep.replicas) != (new.revision, new.replicas):
                self.deps[role] = new

    def advance(self, seconds: float) -> None:
        """Let time pass and the Deployments roll out by one tick."""
        self.now += timedelta(seconds=seconds)
        for dep in self.deps.values():
            dep.ticks_left = max(0, dep.ticks_left - 1)

    def tick(self, seconds: float = 1) -> Decision:
        self.advance(seconds)
        return self.reconcile()

    def run_until(self, predicate: Any, seconds: float = 1, limit: int = 200) -> Decision:
        """Tick until predicate(sim) holds; fail loudly if it never does."""
        for _ in range(limit):
            if predicate(self):
                return self.decisions[-1]
            self.tick(seconds)
        raise AssertionError(
            f"not reached in {limit} ticks: stage={self.status.stage} phase={self.status.phase} "
            f"step={self.status.current_step} message={self.status.message!r}"
        )

    def settle(self, seconds: float = 1, limit: int = 50) -> Decision:
        """Tick until the status stops changing (timers aside: they need time)."""
        before = None
        for _ in range(limit):
            decision = self.tick(seconds)
            if decision.status == before and not decision.events:
                return decision
            before = decision.status
        raise AssertionError(f"status never settled: {self.status.message!r}")

    # ------------------------------------------------------------------ shortcuts

    def stable(self) -> Sim:
        """Bring the resource to Stable on its current template."""
        self.reconcile()
        self.run_until(lambda s: s.status.stage == "Stable")
        return self

    def reasons(self, since: int = 0) -> list[str]:
        return [e.reason for e in self.events[since:]]
