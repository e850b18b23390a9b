"""Gateway API: an HTTPRoute the operator owns, or one rule of an HTTPRoute you own.

The owned route has up to four rules, in order of precedence (Gateway API picks the
most specific match, so header and longer-path rules win over the weighted one):

- ``preview-header``: requests with the preview header reach the canary;
- ``preview-path``: requests under the preview path reach the canary, prefix stripped;
- ``sticky``: requests carrying the sticky token (cookie or header) reach the canary;
- ``weighted``: everything else, split by weight between ``<name>-primary`` and
  ``<name>-canary``, with a ``RequestMirror`` filter (and its percent) while shadowing.
  While stickiness is on, the canary's responses hand out the token
  (``ResponseHeaderModifier`` on its backendRef).

Your own route (``gatewayAPI.httpRoute``): ``spec.rules`` is an *atomic* list in the
Gateway API CRDs (``x-kubernetes-list-type: atomic``), so server-side apply cannot own
a part of it. The operator reads your route, changes only the weights of the two
backendRefs of the named rule (and adds or removes its own mirror filter there), and
applies the whole ``rules`` list back with the live resourceVersion as a precondition:
it never overwrites a change it has not seen. See docs/traffic.md.
"""

from __future__ import annotations

import copy
from typing import Any

from ..api.models import (
    GatewayAPITraffic,
    HTTPRouteReference,
    ShadowRouteSpec,
    TrafficProvider,
)
from ..names import Owner, child_labels, child_metadata
from ..reasons import Reason
from ..render.diff import contains
from .contract import LiveEdit, RouteKind
from .failures import RouteError
from .intent import Intent, cookie_regex, set_cookie

PROVIDER = TrafficProvider.GATEWAY_API
ROUTE = RouteKind(
    "HTTPRoute",
    "gateway.networking.k8s.io",
    "v1",
    "httproutes",
    crd_hint="the Gateway API CRDs, standard channel v1.3 or later",
    live_edit=True,  # gatewayAPI.httpRoute: one rule of your own HTTPRoute
)
KINDS = (ROUTE,)
API_VERSION, KIND = ROUTE.api_version, ROUTE.kind


def render(owner: Owner, spec: ShadowRouteSpec, it: Intent) -> list[dict[str, Any]]:
    gw = spec.traffic.gateway_api
    assert gw is not None, "the CRD requires spec.traffic.gatewayAPI with gatewayapi"
    if gw.http_route is not None:
        return [RuleEdit.of(owner, gw.http_route, it)]
    return [owned_route(owner, gw, it)]


# --------------------------------------------------------------------------- owned route


def owned_route(owner: Owner, gw: GatewayAPITraffic, it: Intent) -> dict[str, Any]:
    path = gw.path or "/"
    rules: list[dict[str, Any]] = []
    if it.preview is not None and it.preview.header is not None:
        header = {"name": it.preview.header.name, "type": "Exact", "value": it.preview.header.value}
        rules.append(
            {
                "name": "preview-header",
                "matches": [{"path": _prefix(path), "headers": [header]}],
                "backendRefs": [_backend(it.canary, it.port)],
            }
        )
    if it.preview is not None and it.preview.path_prefix is not None:
        rewrite = {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}
        rules.append(
            {
                "name": "preview-path",
                "matches": [{"path": _prefix(it.preview.path_prefix)}],
                "filters": [{"type": "URLRewrite", "urlRewrite": {"path": rewrite}}],
                "backendRefs": [_backend(it.canary, it.port)],
            }
        )
    if it.stickiness is not None:
        rules.append(
            {
                "name": "sticky",
                "matches": [{"path": _prefix(path), "headers": [_sticky_match(it)]}],
                "backendRefs": [_backend(it.canary, it.port, filters=_hand_out_token(it))],
            }
        )
    weighted: dict[str, Any] = {"name": "weighted", "matches": [{"path": _prefix(path)}]}
    if it.mirroring:
        weighted["filters"] = [mirror_filter(it)]
    weighted["backendRefs"] = [
        _backend(it.primary, it.port, it.primary_weight),
        _backend(it.canary, it.port, it.canary_weight, _hand_out_token(it)),
    ]
    rules.append(weighted)

    route_spec: dict[str, Any] = {"parentRefs": [p.to_k8s() for p in gw.parent_refs or []]}
    if gw.hostnames:
        route_spec["hostnames"] = list(gw.hostnames)
    route_spec["rules"] = rules
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": child_metadata(owner, owner.name, child_labels(owner.name, None)),
        "spec": route_spec,
    }


def mirror_filter(it: Intent) -> dict[str, Any]:
    """RequestMirror with its percent: neither Flagger nor Argo Rollouts sets one."""
    return {
        "type": "RequestMirror",
        "requestMirror": {
            "backendRef": {"name": it.mirror_target, "port": it.port},
            "percent": it.mirror_percent,
        },
    }


def _prefix(path: str) -> dict[str, str]:
    return {"type": "PathPrefix", "value": path}


def _backend(
    name: str, port: int, weight: int | None = None, filters: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": name, "port": port}
    if weight is not None:
        ref["weight"] = weight
    if filters:
        ref["filters"] = filters
    return ref


def _sticky_match(it: Intent) -> dict[str, str]:
    sticky = it.stickiness
    assert sticky is not None
    if sticky.cookie is not None:
        # Implementation-specific in Gateway API (RegularExpression): documented.
        value = cookie_regex(sticky.cookie, it.token)
        return {"name": "Cookie", "type": "RegularExpression", "value": value}
    assert sticky.header is not None
    return {"name": sticky.header.name, "type": "Exact", "value": it.token}


def _hand_out_token(it: Intent) -> list[dict[str, Any]]:
    """The canary's responses carry the sticky token while stickiness is on."""
    sticky = it.stickiness
    if sticky is None:
        return []
    if sticky.cookie is not None:
        header = {"name": "Set-Cookie", "value": set_cookie(sticky.cookie, it.token)}
    else:
        assert sticky.header is not None
        header = {"name": sticky.header.name, "value": it.token}
    return [{"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [header]}}]


# --------------------------------------------------------------------------- your route


class RuleEdit(LiveEdit):
    """The part of your HTTPRoute the operator manages, namely the weights of the
    named rule's two backendRefs and the operator's mirror filter in that rule."""

    mirror_targets: frozenset[str] = frozenset()
    """Services whose RequestMirror filters in the rule are the operator's to remove."""

    @classmethod
    def of(cls, owner: Owner, ref: HTTPRouteReference, it: Intent) -> RuleEdit:
        rule: dict[str, Any] = {
            "name": ref.rule,
            "backendRefs": [
                {"name": it.primary, "weight": it.primary_weight},
                {"name": it.canary, "weight": it.canary_weight},
            ],
        }
        if it.mirroring:
            rule["filters"] = [mirror_filter(it)]
        edit = cls(
            apiVersion=API_VERSION,
            kind=KIND,
            metadata={"name": ref.name, "namespace": owner.namespace},
            spec={"rules": [rule]},
        )
        targets = {f"{owner.name}-shadow"}
        if it.mirror_target:
            targets.add(it.mirror_target)
        edit.mirror_targets = frozenset(targets)
        return edit

    def apply_to(self, live: dict[str, Any] | None) -> dict[str, Any] | None:
        """The server-side apply body that gives the live route this rule's weights
        and mirror, or None when it already has them. The whole atomic rules list is
        sent back as it is live, with the live resourceVersion: if the route changed
        since it was read, the apply fails (409) instead of undoing that change."""
        name, namespace = self["metadata"]["name"], self["metadata"]["namespace"]
        where = f"HTTPRoute {name} (spec.traffic.gatewayAPI.httpRoute)"
        if live is None:
            raise RouteError(
                Reason.ROUTE_NOT_FOUND, f"{where} does not exist in namespace {namespace}"
            )
        rules = copy.deepcopy((live.get("spec") or {}).get("rules") or [])
        want = self["spec"]["rules"][0]
        named = [rule for rule in rules if rule.get("name") == want["name"]]
        if not named:
            names = ", ".join(r["name"] for r in rules if r.get("name")) or "no named rules"
            raise RouteError(
                Reason.ROUTE_INVALID, f"{where} has no rule named {want['name']}; it has {names}"
            )
        rule = named[0]
        weights = {ref["name"]: ref["weight"] for ref in want["backendRefs"]}
        refs = rule.get("backendRefs") or []
        if sorted(_service_names(refs)) != sorted(weights):
            have = ", ".join(ref.get("name", "?") for ref in refs) or "none"
            raise RouteError(
                Reason.ROUTE_INVALID,
                f"rule {want['name']} of {where} must have exactly the backendRefs "
                f"{' and '.join(weights)} (Services in its namespace, any weight): the "
                f"operator sets only their weights; it has {have}",
            )
        for ref in refs:
            ref["weight"] = weights[ref["name"]]
        live_filters = rule.get("filters") or []
        filters = [f for f in live_filters if not self._ours(f)]
        wanted = want.get("filters", [])
        live_ours = [f for f in live_filters if self._ours(f)]
        # Compared as our own routes are: what the server filled in (the mirror's group
        # and kind) does not make it a different mirror.
        filters += live_ours if contains(live_ours, wanted) else wanted
        if filters:
            rule["filters"] = filters
        else:
            rule.pop("filters", None)
        if rules == (live.get("spec") or {}).get("rules"):
            return None
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": live["metadata"]["resourceVersion"],
            },
            "spec": {"rules": rules},
        }

    def _ours(self, rule_filter: dict[str, Any]) -> bool:
        if rule_filter.get("type") != "RequestMirror":
            return False
        ref = (rule_filter.get("requestMirror") or {}).get("backendRef") or {}
        local = ref.get("namespace") in (None, self["metadata"]["namespace"])
        return local and ref.get("name") in self.mirror_targets and not ref.get("group")


def _service_names(refs: list[dict[str, Any]]) -> list[str]:
    """Names of backendRefs that are Services in the route's namespace; others count
    as foreign (a different name) so that they are refused."""
    names = []
    for ref in refs:
        service = ref.get("group", "") == "" and ref.get("kind", "Service") == "Service"
        names.append(ref["name"] if service and not ref.get("namespace") else f"{ref}")
    return names
