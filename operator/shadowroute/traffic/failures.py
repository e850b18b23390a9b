"""Why a route could not be written, as a condition reason and a message for people.

The reconciler reports these as Degraded=True with the reason, and as a Warning Event;
the message always carries the API server's own words.
"""

from __future__ import annotations

from typing import Any

from ..api_errors import ApiError, api_status
from ..reasons import Reason


class RouteError(Exception):
    """A route the operator cannot change as asked, found before any API error (your
    HTTPRoute or its rule is missing or not as documented)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def kind_missing(exc: ApiError) -> bool:
    """A 404 for the resource type itself (no CRD): the API server answers with a
    plain "404 page not found" rather than a Status naming an object."""
    return exc.status == 404 and not (api_status(exc).get("details") or {}).get("name")


def route_failure(
    obj: dict[str, Any], exc: ApiError, crd_hint: str | None = None
) -> tuple[str, str]:
    """The condition reason and message for an API error on a route object;
    `crd_hint` says what to install when its kind is not served (the provider's
    declaration, see traffic.route_failure)."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    status = api_status(exc)
    said = status.get("message") or (exc.body or "").strip() or str(exc.reason)
    if kind_missing(exc):
        return (
            Reason.ROUTE_KIND_MISSING,
            f"{kind} ({obj['apiVersion']}) is not served by the API server: install "
            f"{crd_hint or 'its CRD'}; the API server said: {said}",
        )
    if exc.status == 409:
        return (
            Reason.ROUTE_CONFLICT,
            f"{kind} {name} is not the operator's to write as it is: {said}",
        )
    if exc.status == 422:
        return Reason.ROUTE_INVALID, f"{kind} {name} was refused by the API server: {said}"
    if exc.status == 403:
        return (
            Reason.ROUTE_FORBIDDEN,
            f"the operator may not write {kind} {name} (see its RBAC): {said}",
        )
    reason = status.get("reason") or "ApiError"
    return Reason.ROUTE_APPLY_FAILED, f"{kind} {name}: {reason}: {said}"
