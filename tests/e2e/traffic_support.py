"""Helpers of the traffic end-to-end tests: ShadowRoutes with a traffic provider, the
live route objects as kubectl reads them, a rollout walked stage by stage, and a
counter of the writes made to route objects (from the API server's watch)."""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest
from shadowroute import traffic

from .conftest import Cluster, KubectlFn, OperatorProcess, get_json, wait_for
from .test_rollout import Route, route, stable

__all__ = [
    "AT_REST",
    "ROUTE_RESOURCES",
    "Route",
    "RouteWrites",
    "View",
    "abort_at_step",
    "abort_while_shadowing",
    "absent",
    "at_step",
    "live",
    "make_sr_fixture",
    "sr_body",
    "stable",
    "wait_for",
    "walk",
]

ROUTE_RESOURCES = {kind: declared.resource for kind, declared in traffic.ROUTE_RESOURCES.items()}
"""kubectl's name of each route kind the providers declare (plural.group)."""
STEPS = [{"weight": 10, "pause": {}}, {"weight": 50, "pause": {}}]
"""Steps that wait for the resume gate: the test looks at the route at each one."""


def sr_body(
    name: str,
    traffic: dict[str, Any],
    shadow: dict[str, Any] | None = None,
    steps: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A ShadowRoute with this traffic section, waiting at every canary step."""
    body = route(name, steps=copy.deepcopy(steps or STEPS), **spec)
    body["spec"]["traffic"] = copy.deepcopy(traffic)
    body["spec"]["keepWarm"] = spec.get("keepWarm", "8s")
    if shadow is not None:
        body["spec"]["strategy"]["shadow"] = shadow
    return body


@pytest.fixture(name="make_sr")
def make_sr_fixture(kubectl: KubectlFn, namespace: str, operator: OperatorProcess):
    """make_sr(body): apply a ShadowRoute in the test's namespace, with the operator
    running. Import this into a test module to use the fixture there."""

    def make(body: dict[str, Any]) -> Route:
        r = Route(kubectl, namespace, body)
        r.apply()
        return r

    return make


def live(kubectl: KubectlFn, namespace: str, kind: str, name: str) -> dict[str, Any]:
    """A route object exactly as the API server stores it."""
    return get_json(kubectl, ROUTE_RESOURCES[kind], name, "-n", namespace)


def absent(kubectl: KubectlFn, namespace: str, kind: str, name: str) -> bool:
    res = kubectl("get", ROUTE_RESOURCES[kind], name, "-n", namespace, check=False)
    return res.returncode != 0 and "NotFound" in res.stderr


class RouteWrites:
    """Every change the API server reports for route objects in a namespace, from the
    moment the watch starts: one write that changes an object is one MODIFIED event,
    so a rollback "in one write" is checked against the server's own record."""

    def __init__(self, cluster: Cluster, namespace: str, kinds: tuple[str, ...]) -> None:
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=cluster.kubeconfig, client_configuration=config
        )
        self.api = kubernetes.client.ApiClient(config)
        self.namespace = namespace
        self.kinds = kinds
        self.events: list[tuple[str, str, str]] = []  # (type, kind, name)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _lister(self, kind: str) -> Callable[..., Any]:
        ns, d = self.namespace, traffic.ROUTE_RESOURCES[kind]
        custom = kubernetes.client.CustomObjectsApi(self.api)
        return lambda **kw: custom.list_namespaced_custom_object(
            d.group, d.version, ns, d.plural, **kw
        )

    def _watch(self, kind: str, lister: Callable[..., Any], rv: str) -> None:
        while not self._stop.is_set():
            watch = kubernetes.watch.Watch()
            for event in watch.stream(lister, resource_version=rv, timeout_seconds=1):
                obj = event["raw_object"]
                rv = obj["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    self.events.append((event["type"], kind, obj["metadata"]["name"]))

    def __enter__(self) -> RouteWrites:
        for kind in self.kinds:
            lister = self._lister(kind)
            rv = lister()["metadata"]["resourceVersion"]
            thread = threading.Thread(target=self._watch, args=(kind, lister, rv), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: Any) -> None:
        time.sleep(1.5)  # let the watch deliver what already happened
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    def count(self) -> Counter[tuple[str, str, str]]:
        return Counter(self.events)


# --------------------------------------------------------------------------- a rollout


@dataclass(frozen=True)
class View:
    """What a live route says, in every provider's terms."""

    primary: int
    canary: int
    mirror: tuple[str, int] | None = None
    """(Service, percent) the mirror copies to, if any."""
    preview: bool = False
    sticky: str | None = None
    """The token a sticky route matches (the canary's revision), if any."""


AT_REST = View(100, 0)


def walk(
    r: Route,
    read: Callable[[], View],
    mirror_percent: int,
    look: Callable[[str, dict[str, Any]], None] = lambda stage, status: None,
) -> None:
    """Shadow -> 10% -> 50% -> promoted -> stable, asserting the live route after every
    stage; `look(stage, status)` may assert provider-specific details on top."""
    r.wait("Stable", stable)
    assert read() == AT_REST
    look("stable", r.status())

    r.set_image("registry.example/app:2")
    s = r.wait(
        "shadowing",
        lambda s: s.get("phase") == "Shadowing" and s["mirrorPercent"] == mirror_percent,
    )
    assert read() == View(100, 0, (f"{r.name}-shadow", mirror_percent)), "shadow"
    look("shadow", s)

    s = r.wait("step 1 at 10%", at_step(0, 10), timeout=90)
    revision = s["canaryRevision"]
    assert read() == View(90, 10, None, True, revision), "step 1"
    look("step-1", s)

    r.gate("resume")
    s = r.wait("step 2 at 50%", at_step(1, 50))
    assert read() == View(50, 50, None, True, revision), "step 2"
    look("step-2", s)

    r.gate("resume")
    s = r.wait("promoted", lambda s: s.get("phase") == "Succeeded", timeout=60)
    assert read() == View(0, 100), "promoted: the canary Deployment serves everything"
    look("promoted", s)

    s = r.wait("stable on the new version", stable, timeout=60)
    assert read() == AT_REST, "after the handover the primary runs the new version"
    assert r.image("primary") == "registry.example/app:2"
    look("stable-again", s)


def at_step(step: int, weight: int) -> Callable[[dict[str, Any]], bool]:
    return lambda s: (
        s.get("phase") == "Paused" and s["currentStep"] == step and s["canaryWeight"] == weight
    )


def abort_at_step(
    r: Route, cluster: Cluster, read: Callable[[], View], kinds: tuple[str, ...]
) -> Counter[tuple[str, str, str]]:
    """Roll out to the first step, then abort: the route goes back to the primary in
    one write. Returns the writes seen while it did."""
    r.wait("Stable", stable)
    r.set_image("registry.example/app:2")
    r.wait("step 1 at 10%", at_step(0, 10), timeout=90)
    at_step_1 = read()
    assert (at_step_1.primary, at_step_1.canary, at_step_1.mirror) == (90, 10, None)
    with RouteWrites(cluster, r.ns, kinds) as writes:
        r.gate("abort")
        s = r.wait("rolled back", lambda s: s.get("phase") == "RolledBack")
        assert s["rollbackReason"] == "Aborted"
        assert read() == AT_REST
    return writes.count()


def abort_while_shadowing(
    r: Route, cluster: Cluster, read: Callable[[], View], kinds: tuple[str, ...], percent: int
) -> Counter[tuple[str, str, str]]:
    """Shadow, then abort: the mirror goes in one write."""
    r.wait("Stable", stable)
    r.set_image("registry.example/app:2")
    r.wait("shadowing", lambda s: s.get("phase") == "Shadowing" and s["mirrorPercent"] == percent)
    assert read() == View(100, 0, (f"{r.name}-shadow", percent))
    with RouteWrites(cluster, r.ns, kinds) as writes:
        r.gate("abort")
        r.wait("rolled back", lambda s: s.get("phase") == "RolledBack")
        assert read() == AT_REST
    return writes.count()
