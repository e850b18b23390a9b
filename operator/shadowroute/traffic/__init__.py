"""Traffic providers: the route objects that carry the intended weight, mirror,
preview and stickiness to the data plane users run.

One module per provider, one small interface (``Provider``): a provider module
declares ``PROVIDER`` (its ``TrafficProvider``) and ``KINDS`` (the ``RouteKind``s it
writes, see contract.py), and has ``render(owner, spec, intent) -> list[dict]`` (the
desired route objects for that intent; pure, nothing else). Every module of this
package that declares ``PROVIDER`` is a provider: the tables below, the API paths,
the watches, the CRD hints and the chart's RBAC for routes are derived from them.
``intent`` turns the spec and the decided status into the provider-neutral
``Intent``; the reconciler applies what ``render_routes`` returns, routes first (a
``LiveEdit`` over the live object it edits), and deletes ``stale_routes``.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any, Protocol, cast

from ..api.models import ShadowRouteSpec, ShadowRouteStatus, TrafficProvider
from ..api_errors import ApiError
from ..names import MANAGED_BY, MANAGER, Owner
from . import failures
from .contract import LiveEdit, RouteKind
from .failures import RouteError, kind_missing
from .gatewayapi import RuleEdit
from .intent import Intent, intent
from .none import note_approximation

__all__ = [
    "ALL_ROUTE_KINDS",
    "PROVIDERS",
    "ROUTE_KINDS",
    "ROUTE_RESOURCES",
    "Intent",
    "LiveEdit",
    "Provider",
    "RouteError",
    "RouteKind",
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
    """What a provider module offers: who it is, the kinds it writes and a pure
    renderer."""

    PROVIDER: TrafficProvider
    KINDS: tuple[RouteKind, ...]

    def render(self, owner: Owner, spec: ShadowRouteSpec, it: Intent) -> list[dict[str, Any]]:
        """The desired route objects for this intent."""
        ...


def _discover() -> dict[TrafficProvider, Provider]:
    """The modules of this package that declare PROVIDER, in the enum's order; each
    provider exactly once."""
    found: dict[TrafficProvider, ModuleType] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        provider = getattr(module, "PROVIDER", None)
        if provider is None:
            continue
        if provider in found:
            raise ImportError(f"provider {provider} declared by {found[provider]} and {module}")
        found[provider] = module
    missing = [p.value for p in TrafficProvider if p not in found]
    if missing:
        raise ImportError(f"no module of {__name__} declares PROVIDER for {missing}")
    return {p: cast(Provider, found[p]) for p in TrafficProvider}


PROVIDERS: dict[TrafficProvider, Provider] = _discover()
ROUTE_RESOURCES: dict[str, RouteKind] = {
    k.kind: k for provider in PROVIDERS.values() for k in provider.KINDS
}
"""Every route kind any provider writes, by kind."""
ROUTE_KINDS: dict[TrafficProvider, tuple[str, ...]] = {
    p: tuple(k.kind for k in m.KINDS) for p, m in PROVIDERS.items()
}
ALL_ROUTE_KINDS = tuple(ROUTE_RESOURCES)


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
                stale.append({**obj, "apiVersion": ROUTE_RESOURCES[kind].api_version, "kind": kind})
    return stale


def route_failure(obj: dict[str, Any], exc: ApiError) -> tuple[str, str]:
    """The condition reason and message for an API error on a route object."""
    declared = ROUTE_RESOURCES.get(obj["kind"])
    return failures.route_failure(obj, exc, declared.crd_hint if declared else None)
