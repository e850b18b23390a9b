"""One reconcile of one ShadowRoute, the imperative shell around `wanted` (pure): read;
decide and render; write the status first (the record of intent, with the Events and
notices it decided); then the children that differ, routes first; then deliver the
Events and notices and write what is left. Never writes an object this ShadowRoute
does not control. See docs/reliability.md."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from . import analysis, traffic
from .analysis.prometheus import Client
from .api.duration import parse_duration
from .api.models import (
    API_VERSION,
    KIND,
    OUTBOX_LIMIT,
    NotificationEvent,
    PendingEvent,
    ShadowRouteSpec,
    ShadowRouteStatus,
    parse_timestamp,
)
from .api_errors import ApiError, api_reason
from .checks.runner import CheckRunner
from .kube.client import Gone, Kube
from .kube.feed import Feed
from .names import Owner
from .notify import Notifier, desired_images, notification_spec, transitions
from .reasons import WRITE_FAILURES, Reason
from .render import diff
from .render.comparison import comparator_image, stale_comparison_children
from .render.workloads import stale_shadow_children
from .rollout import conditions
from .rollout.observe import Observation
from .secrets import Secrets
from .wanted import Seen, wanted

log = logging.getLogger(__name__)
APPLY_RETRY_SECONDS = 5.0
APPLY_RETRY_CAP = 300.0


@dataclass(frozen=True)
class Outcome:
    requeue_after: float | None
    writes: int
    status: ShadowRouteStatus | None = None
    """The status as decided (None when the object is gone or its spec is invalid)."""


def status_dict(status: ShadowRouteStatus) -> dict[str, Any]:
    return status.to_k8s()


async def reconcile(
    kube: Kube,
    namespace: str,
    name: str,
    now: dt.datetime | None = None,
    *,
    notifier: Notifier | None = None,
    prometheus: Client | None = None,
    secrets: Secrets | None = None,
    wake: Callable[[], None] | None = None,
    checks: CheckRunner | None = None,
    feed: Feed | None = None,
) -> Outcome:
    """`notifier`, `prometheus`, `secrets` and `checks` are the operator's (services.py);
    without them (tools, tests) this reconcile makes its own. `wake` asks for another
    reconcile of this route (a webhook delivery settled, an http check answered).
    With the operator's `feed`, the ShadowRoute and its children are read from the
    watch index (kube/store.py), not the API server, and our writes go into it."""
    body = await (feed or kube).get_shadowroute(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return Outcome(None, 0)
    secrets = secrets or Secrets()
    run = _Writes(
        kube, body, notifier or Notifier(), wake, prometheus or Client(), secrets,
        checks or CheckRunner(secrets=secrets), feed,
    )  # fmt: skip
    try:
        return await _reconcile(run, now or dt.datetime.now(dt.UTC))
    except Gone:
        return Outcome(None, run.count)  # deleted while we worked: nothing left to do


@dataclass
class _Writes:
    """One reconcile's connection to the world: the object read, the writes made."""

    kube: Kube
    body: dict[str, Any]
    notifier: Notifier
    wake: Callable[[], None] | None
    prometheus: Client
    secrets: Secrets
    checks: CheckRunner
    feed: Feed | None = None
    count: int = 0

    async def list_children(self, kinds: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
        """This ShadowRoute's labelled children: from the watch index, else listed."""
        return await (self.feed or self.kube).list_children(self.namespace, self.name, kinds)

    async def apply(self, obj: dict[str, Any], force: bool = True) -> None:
        """Apply one child; the answer goes into the watch index (write-through)."""
        stored = await self.kube.apply(obj, force)
        if self.feed is not None:
            self.feed.remember(stored)
        self.count += 1

    async def delete(self, obj: dict[str, Any]) -> None:
        await self.kube.delete(obj)
        if self.feed is not None:
            self.feed.deleted(obj)
        self.count += 1

    @property
    def namespace(self) -> str:
        return self.body["metadata"]["namespace"]

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    async def status(self, old: ShadowRouteStatus, new: ShadowRouteStatus) -> None:
        """Write the status when it changed; only to the object that was read."""
        if status_dict(new) != status_dict(old):
            uid = self.body["metadata"].get("uid")
            stored = await self.kube.apply_status(
                self.namespace, self.name, status_dict(new), uid=uid
            )
            if self.feed is not None:
                self.feed.remember(stored)
            self.count += 1

    async def deliver(
        self, spec: ShadowRouteSpec | None, written: ShadowRouteStatus
    ) -> tuple[ShadowRouteStatus, bool]:
        """Post the pending Events and start the pending notifications of a status that
        is already written; the status without what is done, and whether something is
        still to be retried."""
        left = []
        for pending in written.pending_events:
            recorded = await self.kube.event(
                self.body, pending.type, pending.reason, pending.message,
                name=f"{self.name}.{pending.id}",
            )  # fmt: skip
            if recorded:
                self.count += 1
            else:
                left.append(pending)
        hooks = notification_spec(spec)
        self.notifier.deliver(hooks, written, self.namespace, self.name, self.kube, self.wake)
        settled = self.notifier.settled(self.namespace, self.name)
        done = written.model_copy(
            update={
                "pending_events": left,
                "pending_notifications": [
                    n for n in written.pending_notifications if n.id not in settled
                ],
            }
        )
        self.notifier.forget(self.namespace, self.name, settled)
        return done, bool(left)


async def _reconcile(w: _Writes, now: dt.datetime) -> Outcome:
    body, kube, namespace, name = w.body, w.kube, w.namespace, w.name
    meta = body["metadata"]
    status = ShadowRouteStatus.from_body(body.get("status"))
    try:
        spec = ShadowRouteSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        return await _refuse(w, status, exc, now)

    route_kinds = traffic.ROUTE_KINDS[spec.traffic.provider]
    children = await w.list_children(("Deployment", "Service", *route_kinds))
    # Only what this ShadowRoute controls is ours; a look-alike (our labels, another
    # owner) is someone else's object in the way, found below.
    live = {
        kind: diff.index_by_name([o for o in objs if controlled_by(o, meta["uid"])])
        for kind, objs in children.items()
    }
    evaluation = await analysis.evaluate(
        spec, status, namespace, name, now, kube=kube, client=w.prometheus, secrets=w.secrets
    )
    comparison = await analysis.compare(
        spec, status, namespace, name, now, kube=kube, client=w.prometheus, secrets=w.secrets
    )
    checked = await w.checks.observe(kube, spec, status, namespace, name)
    owner = Owner(API_VERSION, KIND, name, namespace, meta["uid"])
    seen = Seen(
        generation=int(meta.get("generation") or 0),
        annotations=meta.get("annotations") or {},
        deployments=list(live["Deployment"].values()),
        analysis=evaluation.signal,
        comparison=comparison.signal,
        check_results=checked.results,
        comparator_image=comparator_image(),
    )
    read = status.model_copy(
        update={"analysis": evaluation.status, "comparison": comparison.status}
    )
    want = wanted(spec, read, seen, owner, now)
    decision, desired_objs, obs = want.decision, want.objects, want.observation
    requeue = _earliest(
        decision.requeue_after,
        evaluation.requeue_after,
        comparison.requeue_after,
        checked.poll_after,
    )

    # Someone else's object where a child of ours would go: write nothing, say whose.
    conflicts = await _look_up(kube, meta["uid"], desired_objs, live, children)
    if conflicts:
        held = status.model_copy(deep=True)
        reason, message = conflicts[0][0], "; ".join(m for _, m in conflicts)
        failed = _report_failure(held, status, reason, message, now, stalls=True)
        written, retry = await w.deliver(spec, held)
        await w.status(status, written)
        return Outcome(_earliest(_backoff(failed, now), 5.0 if retry else None), w.count, written)

    # The decision is durable before it acts: status first, with the Events and
    # notifications it decided, so no kill at any instant loses a rollback (a restart
    # reads RolledBack and renders weight 0 again) or an Event.
    intent = decision.status.model_copy(deep=True)
    _keep_reported_failure(intent, status)
    _enqueue(intent, now, [(e.type, e.reason, e.message) for e in decision.events])
    _enqueue(intent, now, _hold_warnings(spec, status, decision.status))
    intent.pending_notifications = [
        *intent.pending_notifications,
        *w.notifier.decide(
            notification_spec(spec),
            status,
            decision.status,
            namespace,
            name,
            desired_images(spec),
        ),
    ][-OUTBOX_LIMIT:]
    await w.status(status, intent)

    final = intent.model_copy(deep=True)
    failure = await _apply(w, owner, spec, obs, status, desired_objs, live, route_kinds)
    # The checks status now says are running begin (the record is written: a kill
    # from here on finds it), once the children they ask are in place.
    started = await w.checks.start(kube, owner, spec, intent, live["Service"], checked, now, w.wake)
    requeue = _earliest(requeue, started)
    if failure is None:
        _clear_reported_failure(final, decision.status)
    else:
        why, message, stalls = failure
        failed = _report_failure(final, status, why, message, now, stalls)
        requeue = _earliest(requeue, _backoff(failed, now))
    # Events go out after the writes they tell of; then one status write says what
    # is left (normally nothing) and what the writes found.
    written, retry = await w.deliver(spec, final)
    await w.status(intent, written)
    return Outcome(_earliest(requeue, 5.0 if retry else None), w.count, written)


async def _apply(
    w: _Writes,
    owner: Owner,
    spec: ShadowRouteSpec,
    obs: Observation,
    status: ShadowRouteStatus,
    desired_objs: list[dict[str, Any]],
    live: dict[str, dict[str, dict[str, Any]]],
    route_kinds: tuple[str, ...],
) -> tuple[str, str, bool] | None:
    """Write the children that differ and delete stale routes; the reason and message
    of the first failure (nothing after it is written) and whether it needs a person
    (a refusal, a conflict; not an API server that failed or was busy), or None. A
    namespace being deleted raises Gone, as a ShadowRoute deleted mid-reconcile does."""
    kube, namespace = w.kube, w.namespace
    current: dict[str, Any] = {"kind": ""}  # the object being written, for the report
    try:
        for current in desired_objs:
            if isinstance(current, traffic.LiveEdit):
                # Part of an object you own: read it as it is now and change only our
                # part; if it changed between our read and our write, read once more.
                for attempt in (1, 2):
                    yours = await kube.get(current["kind"], namespace, current["metadata"]["name"])
                    patch = current.apply_to(yours)
                    if patch is None:
                        break
                    try:
                        await kube.apply(patch)
                    except ApiError as exc:
                        if exc.status == 409 and attempt == 1:
                            continue
                        raise
                    w.count += 1
                    break
                continue
            seen = live[current["kind"]].get(current["metadata"]["name"])
            write = diff.planned_write(current, seen)
            if write is not None:
                # Not yet ours: created without force (the check above found no object).
                await w.apply(*write)
        # Routes no longer rendered (another provider, or your own route instead of
        # ours) go, after the new ones are in place. Other providers' kinds are listed
        # only when that can have happened: a new spec, or a failure last time. Kinds
        # we may not list are skipped.
        found = {kind: list(live[kind].values()) for kind in route_kinds}
        if obs.generation != status.observed_generation or _degraded(status):
            for kind in (k for k in traffic.ALL_ROUTE_KINDS if k not in found):
                try:
                    found.update(await w.list_children((kind,)))
                except ApiError as exc:
                    if exc.status != 403:
                        raise
        for current in traffic.stale_routes(owner, desired_objs, found):
            await w.delete(current)
        # The comparison's children once the spec stops comparing, and the shadow's
        # once no shadow can be of use (both created by us earlier).
        stale = [
            *stale_comparison_children(owner, spec, desired_objs, live),
            *stale_shadow_children(owner, spec, desired_objs, live),
        ]
        for current in stale:
            await w.delete(current)
    except traffic.RouteError as exc:
        return exc.reason, exc.message, True
    except ApiError as exc:
        reason, message = api_reason(exc)
        if "being terminated" in message or (exc.status == 404 and "namespaces" in message):
            raise Gone(message) from exc  # the namespace is going away, and we with it
        if exc.status == 422 and "Controller set to true" in message:
            return (
                Reason.NAME_CONFLICT,
                (
                    f"{current['kind']} {current['metadata']['name']} is controlled by another "
                    f"object: {message}"
                ),
                True,
            )
        if traffic.is_route(current):
            return *traffic.route_failure(current, exc), _needs_a_person(exc)
        what = f"{current['kind']} {current['metadata']['name']}: " if current["kind"] else ""
        return Reason.APPLY_FAILED, f"{what}{reason}: {message}", _needs_a_person(exc)
    return None


def _needs_a_person(exc: ApiError) -> bool:
    """A refusal (invalid, forbidden, a conflict with another manager) stalls the
    route; an API server that failed, timed out or was busy (5xx, 429, no status) is
    retried with backoff and the route stays Reconciling."""
    return exc.status is not None and 400 <= exc.status < 500 and exc.status != 429


def controlled_by(obj: dict[str, Any], uid: str) -> bool:
    """The object's controller owner reference names this uid."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def _whose(obj: dict[str, Any]) -> str:
    """Who an object belongs to, in words: its controller, else who wrote which of its
    fields (from managedFields)."""
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return f"controlled by {ref.get('kind')} {ref.get('name')}"
    owners = []
    for entry in meta.get("managedFields") or []:
        fields = sorted(
            f".{top[2:]}.{key[2:]}"
            for top, sub in (entry.get("fieldsV1") or {}).items()
            if top in ("f:spec", "f:data")
            for key in (sub or {})
            if key.startswith("f:")
        )
        what = f" owns {', '.join(fields)}" if fields else ""
        owners.append(f'"{entry.get("manager", "?")}"{what}')
    return "not created by this ShadowRoute" + (
        f" (written by {'; '.join(owners)})" if owners else ""
    )


async def _look_up(
    kube: Kube,
    uid: str,
    desired_objs: list[dict[str, Any]],
    live: dict[str, dict[str, dict[str, Any]]],
    children: dict[str, list[dict[str, Any]]],
) -> list[tuple[str, str]]:
    """Look up each child we would write that is not listed as ours: one of ours that
    lost its labels joins `live`; an object this ShadowRoute does not control (a user's
    Service, a sibling ShadowRoute's child) is a conflict: its reason (RouteConflict
    for a route, else NameConflict) and a description. At rest every child is listed
    as ours: no read."""
    labelled = {(kind, o["metadata"]["name"]): o for kind, objs in children.items() for o in objs}
    unknown = [
        o
        for o in desired_objs
        if not isinstance(o, traffic.LiveEdit) and o["metadata"]["name"] not in live[o["kind"]]
    ]

    async def found(o: dict[str, Any]) -> dict[str, Any] | str | None:
        """The object of that name, None when there is none, or why it cannot be read."""
        key = (o["kind"], o["metadata"]["name"])
        if key in labelled:
            return labelled[key]
        try:
            return await kube.get(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
        except ApiError as exc:
            if exc.status == 404:
                return None  # a kind not served: the apply reports it
            reason, message = api_reason(exc)
            return f"{reason}: {message}"

    conflicts: list[tuple[str, str]] = []
    for o, there in zip(unknown, await asyncio.gather(*map(found, unknown)), strict=True):
        what = f"{o['kind']} {o['metadata']['name']}"
        if there is None:
            continue
        if isinstance(there, str):
            # Not knowing whose it is, write nothing: it may be someone else's.
            why = f"cannot read {what} to see whose it is before creating it (needs get): {there}"
            conflicts.append((Reason.APPLY_FAILED, why))
        elif controlled_by(there, uid):
            live[o["kind"]][o["metadata"]["name"]] = there
        elif traffic.is_route(o):
            why = (
                f"{what} is not the operator's to write as it is: it exists and is {_whose(there)}"
            )
            conflicts.append((Reason.ROUTE_CONFLICT, why))
        else:
            why = (
                f"{what} exists and is {_whose(there)}; the operator never writes, adopts or "
                "deletes it: rename one of them or remove it"
            )
            conflicts.append((Reason.NAME_CONFLICT, why))
    return conflicts


def _hold_warnings(
    spec: ShadowRouteSpec, old: ShadowRouteStatus, new: ShadowRouteStatus
) -> list[tuple[str, str, str]]:
    """A Warning Event when the analysis has held a rollout for a whole interval (two
    runs in a row), with the condition's reason: the first run of a step often has no
    data yet, and that is no news."""
    if spec.analysis is None:
        return []
    hold_after = parse_duration(spec.analysis.interval)
    return [
        ("Warning", n.reason, f"analysis holds revision {n.revision}: {n.message}")
        for n in transitions(old, new, "", "", hold_after)
        if n.kind is NotificationEvent.HELD
    ]


def _enqueue(s: ShadowRouteStatus, now: dt.datetime, events: list[tuple[str, str, str]]) -> None:
    """Add Events to status.pendingEvents, each with an id that names it (posting it
    twice records it once). The id begins with the time in microseconds (13 hex
    digits, enough until 2112) and then the place in the outbox, so the Events' names
    sort as they happened: the API server lists by name, and `kubectl describe` keeps
    that order among Events of the same second (its lastTimestamp has no fraction)."""
    start = len(s.pending_events)
    added = []
    micros = int(now.timestamp() * 1_000_000)
    for i, (type_, reason, message) in enumerate(events, start):
        ident = f"{micros:013x}{i % 4096:03x}"
        added.append(PendingEvent(id=ident, type=type_, reason=reason, message=message[:1024]))
    if added:
        s.pending_events = [*s.pending_events, *added][-OUTBOX_LIMIT:]


def _earliest(*delays: float | None) -> float | None:
    known = [d for d in delays if d is not None]
    return min(known) if known else None


def _degraded(s: ShadowRouteStatus) -> bool:
    c = s.condition("Degraded")
    return c is not None and c.status == "True"


def _shell_failure(s: ShadowRouteStatus) -> bool:
    """Degraded because a write failed (reported by the shell, not the state machine)."""
    return _degraded(s) and s.condition("Degraded").reason in WRITE_FAILURES


def _keep_reported_failure(intent: ShadowRouteStatus, old: ShadowRouteStatus) -> None:
    """A write failure stays reported until a write succeeds (not flipped back and
    forth by the decision, which knows nothing of writes): Degraded, and the Stalled,
    Reconciling and Ready that `conditions.stall` set with it."""
    if _shell_failure(old) and not _degraded(intent):
        kept = {t: old.condition(t) for t in conditions.STALL_REPORTED}
        intent.conditions = [kept.get(c.type) or c for c in intent.conditions]


def _clear_reported_failure(final: ShadowRouteStatus, decided: ShadowRouteStatus) -> None:
    """Every write succeeded: Degraded and Ready are what the decision says."""
    if _shell_failure(final):
        final.conditions = list(decided.conditions)


def _report_failure(
    new: ShadowRouteStatus,
    old: ShadowRouteStatus,
    reason: str,
    message: str,
    now: dt.datetime,
    stalls: bool,
) -> dt.datetime:
    """Degraded=True with the API server's answer (and Ready=False: the spec is not
    served until a write succeeds; Stalled=True when it needs a person, else
    Reconciling=True while it is retried), and a Warning Event the first time;
    the same failure again keeps the condition exactly as it was, so a persistent error
    does not rewrite status. Returns since when it has been failing."""
    previous = old.condition("Degraded")
    if previous and (previous.status, previous.reason, previous.message) == (
        "True",
        reason,
        message,
    ):
        new.conditions = [c if c.type != "Degraded" else previous for c in new.conditions]
        since = previous.last_transition_time
    else:
        conditions.set_condition(new, "Degraded", "True", reason, message, now)
        _enqueue(new, now, [("Warning", reason, message)])
        since = (new.condition("Degraded") or previous).last_transition_time
    (conditions.stall if stalls else conditions.retrying)(new, reason, message, now)
    return parse_timestamp(since) if since else now


def _backoff(failing_since: dt.datetime, now: dt.datetime) -> float:
    """How long to wait before writing again: as long as it has been failing (so the
    retries double), from 5 s to 5 min, with jitter. Restart-safe: the start of the
    failure is the condition's lastTransitionTime."""
    elapsed = (now - failing_since).total_seconds()
    return min(max(elapsed, APPLY_RETRY_SECONDS), APPLY_RETRY_CAP) * random.uniform(0.8, 1.0)


async def _refuse(
    w: _Writes, status: ShadowRouteStatus, exc: ValidationError, now: dt.datetime
) -> Outcome:
    """A spec the schema let through but the models refuse: say so, change nothing."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = f"spec.{where}: {first['msg']}"
    new = status.model_copy(deep=True)
    new.observed_generation = int(w.body["metadata"].get("generation") or 0)
    previous = status.condition("Degraded")
    if previous is None or (previous.reason, previous.message) != (Reason.INVALID_SPEC, message):
        _enqueue(new, now, [("Warning", Reason.INVALID_SPEC, message)])
    conditions.set_condition(new, "Degraded", "True", Reason.INVALID_SPEC, message, now)
    conditions.stall(new, Reason.INVALID_SPEC, message, now)
    written, retry = await w.deliver(None, new)
    await w.status(status, written)
    return Outcome(5.0 if retry else None, w.count)
