"""Istio: one VirtualService ``<name>`` whose HTTP routes are tried in order.

- ``preview-header`` / ``preview-path``: requests with the preview header, or under
  the preview path (prefix rewritten to /), reach ``<name>-canary``;
- ``sticky``: requests carrying the sticky token (cookie or header) reach the canary;
- ``weighted``: the rest, split between ``<name>-primary`` and ``<name>-canary``;
  ``mirror`` + ``mirrorPercentage`` while shadowing; while stickiness is on, the
  canary's responses hand out the token (``headers.response.add``).

Stickiness here is a match on a token the canary handed out, not Istio's
``consistentHash`` load balancing: that hashes a user to a *pod* within one
destination, after the weighted choice of destination, so it cannot keep a user on a
version while the weights move.

Istio's validating webhook is not part of its CRDs, so the API server checks only the
schema; the renderer keeps Istio's own rules (weights sum to 100, lowercase header
keys, one destination per canary-only route), and the unit tests hold it to them.
"""

from __future__ import annotations

from typing import Any

from ..api.models import IstioTraffic, ShadowRouteSpec, TrafficProvider
from ..names import Owner, child_labels, child_metadata
from .contract import RouteKind
from .intent import Intent, cookie_regex, set_cookie

PROVIDER = TrafficProvider.ISTIO
ROUTE = RouteKind(
    "VirtualService",
    "networking.istio.io",
    "v1",
    "virtualservices",
    crd_hint="Istio's CRDs (networking.istio.io/v1, Istio 1.22 or later)",
)
KINDS = (ROUTE,)
API_VERSION, KIND = ROUTE.api_version, ROUTE.kind


def render(owner: Owner, spec: ShadowRouteSpec, it: Intent) -> list[dict[str, Any]]:
    cfg = spec.traffic.istio or IstioTraffic()

    def base() -> dict[str, Any]:
        """A fresh path match per use: rendered objects share no dicts."""
        return {"uri": {"prefix": cfg.path}} if cfg.path and cfg.path != "/" else {}

    http: list[dict[str, Any]] = []
    if it.preview is not None and it.preview.header is not None:
        header = {it.preview.header.name: {"exact": it.preview.header.value}}
        http.append(
            {
                "name": "preview-header",
                "match": [{**base(), "headers": header}],
                "route": [_destination(it.canary, it.port)],
            }
        )
    if it.preview is not None and it.preview.path_prefix is not None:
        prefix = it.preview.path_prefix
        # Two matches so that /preview and /preview/x become / and /x (a prefix match
        # of "/preview" rewritten to "/" would give "//x").
        http.append(
            {
                "name": "preview-path",
                "match": [{"uri": {"exact": prefix}}, {"uri": {"prefix": f"{prefix}/"}}],
                "rewrite": {"uri": "/"},
                "route": [_destination(it.canary, it.port)],
            }
        )
    if it.stickiness is not None:
        http.append(
            {
                "name": "sticky",
                "match": [{**base(), "headers": _sticky_match(it)}],
                "route": [_destination(it.canary, it.port, hand_out=_token_header(it))],
            }
        )
    weighted: dict[str, Any] = {"name": "weighted"}
    if base():
        weighted["match"] = [base()]
    weighted["route"] = [
        _destination(it.primary, it.port, it.primary_weight),
        _destination(it.canary, it.port, it.canary_weight, _token_header(it)),
    ]
    if it.mirroring:
        weighted["mirror"] = {"host": it.mirror_target, "port": {"number": it.port}}
        weighted["mirrorPercentage"] = {"value": it.mirror_percent}
    http.append(weighted)

    vs_spec: dict[str, Any] = {"hosts": list(cfg.hosts or [owner.name])}
    if cfg.gateways:
        vs_spec["gateways"] = list(cfg.gateways)
    vs_spec["http"] = http
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": child_metadata(owner, owner.name, child_labels(owner.name, None)),
            "spec": vs_spec,
        }
    ]


def _destination(
    host: str, port: int, weight: int | None = None, hand_out: dict[str, str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"destination": {"host": host, "port": {"number": port}}}
    if weight is not None:
        out["weight"] = weight
    if hand_out:
        out["headers"] = {"response": {"add": hand_out}}
    return out


def _sticky_match(it: Intent) -> dict[str, Any]:
    sticky = it.stickiness
    assert sticky is not None
    if sticky.cookie is not None:
        return {"cookie": {"regex": cookie_regex(sticky.cookie, it.token)}}
    assert sticky.header is not None
    return {sticky.header.name: {"exact": it.token}}


def _token_header(it: Intent) -> dict[str, str]:
    sticky = it.stickiness
    if sticky is None:
        return {}
    if sticky.cookie is not None:
        return {"set-cookie": set_cookie(sticky.cookie, it.token)}
    assert sticky.header is not None
    return {sticky.header.name: it.token}
