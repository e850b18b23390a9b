"""ingress-nginx: the stable Ingress ``<name>`` and the canary Ingress ``<name>-canary``.

The annotation contract is ingress-nginx's own (docs/user-guide/nginx-configuration/
annotations.md, "Canary", "Session Affinity" and "Mirror"):

- the canary Ingress carries ``canary: "true"`` and ``canary-weight`` always, so a
  weight change is one write to one object; ingress-nginx evaluates
  ``canary-by-header`` before ``canary-by-cookie`` before ``canary-weight``;
- preview: ``canary-by-header`` + ``canary-by-header-value`` on the canary Ingress;
- stickiness (cookie): ``canary-by-cookie: <cookie>`` (a user or an app may pin itself
  with ``always`` or opt out with ``never``) and, on the canary Ingress only, cookie
  session affinity with ``affinity-canary-behavior: sticky``: ingress-nginx then hands
  out the affinity cookie itself and keeps whoever the canary served on the canary.
  The affinity cookie is named ``<cookie>-<revision>``, so it lapses with the rollout;
  the primary's load balancing is left alone. Session-affinity annotations are among
  the few a canary Ingress does not inherit from the stable one;
- shadow: ``mirror-target`` on the stable Ingress (a full URL; ingress-nginx resolves
  it with its own resolver, which knows no search domains, hence the cluster domain).
  ingress-nginx mirrors every request: a mirror percent other than 100 is refused when
  the ShadowRoute is applied.

Because the mirror lives on the stable Ingress and the weight on the canary Ingress,
and the state machine never has both at once, every rollback is still one write.
"""

from __future__ import annotations

from typing import Any

from ..api.duration import parse_duration
from ..api.models import NginxTraffic, ShadowRouteSpec, TrafficProvider
from ..names import Owner, child_labels, child_metadata
from .contract import RouteKind
from .intent import Intent

PROVIDER = TrafficProvider.NGINX
ROUTE = RouteKind(
    "Ingress",
    "networking.k8s.io",
    "v1",
    "ingresses",
    crd_hint="networking.k8s.io/v1, built into Kubernetes 1.19 and later",
)
KINDS = (ROUTE,)
API_VERSION, KIND = ROUTE.api_version, ROUTE.kind
PREFIX = "nginx.ingress.kubernetes.io/"


def render(owner: Owner, spec: ShadowRouteSpec, it: Intent) -> list[dict[str, Any]]:
    cfg = spec.traffic.nginx or NginxTraffic()
    stable = _ingress(owner, owner.name, cfg, it.primary, it.port, _mirror(cfg, it), tls=True)
    canary = _ingress(owner, f"{owner.name}-canary", cfg, it.canary, it.port, _canary(it))
    return [stable, canary]


def mirror_url(cfg: NginxTraffic, it: Intent) -> str:
    """Where ingress-nginx copies each request: $request_uri keeps path and query."""
    host = f"{it.mirror_target}.{it.namespace}.svc.{cfg.cluster_domain}"
    return f"http://{host}:{it.port}$request_uri"


def _mirror(cfg: NginxTraffic, it: Intent) -> dict[str, str]:
    if not it.mirroring:
        return {}
    annotations = {f"{PREFIX}mirror-target": mirror_url(cfg, it)}
    if cfg.host and not cfg.host.startswith("*"):
        # The shadow sees the Host the primary sees, not the mirror URL's.
        annotations[f"{PREFIX}mirror-host"] = cfg.host
    return annotations


def _canary(it: Intent) -> dict[str, str]:
    annotations = {f"{PREFIX}canary": "true", f"{PREFIX}canary-weight": str(it.canary_weight)}
    if it.preview is not None and it.preview.header is not None:
        annotations[f"{PREFIX}canary-by-header"] = it.preview.header.name
        annotations[f"{PREFIX}canary-by-header-value"] = it.preview.header.value
    if it.stickiness is not None:
        cookie = it.stickiness.cookie
        assert cookie is not None, "header stickiness is refused for nginx by the CRD"
        annotations[f"{PREFIX}canary-by-cookie"] = cookie.name
        annotations[f"{PREFIX}affinity"] = "cookie"
        annotations[f"{PREFIX}affinity-canary-behavior"] = "sticky"
        annotations[f"{PREFIX}session-cookie-name"] = f"{cookie.name}-{it.token}"
        if cookie.max_age:
            seconds = str(int(parse_duration(cookie.max_age)))
            annotations[f"{PREFIX}session-cookie-max-age"] = seconds
    return annotations


def _ingress(
    owner: Owner,
    name: str,
    cfg: NginxTraffic,
    service: str,
    port: int,
    annotations: dict[str, str],
    tls: bool = False,
) -> dict[str, Any]:
    path = {
        "path": cfg.path or "/",
        "pathType": "Prefix",
        "backend": {"service": {"name": service, "port": {"number": port}}},
    }
    rule: dict[str, Any] = {"http": {"paths": [path]}}
    if cfg.host:
        rule = {"host": cfg.host, **rule}
    spec: dict[str, Any] = {}
    if cfg.ingress_class_name:
        spec["ingressClassName"] = cfg.ingress_class_name
    if tls and cfg.tls_secret_name and cfg.host:
        spec["tls"] = [{"hosts": [cfg.host], "secretName": cfg.tls_secret_name}]
    spec["rules"] = [rule]
    metadata = child_metadata(owner, name, child_labels(owner.name, None))
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
