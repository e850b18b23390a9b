"""What one reconcile wants: the decision and the desired children, from what it read.

Pure and synchronous. The reconciler, `kubectl shadowroute plan` and the unit-test
simulator all call `wanted`, so what plan predicts is what a reconcile writes, and
the simulator exercises the very code the operator runs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from . import traffic
from .api.models import ShadowRouteSpec, ShadowRouteStatus
from .names import COMPARATOR, ROLE_LABEL, ROLES, Owner, child_name
from .render.comparison import DEFAULT_COMPARATOR_IMAGE, compare_spec, comparison_children
from .render.workloads import deployments, scale_status, services
from .rollout import from_live
from .rollout.machine import Decision, decide, desired_revision, template_dict
from .rollout.observe import AnalysisSignal, CheckResult, Observation


@dataclass(frozen=True)
class Seen:
    """What a reconcile read besides the spec and status."""

    generation: int
    annotations: dict[str, str] = field(default_factory=dict)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    """The live Deployments this ShadowRoute controls."""
    analysis: AnalysisSignal | None = None
    """The analysis verdict for this reconcile; None when the spec has no analysis."""
    comparison: AnalysisSignal | None = None
    """The shadow comparison's verdict; None when the stage is not gated by one."""
    check_results: tuple[CheckResult, ...] = ()
    """Attempts of acceptance checks that ended (checks.runner observed them)."""
    comparator_image: str = DEFAULT_COMPARATOR_IMAGE
    """The image the comparator runs: the operator's (the shell reads it from
    SHADOWROUTE_COMPARATOR_IMAGE, render.comparison.comparator_image)."""


@dataclass(frozen=True)
class Wanted:
    decision: Decision
    """The new status (the approximation note of provider none included), Events and
    timers."""
    objects: list[dict[str, Any]]
    """The desired children in write order: routes first (a rollback moves traffic
    before anything scales down), then Services, then Deployments."""
    observation: Observation

    @property
    def status(self) -> ShadowRouteStatus:
        return self.decision.status


def wanted(
    spec: ShadowRouteSpec,
    status: ShadowRouteStatus,
    seen: Seen,
    owner: Owner,
    now: dt.datetime,
) -> Wanted:
    desired = desired_revision(spec)
    templates: dict[str, dict[str, Any]] = {}
    for dep in seen.deployments:
        if (dep["metadata"].get("labels") or {}).get(ROLE_LABEL) not in ROLES:
            continue  # the comparison's children run no revision of the user's own
        found = from_live.user_template(dep)
        if found:
            templates.setdefault(found[0], found[1])
    templates[desired] = template_dict(spec)
    roles = from_live.workloads(owner.name, seen.deployments)
    obs = Observation(
        generation=seen.generation,
        primary=roles["primary"],
        canary=roles["canary"],
        shadow=roles["shadow"],
        baseline=roles["baseline"],
        comparator=roles["comparator"],
        gates=from_live.gates(seen.annotations),
        analysis=seen.analysis,
        comparison=seen.comparison,
        check_results=seen.check_results,
        templates=templates,
        primary_template_known=(status.primary_revision or desired) in templates,
    )
    decision = decide(spec, status, obs, now)
    after = decision.status
    traffic.note_approximation(spec, after)
    after.replicas, after.selector = scale_status(owner.name, seen.deployments)

    deps, missing = deployments(owner, spec, after, desired, templates)
    if missing:
        # The template of the revision a Deployment should keep is gone (its Deployment
        # was deleted): run the desired template there rather than nothing.
        fallback = after.model_copy(
            update={"primary_revision": desired, "canary_revision": desired}
        )
        more, _ = deployments(owner, spec, fallback, desired, templates)
        deps += [d for d in more if d["metadata"]["labels"][ROLE_LABEL] in missing]
    compared_services, compared_deps = comparison_children(
        owner, spec, after, desired, templates, seen.comparator_image
    )
    # With a comparison, mirrored copies go to the comparator, which asks the shadow.
    mirror_target = child_name(owner.name, COMPARATOR) if compare_spec(spec) else None
    objects = [
        *traffic.render_routes(owner, spec, after, mirror_target),
        *services(owner, spec, after),
        *compared_services,
        *deps,
        *compared_deps,
    ]
    return Wanted(decision, objects, obs)
