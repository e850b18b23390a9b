"""A notice's words: the `$variables` a template may use, and their values (pure).

Templates are Python's `string.Template` (`$name`, `${name}`, `$$` for a dollar
sign): substitution only, no expressions, no attribute access, no code. The CRD
refuses a template naming an unknown variable (api/models.MESSAGE_VARIABLES); a
template that reaches the operator anyway renders what it can and leaves the rest as
written (`safe_substitute`): a notice is never lost to a typo.
"""

from __future__ import annotations

import json
import string

from ..analysis.judge import fmt
from ..api.models import MESSAGE_VARIABLES, NotificationEvent, Webhook
from .events import Notice

E = NotificationEvent

_WHAT = {
    E.ROLLOUT_STARTED: "rollout of revision {revision} started",
    E.STEP_ADVANCED: "revision {revision} at step {step}: {weight}% of traffic",
    E.PAUSED: "rollout of {revision} paused ({reason})",
    E.RESUMED: "rollout of {revision} resumed",
    E.HELD: "rollout of {revision} held ({reason})",
    E.CHECK_FAILED: "check {check} failed on revision {revision}",
    E.SHADOW_MISMATCH: "shadow of revision {revision} answers differently ({reason})",
    E.PROGRESS_DEADLINE_EXCEEDED: "revision {revision} missed its progress deadline",
    E.PROMOTED: "revision {revision} promoted",
    E.ROLLED_BACK: "revision {revision} rolled back ({reason})",
}


def summary(n: Notice) -> str:
    """The one-line default message: `<namespace>/<name>: what happened`."""
    what = _WHAT[n.kind].format(
        revision=n.revision, step=n.step, weight=n.weight, reason=n.reason, check=n.check
    )
    return f"{n.namespace}/{n.name}: {what}"


def variables(n: Notice) -> dict[str, str]:
    """Every template variable's value, as text."""
    values = {
        "event": n.kind.value,
        "namespace": n.namespace,
        "name": n.name,
        "revision": n.revision,
        "stableRevision": n.stable_revision,
        "images": ", ".join(n.images),
        "weight": str(n.weight),
        "step": str(n.step),
        "stage": n.stage,
        "phase": str(n.status.phase) if n.status is not None else n.stage,
        "reason": n.reason,
        "message": n.message,
        "check": n.check,
        "at": n.at,
        "summary": summary(n),
    }
    assert set(values) == set(MESSAGE_VARIABLES)
    return values


def metrics_line(n: Notice) -> str:
    """The analysis' last values, for the default texts ("" without an analysis)."""
    if n.status is None:
        return ""
    return ", ".join(f"{m.name}={fmt(m.value)} {m.verdict}" for m in n.status.analysis.metrics)


def message(hook: Webhook, n: Notice) -> str:
    """The webhook's text for this notice: its template for the event, else its
    template, else the summary with the event's message and metrics on lines below."""
    per_event = {t.event: t.template for t in hook.templates}
    template = per_event.get(n.kind, hook.template)
    if template is not None:
        return string.Template(template).safe_substitute(variables(n))
    lines = [summary(n)]
    if n.message:
        lines.append(n.message)
    if metrics_line(n) and n.kind in (E.HELD, E.ROLLED_BACK, E.PROMOTED):
        lines.append(f"metrics: {metrics_line(n)}")
    return "\n".join(lines)


def json_body(template: str, n: Notice, text: str) -> str:
    """A generic webhook's body: every value escaped for the inside of a JSON string,
    so no value can break out of its quotes."""
    escaped = {k: json.dumps(v)[1:-1] for k, v in {**variables(n), "text": text}.items()}
    return string.Template(template).safe_substitute(escaped)
