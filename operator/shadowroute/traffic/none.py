"""Provider none: no route object at all.

The entry Service ``<name>`` does the work (render.workloads.entry_selector): it
selects the primary's pods, then the pods of both versions while the canary has a
weight, then the canary's alone. kube-proxy spreads *connections* evenly over the
selected pods, so the weight is approximated by the ratio of canary pods to all pods,
per connection rather than per request; the status says so. Mirroring, preview and
stickiness cannot be expressed; the CRD refuses them with this provider.
"""

from __future__ import annotations

from typing import Any

from ..api.models import ShadowRouteSpec, ShadowRouteStatus, TrafficProvider
from ..names import CANARY, PRIMARY, Owner
from ..stages import replicas_for
from .contract import RouteKind
from .intent import Intent

PROVIDER = TrafficProvider.NONE
KINDS: tuple[RouteKind, ...] = ()
NOTE = "; provider none: "
"""Separates the approximation note from the state machine's message."""


def render(owner: Owner, spec: ShadowRouteSpec, it: Intent) -> list[dict[str, Any]]:
    return []


def approximation(spec: ShadowRouteSpec, status: ShadowRouteStatus) -> str | None:
    """How the intended weight is really served, while both versions take traffic."""
    weight = status.canary_weight
    if not 0 < weight < 100:
        return None
    canary = replicas_for(CANARY, spec, status)
    primary = replicas_for(PRIMARY, spec, status)
    if canary + primary == 0:
        return f"weight {weight}% approximated by pods, but no pod runs"
    share = round(100 * canary / (canary + primary))
    return (
        f"weight {weight}% approximated by pods: {canary} canary and {primary} primary "
        f"behind one Service take ~{share}% of connections"
    )


def note_approximation(spec: ShadowRouteSpec, status: ShadowRouteStatus) -> None:
    """Append (or drop) the approximation note on status.message, idempotently."""
    base = status.message.split(NOTE)[0]
    note = approximation(spec, status) if spec.traffic.provider == "none" else None
    status.message = f"{base}{NOTE}{note}" if note else base
