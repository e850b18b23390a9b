"""What the API server said in an error: the one place its answer is parsed.

`ApiError` carries the API server's `Status` object as JSON text in `.body` (or plain
text such as "404 page not found" when no API serves the path). Pure: no request is
made here (kube/apiserver.py raises it).
"""

from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """The API server answered with an error status: the HTTP status, its reason
    phrase, and the body as text."""

    def __init__(self, status: int, reason: str = "", body: str = "") -> None:
        super().__init__(f"({status}) {reason}")
        self.status, self.reason, self.body = status, reason, body


def api_status(exc: ApiError) -> dict[str, Any]:
    """The Status object of the answer; {} when the body is not one."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def api_causes(exc: ApiError) -> list[str]:
    """Every cause the API server listed (`field: message`), in its order."""
    details = api_status(exc).get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    out = []
    for cause in causes if isinstance(causes, list) else []:
        if not isinstance(cause, dict):
            continue
        text = str(cause.get("message") or cause.get("reason") or "")
        out.append(f"{cause['field']}: {text}" if cause.get("field") else text)
    return out


def api_message(exc: ApiError) -> str:
    """The API server's message, one line, with every cause it listed: a cause its
    message leaves out is added, so nothing it said is lost (as `kubectl apply` shows
    them all)."""
    message = str(api_status(exc).get("message") or exc.reason)
    missing = [c for c in api_causes(exc) if c and c not in message]
    if missing:
        message += " [" + "; ".join(missing) + "]"
    return " ".join(message.split())


def api_reason(exc: ApiError, default: str = "ApiError") -> tuple[str, str]:
    """A CamelCase reason and a one-line message with every cause, in the API
    server's own words."""
    return api_status(exc).get("reason") or exc.reason or default, api_message(exc)


def names_an_object(exc: ApiError) -> bool:
    """A 404 about an object (a Status naming it), not about its kind (no CRD)."""
    return bool((api_status(exc).get("details") or {}).get("name"))
