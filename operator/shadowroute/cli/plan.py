"""`kubectl shadowroute plan -f FILE`: what applying a ShadowRoute would do, computed
with the operator's own pure core and without changing anything.

The live object, its children and the manifest go through the very function a
reconcile calls (`wanted`), then `diff.needs_write`, so the plan shows exactly what
the next reconcile after `kubectl apply` would write (Prometheus aside: a plan never
claims a check passed): a new
revision or not, the stages it will go through, the acceptance checks it will run,
the events, and which children are created or changed (and how).

Then the plugin asks the API server for a server-side dry run (dryRun=All,
fieldValidation=Strict) of the ShadowRoute and of every child the reconcile would
write, with the very body and field manager the operator applies
(`diff.planned_write`): a pod template the API server refuses (a misspelt field, an
invalid value only the Deployment's validation sees) is reported by plan with every
cause the API server gave, not first by a Degraded route after apply. Nothing is
stored.

A header value of a check is never printed (it may be a token): a plan names the
Secret and key it comes from, or says it is a literal, and a changed literal shows as
`(literal)` in the spec changes too.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..api.models import (
    API_VERSION,
    KIND,
    AcceptanceCheck,
    CompareAgainst,
    HttpExpectation,
    ShadowRouteSpec,
    ShadowRouteStatus,
)
from ..names import Owner
from ..render import diff
from ..render.workloads import route_port
from ..rollout.machine import desired_revision
from ..rollout.observe import AnalysisSignal, Health
from ..traffic import LiveEdit
from ..wanted import Seen, wanted

MAX_CHANGES_SHOWN = 8
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
LITERAL = "(literal)"


class PlanError(ValueError):
    """The manifest is not a ShadowRoute the operator would accept."""


@dataclass
class ObjectChange:
    action: str  # create | update | unchanged
    kind: str
    name: str
    changes: list[str] = field(default_factory=list)


@dataclass
class DryRun:
    """The API server's answer to the server-side dry run of one write."""

    kind: str
    name: str
    action: str  # create | update
    verdict: str  # accepted | refused | skipped
    message: str = ""


@dataclass
class Plan:
    namespace: str
    name: str
    exists: bool
    phase: str
    revision: str
    stable_revision: str
    canary_revision: str
    spec_changes: list[str]
    stages: list[str]
    notes: list[str]
    events: list[tuple[str, str, str]]
    status_after: dict[str, Any]
    objects: list[ObjectChange]
    checks: list[str] = field(default_factory=list)
    writes: list[tuple[dict[str, Any], bool]] = field(default_factory=list)
    """What the next reconcile applies, as (body, force) (`diff.planned_write`)."""
    live_edits: list[LiveEdit] = field(default_factory=list)
    """Parts of objects you own the reconcile would edit: their body depends on the
    object as it is when it is written."""
    dry_runs: list[DryRun] = field(default_factory=list)
    """Filled by the plugin: the server-side dry run of each write."""

    @property
    def refused(self) -> list[DryRun]:
        return [d for d in self.dry_runs if d.verdict == "refused"]

    @property
    def new_revision(self) -> bool:
        return self.revision not in (self.stable_revision, self.canary_revision)

    @property
    def changes(self) -> bool:
        """Applying would change something: the spec, or a child object."""
        return (
            not self.exists
            or bool(self.spec_changes)
            or any(o.action != "unchanged" for o in self.objects)
        )


def parse_spec(body: dict[str, Any]) -> ShadowRouteSpec:
    if body.get("kind") != KIND or body.get("apiVersion") != API_VERSION:
        raise PlanError(
            f"not a {KIND}: apiVersion {body.get('apiVersion')!r}, kind {body.get('kind')!r} "
            f"(want {API_VERSION}, {KIND})"
        )
    if not (body.get("metadata") or {}).get("name"):
        raise PlanError("metadata.name is required")
    try:
        return ShadowRouteSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        errors = [
            "spec"
            + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in error["loc"])
            + ": "
            + str(error["msg"]).removeprefix("Value error, ")
            for error in exc.errors()
        ]
        # Every error, as kubectl apply lists every cause.
        many = f"{len(errors)} errors: " if len(errors) > 1 else ""
        raise PlanError(many + "; ".join(errors)) from exc


def stages(spec: ShadowRouteSpec, name: str) -> list[str]:
    """The stages a new revision goes through under this spec, in words."""
    out = []
    strategy = spec.strategy
    shadow = strategy.shadow
    if shadow is not None and shadow.compare is not None:
        c = shadow.compare
        against = f"{name}-primary" if c.against == CompareAgainst.PRIMARY else f"{name}-baseline"
        out.append(
            f"Shadowing: {shadow.mirror_percent}% of requests mirrored to {name}-comparator for "
            f"at least {shadow.duration}, which asks {name}-shadow and {against} "
            f"({', '.join(c.methods)} only) and compares their answers; it ends when at most "
            f"{c.max_mismatch_rate:.2%} of at least {c.min_compared} compared requests differ "
            "beyond noise, and rolls back (ShadowMismatch) when more do"
        )
    elif shadow is not None:
        out.append(
            f"Shadowing: {name}-shadow gets {shadow.mirror_percent}% of requests "
            f"mirrored for {shadow.duration} (responses thrown away)"
        )
    if strategy.canary is not None:
        steps = strategy.canary.steps
        for i, step in enumerate(steps, 1):
            if step.pause is None:
                then = "advances when ready"
            elif step.pause.duration:
                then = f"holds {step.pause.duration}"
            else:
                then = "waits for `kubectl shadowroute resume` or `promote`"
            out.append(f"Progressing step {i}/{len(steps)}: {step.weight}% of traffic, {then}")
    else:
        bg = strategy.blue_green
        preview = bg.preview_duration if bg is not None else None
        out.append(
            "Progressing: blue/green preview at full scale, reachable by the preview route "
            + (f"for {preview}" if preview else "until promoted")
        )
    out.append("Promoting: the new revision at full scale, then 100% of traffic")
    out.append(f"Succeeded: the previous revision kept warm for {spec.keep_warm}")
    out.append("Stable: primary runs the new revision")
    return out


def _retries(n: int) -> str:
    return "no retries" if n == 0 else f"{n} retr{'y' if n == 1 else 'ies'}"


def _expects(e: HttpExpectation) -> str:
    codes = " or ".join(str(c) for c in sorted(e.status_codes)) if e.status_codes else "2xx"
    parts = [codes]
    if e.body_contains is not None:
        parts.append(f"a body containing {_show(json.dumps(e.body_contains))}")
    parts += [f"{j.path} = {_show(json.dumps(j.value))}" for j in e.json_]
    if e.max_latency is not None:
        parts.append(f"within {e.max_latency}")
    return ", ".join(parts)


def describe_check(check: AcceptanceCheck, port: int) -> str:
    """One acceptance check in words; ``port`` is where an http check without one asks.
    Header values are never shown: a Secret's name and key, or `(literal)`."""
    budget = f"timeout {check.timeout}, {_retries(check.retries)}"
    head = f"check {check.name}: {check.when}"
    if check.http is not None:
        h = check.http
        what = f"http {h.method} {_show(h.path)} on port {h.port or port}"
        headers = [
            f"header {x.name} from Secret {x.secret_key_ref.name}/{x.secret_key_ref.key}"
            if x.secret_key_ref is not None
            else f"header {x.name} {LITERAL}"
            for x in h.headers
        ]
        if headers:
            what += " with " + ", ".join(headers)
        if h.body:
            what += f", a body of {len(h.body.encode())} bytes"
        return f"{head} — {what} (expects {_expects(h.expect)}, {budget})"
    assert check.job is not None
    images = [str(c.get("image")) for c in check.job.template.spec.get("containers") or []]
    return f"{head} — job (image{'s' if len(images) > 1 else ''} {', '.join(images)}, {budget})"


def check_descriptions(spec: ShadowRouteSpec) -> list[str]:
    """The acceptance checks a new revision must pass under this spec, in words, in
    declared order."""
    return [describe_check(c, route_port(spec)) for c in spec.checks]


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def field_changes(old: dict[str, Any], new: dict[str, Any], prefix: str) -> list[str]:
    """`path: old -> new` for every leaf that differs, in path order."""
    a, b = _flatten(old, prefix), _flatten(new, prefix)
    out = []
    for path in sorted(set(a) | set(b)):
        if a.get(path, _MISSING) != b.get(path, _MISSING):
            out.append(f"{path}: {_show(a.get(path, _MISSING))} -> {_show(b.get(path, _MISSING))}")
    return out


@dataclass(frozen=True, repr=False)
class _Literal:
    """A check's literal header value: equal to another by value, shown as `(literal)`
    however it is printed (alone, or inside a list or dict that is)."""

    value: Any

    def __repr__(self) -> str:
        return LITERAL

    __str__ = __repr__


def hide_header_values(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of a spec (as written) whose checks' literal header values are `_Literal`:
    the spec changes say one changed without saying what it is."""
    spec_checks = spec.get("checks")
    if not isinstance(spec_checks, list):
        return spec
    hidden = []
    for check in spec_checks:
        http = check.get("http") if isinstance(check, dict) else None
        headers = http.get("headers") if isinstance(http, dict) else None
        if isinstance(headers, list):
            headers = [
                {**h, "value": _Literal(h["value"])} if isinstance(h, dict) and "value" in h else h
                for h in headers
            ]
            check = {**check, "http": {**http, "headers": headers}}
        hidden.append(check)
    return {**spec, "checks": hidden}


def _desired_changes(desired: Any, live: Any, prefix: str) -> list[str]:
    """Leaves of a desired object that the live one does not have (server defaults and
    fields others own are not differences)."""
    if isinstance(desired, dict):
        live = live if isinstance(live, dict) else {}
        out = []
        for key, item in desired.items():
            out += _desired_changes(item, live.get(key, _MISSING), f"{prefix}.{key}")
        return out
    if isinstance(desired, list) and isinstance(live, list) and len(desired) == len(live):
        out = []
        for i, (d, lv) in enumerate(zip(desired, live, strict=True)):
            out += _desired_changes(d, lv, f"{prefix}[{i}]")
        return out
    if desired != live:
        return [f"{prefix}: {_show(live)} -> {_show(desired)}"]
    return []


class _Missing:
    def __repr__(self) -> str:
        return "(none)"


_MISSING = _Missing()


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, _Missing) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _normal_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec with the defaults the API server would fill in (the models carry them)."""
    try:
        return ShadowRouteSpec.model_validate(spec).to_k8s()
    except ValidationError:
        return spec


def make_plan(
    body: dict[str, Any],
    namespace: str,
    live: dict[str, Any] | None,
    children: dict[str, list[dict[str, Any]]],
    now: dt.datetime,
) -> Plan:
    spec = parse_spec(body)
    name = body["metadata"]["name"]
    desired = desired_revision(spec)
    meta = (live or {}).get("metadata") or {}
    status = ShadowRouteStatus.from_body((live or {}).get("status"))

    spec_changes: list[str] = []
    generation = 1
    if live is not None:
        spec_changes = field_changes(
            hide_header_values(_normal_spec(live.get("spec") or {})),
            hide_header_values(spec.to_k8s()),
            "spec",
        )
        generation = int(meta.get("generation") or 1) + (1 if spec_changes else 0)

    annotations = {
        **(meta.get("annotations") or {}),
        **((body.get("metadata") or {}).get("annotations") or {}),
    }
    signal = None
    if spec.analysis is not None:
        # Prometheus is not asked: a plan never claims a check passed.
        signal = AnalysisSignal(Health.PENDING, "Plan", "not evaluated by plan")
    owner = Owner(API_VERSION, KIND, name, namespace, meta.get("uid") or PLACEHOLDER_UID)
    seen = Seen(
        generation=generation,
        annotations=annotations,
        deployments=children.get("Deployment", []),
        analysis=signal,
    )
    want = wanted(spec, status, seen, owner, now)
    decision, desired_objs, after = want.decision, want.objects, want.status
    objects = []
    writes: list[tuple[dict[str, Any], bool]] = []
    live_edits: list[LiveEdit] = []
    for obj in desired_objs:
        kind, obj_name = obj["kind"], obj["metadata"]["name"]
        current = diff.index_by_name(children.get(kind, [])).get(obj_name)
        if isinstance(obj, LiveEdit):
            live_edits.append(obj)
        else:
            write = diff.planned_write(obj, current)
            writes += [write] if write is not None else []
        if current is None:
            objects.append(ObjectChange("create", kind, obj_name))
        elif diff.needs_write(obj, current):
            changes = [
                c
                for c in _desired_changes(
                    {"spec": obj.get("spec"), "labels": obj["metadata"].get("labels")},
                    {"spec": current.get("spec"), "labels": current["metadata"].get("labels")},
                    "",
                )
            ]
            objects.append(ObjectChange("update", kind, obj_name, [c.lstrip(".") for c in changes]))
        else:
            objects.append(ObjectChange("unchanged", kind, obj_name))

    notes = []
    if live is None:
        notes.append(f"{KIND} {namespace}/{name} does not exist: applying creates it")
    elif desired == status.stable_revision and not status.canary_revision:
        notes.append(f"no new revision: the pod template is unchanged ({desired})")
    elif desired == status.canary_revision:
        notes.append(f"revision {desired} is already rolling out (phase {status.phase.value})")
    elif status.canary_revision and desired == status.stable_revision:
        notes.append(f"cancels the rollout of {status.canary_revision}: template back at stable")
    elif status.canary_revision:
        notes.append(f"supersedes the rollout of {status.canary_revision} (history: Superseded)")
    if spec.paused:
        notes.append("spec.paused is true: the rollout holds where it is")
    if spec.analysis is not None and spec.analysis.metrics:
        checks = ", ".join(m.name for m in spec.analysis.metrics)
        notes.append(
            f"checks before every advance: {checks} every {spec.analysis.interval}, "
            f"rolled back after {spec.analysis.failure_limit + 1} failed runs in a row"
        )
    notes.append(f"a stage whose pods are not ready within {spec.progress_deadline} is rolled back")

    return Plan(
        namespace=namespace,
        name=name,
        exists=live is not None,
        phase=status.phase.value if live is not None else "-",
        revision=desired,
        stable_revision=status.stable_revision,
        canary_revision=status.canary_revision,
        spec_changes=spec_changes,
        stages=stages(spec, name),
        notes=notes,
        events=[(e.type, e.reason, e.message) for e in decision.events],
        status_after=after.to_k8s(),
        objects=objects,
        checks=check_descriptions(spec),
        writes=writes,
        live_edits=live_edits,
    )


def render(plan: Plan, dry_run: str | None = None) -> str:
    """The plan for people."""
    lines = [
        f"{KIND} {plan.namespace}/{plan.name}: "
        + (f"exists, phase {plan.phase}" if plan.exists else "new")
    ]
    if plan.spec_changes:
        lines.append("spec changes:")
        lines += [f"  {c}" for c in plan.spec_changes[: MAX_CHANGES_SHOWN * 2]]
        if len(plan.spec_changes) > MAX_CHANGES_SHOWN * 2:
            lines.append(f"  ... and {len(plan.spec_changes) - MAX_CHANGES_SHOWN * 2} more")
    elif plan.exists:
        lines.append("spec changes: none")
    if not plan.exists:
        lines.append(f"revision {plan.revision}: the first version (Initializing -> Stable)")
    elif plan.new_revision:
        lines.append(
            f"revision {plan.revision}: NEW (stable is {plan.stable_revision or '-'}); "
            "the rollout will go through:"
        )
        lines += [f"  {i}. {s}" for i, s in enumerate(plan.stages, 1)]
        if plan.checks:
            lines.append("and run these acceptance checks:")
            lines += [f"  {c}" for c in plan.checks]
    else:
        lines.append(f"revision {plan.revision}: not new")
    lines += [f"note: {n}" for n in plan.notes]
    after = plan.status_after
    lines.append(
        "after the next reconcile: phase "
        f"{after.get('phase')}, canary weight {after.get('canaryWeight', 0)}%, "
        f"mirror {after.get('mirrorPercent', 0)}%"
        + (f" — {after['message']}" if after.get("message") else "")
    )
    for type_, reason, message in plan.events:
        lines.append(f"  event {type_} {reason}: {message}")
    for o in plan.objects:
        if o.action == "unchanged":
            continue
        lines.append(f"  {o.action} {o.kind} {o.name}")
        if o.action == "update" and not o.changes:
            lines.append(f"      no field of ours changes, only the {diff.APPLIED_HASH} annotation")
        shown = o.changes[:MAX_CHANGES_SHOWN]
        lines += [f"      {c}" for c in shown]
        if len(o.changes) > len(shown):
            lines.append(f"      ... and {len(o.changes) - len(shown)} more")
    same = [f"{o.kind} {o.name}" for o in plan.objects if o.action == "unchanged"]
    if same:
        lines.append(f"  unchanged: {', '.join(same)}")
    if dry_run:
        lines.append(f"server-side dry run: {dry_run}")
    if plan.dry_runs:
        lines.append("server-side dry run of what the operator would apply:")
        for d in plan.dry_runs:
            said = f": {d.message}" if d.message else ""
            lines.append(f"  {d.action} {d.kind} {d.name}: {d.verdict}{said}")
    if plan.refused:
        lines.append(
            f"APPLYING WOULD FAIL: the API server refuses {len(plan.refused)} of the writes "
            "of the next reconcile (the route would be Degraded, ApplyFailed)"
        )
    lines.append("would change: " + ("yes" if plan.changes else "nothing"))
    return "\n".join(lines)
