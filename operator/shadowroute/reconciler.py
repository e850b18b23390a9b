"""One reconcile of one ShadowRoute: read, decide (pure), render (pure), write only
what changed. The imperative shell around rollout/ and render/."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from . import analysis, traffic
from .api.models import API_VERSION, KIND, ShadowRouteSpec, ShadowRouteStatus
from .kube.client import Kube, api_error_reason
from .render import diff
from .render.workloads import Owner, deployments, services
from .rollout import conditions, from_live
from .rollout.machine import decide, desired_revision, template_dict
from .rollout.observe import Observation

log = logging.getLogger(__name__)
APPLY_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Outcome:
    requeue_after: float | None
    writes: int
    status: ShadowRouteStatus | None = None
    """The status as decided (None when the object is gone or its spec is invalid)."""


def status_dict(status: ShadowRouteStatus) -> dict[str, Any]:
    return status.to_k8s()


async def reconcile(
    kube: Kube, namespace: str, name: str, now: dt.datetime | None = None
) -> Outcome:
    body = await kube.get_shadowroute(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return Outcome(None, 0)
    now = now or dt.datetime.now(dt.UTC)
    meta = body["metadata"]
    status = ShadowRouteStatus.from_body(body.get("status"))
    try:
        spec = ShadowRouteSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        return await _refuse(kube, body, status, exc, now)

    route_kinds = traffic.ROUTE_KINDS[spec.traffic.provider]
    children = await kube.list_children(namespace, name, ("Deployment", "Service", *route_kinds))
    live = {kind: diff.index_by_name(objs) for kind, objs in children.items()}
    desired = desired_revision(spec)
    templates: dict[str, dict[str, Any]] = {}
    for dep in children["Deployment"]:
        found = from_live.user_template(dep)
        if found:
            templates.setdefault(found[0], found[1])
    templates[desired] = template_dict(spec)

    roles = from_live.workloads(name, children["Deployment"])
    evaluation = await analysis.evaluate(spec, status, namespace, name, now)
    obs = Observation(
        generation=int(meta.get("generation") or 0),
        primary=roles["primary"],
        canary=roles["canary"],
        shadow=roles["shadow"],
        gates=from_live.gates(meta.get("annotations")),
        analysis=evaluation.signal,
        primary_template_known=(status.primary_revision or desired) in templates,
    )
    decision = decide(spec, status.model_copy(update={"analysis": evaluation.status}), obs, now)
    new_status = decision.status
    requeue = _earliest(decision.requeue_after, evaluation.requeue_after)

    owner = Owner(API_VERSION, KIND, name, namespace, meta["uid"])
    deps, missing = deployments(owner, spec, new_status, desired, templates)
    if missing:
        # The template of the revision a Deployment should keep is gone (its Deployment
        # was deleted): run the desired template there rather than nothing.
        fallback = new_status.model_copy(
            update={"primary_revision": desired, "canary_revision": desired}
        )
        more, _ = deployments(owner, spec, fallback, desired, templates)
        deps += [d for d in more if d["metadata"]["labels"]["shadowroute.io/role"] in missing]
    # Routing first (a rollback moves traffic before anything scales down), then pods.
    desired_objs = [
        *traffic.render_routes(owner, spec, new_status),
        *services(owner, spec, new_status),
        *deps,
    ]

    written = 0
    try:
        for obj in desired_objs:
            if diff.needs_write(obj, live[obj["kind"]].get(obj["metadata"]["name"])):
                await kube.apply(diff.with_applied_hash(obj))
                written += 1
    except ApiException as exc:
        reason, message = api_error_reason(exc)
        if "being terminated" in message:
            return Outcome(None, written)  # the namespace is going away, and we with it
        requeue = _earliest(requeue, APPLY_RETRY_SECONDS)
        _report_apply_failure(new_status, status, f"{reason}: {message}", now)
        if not _already_reported(status, new_status):
            await kube.event(body, "Warning", "ApplyFailed", f"{reason}: {message}")
            written += 1

    if status_dict(new_status) != status_dict(status):
        await kube.apply_status(namespace, name, status_dict(new_status))
        written += 1
    for event in decision.events:
        await kube.event(body, event.type, event.reason, event.message)
        written += 1
    return Outcome(requeue, written, new_status)


def _earliest(*delays: float | None) -> float | None:
    known = [d for d in delays if d is not None]
    return min(known) if known else None


def _report_apply_failure(
    new: ShadowRouteStatus, old: ShadowRouteStatus, message: str, now: dt.datetime
) -> None:
    """Degraded=True with the API server's answer; the same failure again keeps the
    condition exactly as it was, so a persistent error does not rewrite status."""
    previous = old.condition("Degraded")
    if previous and previous.reason == "ApplyFailed" and previous.message == message:
        new.conditions = [c if c.type != "Degraded" else previous for c in new.conditions]
    else:
        conditions.set_condition(new, "Degraded", "True", "ApplyFailed", message, now)


def _already_reported(old: ShadowRouteStatus, new: ShadowRouteStatus) -> bool:
    return old.condition("Degraded") == new.condition("Degraded")


async def _refuse(
    kube: Kube,
    body: dict[str, Any],
    status: ShadowRouteStatus,
    exc: ValidationError,
    now: dt.datetime,
) -> Outcome:
    """A spec the schema let through but the models refuse: say so, change nothing."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = f"spec.{where}: {first['msg']}"
    new = status.model_copy(deep=True)
    new.observed_generation = int(body["metadata"].get("generation") or 0)
    conditions.set_condition(new, "Degraded", "True", "InvalidSpec", message, now)
    if status_dict(new) == status_dict(status):
        return Outcome(None, 0)
    await kube.apply_status(
        body["metadata"]["namespace"], body["metadata"]["name"], status_dict(new)
    )
    await kube.event(body, "Warning", "InvalidSpec", message)
    return Outcome(None, 2)
