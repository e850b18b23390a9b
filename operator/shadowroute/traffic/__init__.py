"""Traffic providers: the route objects that carry the intended weight, mirror,
preview and stickiness to the data plane users run.

One module per provider, one small interface: a provider module has ``KINDS`` (the
route kinds it writes) and ``render(owner, spec, intent) -> list[dict]`` (the desired
route objects for that intent; pure, nothing else). ``intent`` turns the spec and the
decided status into the provider-neutral ``Intent``; the reconciler applies what
``render_routes`` returns, routes first, and deletes ``stale_routes``.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..api.models import ShadowRouteSpec, ShadowRouteStatus, TrafficProvider
from ..render.workloads import MANAGED_BY, MANAGER, Owner
from . import gatewayapi, istio, nginx, none
from .failures import RouteError, kind_missing, route_failure
from .gatewayapi import RuleEdit
from .intent import Intent, intent
from .none import note_approximation

__all__ = [
    "ALL_ROUTE_KINDS",
    "PROVIDERS",
    "ROUTE_KINDS",
    "Intent",
    "Provider",
    "RouteError",
    "RuleEdit",
    "intent",
    "is_route",
    "kind_missing",
    "note_approximation",
    "render_routes",
    "route_failure",
    "stale_routes",
]


class Provider(Protocol):
    """What a provider module offers: the kinds it writes and a pure renderer."""

    KINDS: tuple[str, ...]

    def render(self, owner: Owner, spec: ShadowRouteSpec, it: Intent) -> list[dict[str, Any]]:
        """The desired route objects for this intent."""
        ...


PROVIDERS: dict[TrafficProvider, Provider] = {
    TrafficProvider.NONE: none,
    TrafficProvider.GATEWAY_API: gatewayapi,
    TrafficProvider.NGINX: nginx,
    TrafficProvider.ISTIO: istio,
}
ROUTE_KINDS: dict[TrafficProvider, tuple[str, ...]] = {p: m.KINDS for p, m in PROVIDERS.items()}
ALL_ROUTE_KINDS = tuple(k for kinds in ROUTE_KINDS.values() for k in kinds)
API_VERSIONS = {m.KIND: m.API_VERSION for m in (gatewayapi, nginx, istio)}


def render_routes(
    owner: Owner,
    spec: ShadowRouteSpec,
    status: ShadowRouteStatus,
    mirror_target: str | None = None,
) -> list[dict[str, Any]]:
    """The route objects the provider needs for this status (none: no object; the
    entry Service's selector does the work, see render.workloads.entry_selector).
    `mirror_target` is the Service mirrored requests go to, `<name>-shadow` by
    default."""
    it = intent(owner, spec, status, mirror_target)
    return PROVIDERS[spec.traffic.provider].render(owner, spec, it)


def is_route(obj: dict[str, Any]) -> bool:
    return obj["kind"] in ALL_ROUTE_KINDS


def stale_routes(
    owner: Owner, desired: list[dict[str, Any]], live: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Live route objects of this ShadowRoute that are no longer rendered (another
    provider was chosen, or your own HTTPRoute replaced the owned one). Only objects
    the ShadowRoute controls (its labels *and* its controller owner reference) are
    ever stale: a look-alike someone else created is left alone."""
    wanted = {(o["kind"], o["metadata"]["name"]) for o in desired if is_route(o)}
    stale = []
    for kind, objs in live.items():
        if kind not in ALL_ROUTE_KINDS:
            continue
        for obj in objs:
            meta = obj.get("metadata") or {}
            ours = (meta.get("labels") or {}).get(MANAGED_BY) == MANAGER and any(
                ref.get("uid") == owner.uid and ref.get("controller")
                for ref in meta.get("ownerReferences") or []
            )
            if ours and (kind, meta.get("name")) not in wanted:
                # Items of a list carry no kind: say what they are.
                stale.append({**obj, "apiVersion": API_VERSIONS[kind], "kind": kind})
    return stale
