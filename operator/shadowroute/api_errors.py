"""What the API server said in an error: the one place its answer is parsed.

An ApiException carries the API server's `Status` object as JSON text in `.body`
(or plain text such as "404 page not found" when no API serves the path). Pure: no
request is made here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # any error with .body and .reason: the plugin's client has its own
    from kubernetes.client.exceptions import ApiException


def api_status(exc: ApiException) -> dict[str, Any]:
    """The Status object of the answer; {} when the body is not one."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def api_reason(exc: ApiException, default: str = "ApiError") -> tuple[str, str]:
    """A CamelCase reason and a one-line message, in the API server's own words."""
    status = api_status(exc)
    return status.get("reason") or exc.reason or default, status.get("message") or str(exc.reason)


def names_an_object(exc: ApiException) -> bool:
    """A 404 about an object (a Status naming it), not about its kind (no CRD)."""
    return bool((api_status(exc).get("details") or {}).get("name"))
