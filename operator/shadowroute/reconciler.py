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
    evaluation = await analysis.evaluate(spec, status, namespace, name, now, kube=kube)
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
    current: dict[str, Any] = {"kind": ""}  # the object being written, for the report
    traffic.note_approximation(spec, new_status)
    try:
        for current in desired_objs:
            if isinstance(current, traffic.RuleEdit):
                # A rule of your own HTTPRoute: read it as it is now and change only our
                # part; if it changed between our read and our write, read once more.
                for attempt in (1, 2):
                    yours = await kube.get(current["kind"], namespace, current["metadata"]["name"])
                    patch = current.apply_to(yours)
                    if patch is None:
                        break
                    try:
                        await kube.apply(patch)
                    except ApiException as exc:
                        if exc.status == 409 and attempt == 1:
                            continue
                        raise
                    written += 1
                    break
                continue
            seen = live[current["kind"]].get(current["metadata"]["name"])
            if diff.needs_write(current, seen):
                # A route not yet seen as ours is created without force: someone else's
                # object of that name is then a conflict, never silently taken over.
                force = seen is not None or not traffic.is_route(current)
                await kube.apply(diff.with_applied_hash(current), force=force)
                written += 1
        # Routes no longer rendered (another provider, or your own HTTPRoute instead of
        # ours) go, after the new ones are in place. Other providers' kinds are listed
        # only when that can have happened: a new spec, or a failure last time. Kinds
        # we may not list are skipped.
        found = {kind: list(live[kind].values()) for kind in route_kinds}
        degraded = status.condition("Degraded")
        if obs.generation != status.observed_generation or (
            degraded is not None and degraded.status == "True"
        ):
            for kind in (k for k in traffic.ALL_ROUTE_KINDS if k not in found):
                try:
                    found.update(await kube.list_children(namespace, name, (kind,)))
                except ApiException as exc:
                    if exc.status != 403:
                        raise
        for current in traffic.stale_routes(owner, desired_objs, found):
            await kube.delete(current)
            written += 1
    except (ApiException, traffic.RouteError) as exc:
        if isinstance(exc, traffic.RouteError):
            why, message = exc.reason, exc.message
        else:
            reason, message = api_error_reason(exc)
            if "being terminated" in message:
                return Outcome(None, written)  # the namespace is going away, and we with it
            why, message = (
                traffic.route_failure(current, exc)
                if traffic.is_route(current)
                else ("ApplyFailed", f"{reason}: {message}")
            )
        requeue = _earliest(requeue, APPLY_RETRY_SECONDS)
        _report_apply_failure(new_status, status, message, now, why)
        if not _already_reported(status, new_status):
            await kube.event(body, "Warning", why, message)
            written += 1

    if status_dict(new_status) != status_dict(status):
        await kube.apply_status(namespace, name, status_dict(new_status))
        written += 1
    for event in decision.events:
        await kube.event(body, event.type, event.reason, event.message)
        written += 1
    analysis.notify(spec, status, new_status, namespace, name, kube)  # in the background
    return Outcome(requeue, written, new_status)


def _earliest(*delays: float | None) -> float | None:
    known = [d for d in delays if d is not None]
    return min(known) if known else None


def _report_apply_failure(
    new: ShadowRouteStatus,
    old: ShadowRouteStatus,
    message: str,
    now: dt.datetime,
    reason: str = "ApplyFailed",
) -> None:
    """Degraded=True with the API server's answer; the same failure again keeps the
    condition exactly as it was, so a persistent error does not rewrite status."""
    previous = old.condition("Degraded")
    if previous and previous.reason == reason and previous.message == message:
        new.conditions = [c if c.type != "Degraded" else previous for c in new.conditions]
    else:
        conditions.set_condition(new, "Degraded", "True", reason, message, now)


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
