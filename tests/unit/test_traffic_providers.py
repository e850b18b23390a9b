"""The provider contract: each provider module declares its route kinds once, and the
API paths, the watches, the CRD hints, the live-edit path, the chart's RBAC and the
operations guide follow from that declaration."""

from __future__ import annotations

import re
from pathlib import Path

import kopf
import pytest
from shadowroute import handlers, traffic  # noqa: F401  (registers kopf's handlers)
from shadowroute.api.models import ShadowRouteSpec, TrafficProvider
from shadowroute.kube import client
from shadowroute.names import MANAGED_BY, MANAGER
from shadowroute.traffic import ROUTE_RESOURCES, LiveEdit, RouteKind

from . import hack_scripts
from .test_traffic_render import api_error
from .traffic_cases import OWNER, TRAFFIC, stage_statuses

ROOT = Path(__file__).resolve().parents[2]

AS_BEFORE = {
    # kind: (apiVersion, plural, verbs, path), as they were written out by hand (and
    # `get` on every kind since the ownership look-up before a first apply)
    "HTTPRoute": (
        "gateway.networking.k8s.io/v1",
        "httproutes",
        ("get", "list", "watch", "create", "patch", "delete"),
        "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes/{name}",
    ),
    "Ingress": (
        "networking.k8s.io/v1",
        "ingresses",
        ("get", "list", "watch", "create", "patch", "delete"),
        "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/{name}",
    ),
    "VirtualService": (
        "networking.istio.io/v1",
        "virtualservices",
        ("get", "list", "watch", "create", "patch", "delete"),
        "/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/{name}",
    ),
}


def test_every_provider_is_one_module_that_says_so() -> None:
    assert list(traffic.PROVIDERS) == list(TrafficProvider)
    for provider, module in traffic.PROVIDERS.items():
        assert module.PROVIDER is provider
        assert all(isinstance(k, RouteKind) for k in module.KINDS)
    kinds = [k.kind for m in traffic.PROVIDERS.values() for k in m.KINDS]
    assert len(kinds) == len(set(kinds)), "a route kind belongs to one provider"


def test_the_declared_kinds_are_the_ones_written_by_hand_before() -> None:
    got = {k: (d.api_version, d.plural, d.verbs, d.path) for k, d in ROUTE_RESOURCES.items()}
    assert got == AS_BEFORE
    assert traffic.ROUTE_KINDS == {
        TrafficProvider.NONE: (),
        TrafficProvider.GATEWAY_API: ("HTTPRoute",),
        TrafficProvider.NGINX: ("Ingress",),
        TrafficProvider.ISTIO: ("VirtualService",),
    }


def test_core_kinds_have_their_paths() -> None:
    assert RouteKind("Service", "", "v1", "services", "-").path == client._PATHS["Service"]
    assert RouteKind("Service", "", "v1", "services", "-").api_version == "v1"


def test_api_paths_of_routes_are_the_declared_ones() -> None:
    for kind, declared in ROUTE_RESOURCES.items():
        obj = {"kind": kind, "metadata": {"namespace": "shop", "name": "web"}}
        assert client.resource_path(obj) == declared.path.format(ns="shop", name="web")
        prefix = "/apis/" + declared.api_version
        assert client.collection_path(kind, "shop") == f"{prefix}/namespaces/shop/{declared.plural}"


def test_children_of_every_declared_kind_are_watched_by_the_feed_not_kopf() -> None:
    from shadowroute.services import Services

    services = Services.build(object())  # type: ignore[arg-type]
    feed = services.feed
    assert set(feed.own) == {"Deployment", "Service", *ROUTE_RESOURCES}
    assert all(feed.selectors[k] == f"{MANAGED_BY}={MANAGER}" for k in feed.own)
    assert feed.crds == {k: d.resource for k, d in ROUTE_RESOURCES.items() if d.group}
    registry = kopf.get_default_registry()
    watched = {
        (h.selector.group, h.selector.version, h.selector.any_name)
        for h in registry._watching.get_all_handlers()
    }
    assert watched == {("shadowroute.io", "v1alpha1", "shadowroutes")}, "kopf: routes only"


@pytest.mark.parametrize("kind", sorted(ROUTE_RESOURCES))
def test_a_missing_kind_names_what_to_install(kind: str) -> None:
    declared = ROUTE_RESOURCES[kind]
    route = {"apiVersion": declared.api_version, "kind": kind, "metadata": {"name": "shop"}}
    reason, message = traffic.route_failure(route, api_error(404, "404 page not found"))
    assert reason == "RouteKindMissing"
    assert f"install {declared.crd_hint};" in message


def test_live_edits_come_only_from_kinds_declared_so() -> None:
    """A provider that renders a LiveEdit says so (its RBAC gets `get`), and one that
    says so does render one for some configuration."""
    edited = set()
    for name in TRAFFIC:
        for spec, status in stage_statuses(name).values():
            assert isinstance(spec, ShadowRouteSpec)
            for obj in traffic.render_routes(OWNER, spec, status):
                if isinstance(obj, LiveEdit):
                    assert ROUTE_RESOURCES[obj["kind"]].live_edit, obj["kind"]
                    edited.add(obj["kind"])
                else:
                    assert type(obj) is dict, "an object applied as it is is a plain dict"
    assert edited == {k for k, d in ROUTE_RESOURCES.items() if d.live_edit}


def test_a_live_edit_must_say_how_it_applies() -> None:
    with pytest.raises(NotImplementedError):
        LiveEdit(kind="Thing").apply_to(None)


# --------------------------------------------------------------------------- the chart


def test_chart_route_rbac_is_current() -> None:
    gen = hack_scripts.load("gen_rbac")
    assert gen.OUT.read_text() == gen.render(gen.OUT.read_text()), "stale: run `make crd`"
    assert gen.main(["--check"]) == 0


def test_chart_route_rbac_is_what_the_providers_declare() -> None:
    """Read back from the template: one rule per declared kind, with its verbs."""
    gen = hack_scripts.load("gen_rbac")
    text = gen.OUT.read_text()
    block = text[text.index(gen.BEGIN) : text.index(gen.END)]
    rules = re.findall(
        r'- apiGroups: \["([^"]*)"\]\n  resources: \["([^"]+)"\]\n  verbs: \[([^\]]*)\]', block
    )
    got = [(g, r, tuple(v.strip().strip('"') for v in vs.split(","))) for g, r, vs in rules]
    assert got == [(d.group, d.plural, d.verbs) for d in ROUTE_RESOURCES.values()]


def test_operations_guide_lists_the_declared_verbs() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    for declared in ROUTE_RESOURCES.values():
        row = f"| {declared.group} | {declared.plural} | {', '.join(declared.verbs)} |"
        assert row in text, row
