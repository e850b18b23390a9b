"""Traffic providers: the route objects that carry the intended weight, mirror and
preview to the data plane users run. One module per provider, one small interface:
render the desired route objects for a ShadowRoute's spec and status; nothing else.
"""

from __future__ import annotations

from typing import Any

from ..api.models import ShadowRouteSpec, ShadowRouteStatus, TrafficProvider
from ..render.workloads import Owner

ROUTE_KINDS: dict[TrafficProvider, tuple[str, ...]] = {
    TrafficProvider.NONE: (),
    TrafficProvider.GATEWAY_API: ("HTTPRoute",),
    TrafficProvider.NGINX: ("Ingress",),
    TrafficProvider.ISTIO: ("VirtualService",),
}
ALL_ROUTE_KINDS = tuple(k for kinds in ROUTE_KINDS.values() for k in kinds)


def render_routes(
    owner: Owner, spec: ShadowRouteSpec, status: ShadowRouteStatus
) -> list[dict[str, Any]]:
    """The route objects the provider needs for this status (none: no object; the
    entry Service's selector does the work, see render.workloads.entry_selector)."""
    return []
