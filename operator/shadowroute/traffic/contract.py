"""What a traffic provider declares, below every provider: the route kinds it writes
and the live edit, the one kind of desired object that is not applied as it is.

A provider module exports ``PROVIDER`` (its ``TrafficProvider``), ``KINDS`` (a tuple
of ``RouteKind``) and ``render``. Everything else that depends on the route kinds is
derived from ``KINDS``: the API paths (kube/client.py), the watches (handlers.py),
stale-route cleanup and the CRD hints (traffic/), the chart's RBAC rules for routes
(hack/gen_rbac.py writes them into charts/shadowroute/templates/_helpers.tpl).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ROUTE_VERBS = ("get", "list", "watch", "create", "patch", "delete")
"""What the operator does with every route kind: reads one by name before it creates
it (an object of that name that is not its own is never taken over) and to edit a
rule of a route you own, lists it by label (each reconcile, to find routes left
behind), watches it (a hand edit is put back at once), applies it (server-side apply:
create, then patch), deletes it when a ShadowRoute switches provider."""


@dataclass(frozen=True)
class RouteKind:
    """One kind of route object a provider writes, and how the API serves it."""

    kind: str
    group: str
    """The API group; "" for the core group."""
    version: str
    plural: str
    """The resource name in API paths and RBAC rules."""
    crd_hint: str
    """What to install when the API server does not serve the kind (RouteKindMissing)."""
    live_edit: bool = False
    """The provider may edit part of a live object the user owns (a ``LiveEdit``),
    which it reads first."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def verbs(self) -> tuple[str, ...]:
        """The RBAC verbs the operator needs on this kind."""
        return ROUTE_VERBS

    @property
    def path(self) -> str:
        """The object's API path, with ``{ns}`` and ``{name}`` to fill in."""
        prefix = f"/apis/{self.group}" if self.group else "/api"
        return f"{prefix}/{self.version}/namespaces/{{ns}}/{self.plural}/{{name}}"

    @property
    def resource(self) -> str:
        """``plural.group``, as kubectl names the resource unambiguously."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


class LiveEdit(dict[str, Any]):
    """Not an object to apply as it is: the part of a live object the user owns that
    the operator manages. Reads like the fragment it stands for (``kind``,
    ``metadata.name`` and ``metadata.namespace`` name the live object); the reconciler
    reads that object as it is now and applies what ``apply_to`` returns, reading once
    more if the object changed in between (409)."""

    def apply_to(self, live: dict[str, Any] | None) -> dict[str, Any] | None:
        """The server-side apply body that gives the live object (None: it does not
        exist) the operator's part, or None when it already has it. The body carries
        the live resourceVersion, so a change not yet seen is never overwritten;
        raises ``RouteError`` when the live object is not as documented."""
        raise NotImplementedError
