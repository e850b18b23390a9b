"""What each kind of webhook is sent (pure): our JSON document, Slack's
`{"text": ...}`, a Microsoft Teams Adaptive Card message, or a generic body."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..api.models import NotificationEvent, Webhook, WebhookType
from .events import Notice
from .template import json_body, message

E = NotificationEvent
_BAD = (E.ROLLED_BACK, E.CHECK_FAILED, E.SHADOW_MISMATCH, E.PROGRESS_DEADLINE_EXCEEDED)
_SLACK_ICONS = {E.PROMOTED: ":white_check_mark:", E.HELD: ":pause:", E.PAUSED: ":pause:"}
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"


@dataclass(frozen=True)
class Request:
    method: str
    body: bytes
    content_type: str = "application/json"


def request(hook: Webhook, n: Notice) -> Request:
    """The request a webhook gets for a notice (a generic body that is not JSON once
    filled in raises ValueError; the CRD and the models refuse such a body)."""
    text = message(hook, n)
    if hook.type is WebhookType.GENERIC:
        assert hook.body is not None
        body = json_body(hook.body, n, text)
        json.loads(body)
        return Request(str(hook.method or "POST"), body.encode())
    if hook.type is WebhookType.SLACK:
        icon = ":rotating_light:" if n.kind in _BAD else _SLACK_ICONS.get(n.kind, ":arrow_forward:")
        templated = hook.template is not None or bool(hook.templates)
        doc: dict[str, Any] = {"text": text if templated else f"{icon} {text}"}
    elif hook.type is WebhookType.TEAMS:
        doc = teams_card(n, text)
    else:
        doc = {**document(n), "text": text}
    return Request("POST", json.dumps(doc).encode())


def document(n: Notice) -> dict[str, Any]:
    """The json webhook's document."""
    s = n.status
    doc: dict[str, Any] = {
        "kind": n.kind.value,
        "namespace": n.namespace,
        "name": n.name,
        "revision": n.revision,
        "stableRevision": n.stable_revision,
        "images": list(n.images),
        "stage": n.stage,
        "phase": str(s.phase) if s is not None else n.stage,
        "canaryWeight": n.weight,
        "step": n.step,
        "reason": n.reason,
        "message": n.message,
        "at": n.at,
    }
    if n.check:
        doc["check"] = n.check
    if s is not None:
        doc["analysis"] = {
            "verdict": str(s.analysis.verdict) if s.analysis.verdict else None,
            "consecutiveFailures": s.analysis.consecutive_failures,
            "metrics": [
                {
                    "name": m.name,
                    "value": m.value,
                    "verdict": str(m.verdict),
                    "reason": m.reason,
                    "query": m.query,
                }
                for m in s.analysis.metrics
            ],
        }
    return doc


def teams_card(n: Notice, text: str) -> dict[str, Any]:
    """A message with one Adaptive Card: what a Teams Workflows ("When a Teams webhook
    request is received") webhook posts to a channel."""
    facts = [
        ("Event", n.kind.value),
        ("Revision", n.revision),
        ("Stage", n.stage),
        ("Weight", f"{n.weight}%"),
        ("Reason", n.reason),
        ("Check", n.check),
        ("Images", ", ".join(n.images)),
    ]
    color = "Attention" if n.kind in _BAD else "Good" if n.kind is E.PROMOTED else "Default"
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": f"{n.namespace}/{n.name}: {n.kind.value}",
                "weight": "Bolder",
                "size": "Medium",
                "color": color,
                "wrap": True,
            },
            {"type": "TextBlock", "text": text, "wrap": True},
            {
                "type": "FactSet",
                "facts": [{"title": k, "value": v} for k, v in facts if v],
            },
        ],
    }
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}],
    }
