"""Provider none: no route object; the entry Service selects pods and the status
says how the intended weight is really served."""

from __future__ import annotations

import pytest

from .conftest import KubectlFn, get_json
from .traffic_support import (
    ROUTE_RESOURCES,
    at_step,
    make_sr_fixture,  # noqa: F401  (the make_sr fixture)
    sr_body,
    stable,
)

pytestmark = pytest.mark.e2e
LABELS = "shadowroute.io/name=plain,app.kubernetes.io/managed-by=shadowroute"


def no_routes(kubectl: KubectlFn, namespace: str) -> bool:
    for resource in ROUTE_RESOURCES.values():
        found = get_json(kubectl, resource, "-n", namespace, "-l", LABELS)
        if found["items"]:
            return False
    return True


def selector(kubectl: KubectlFn, namespace: str) -> dict[str, str]:
    return get_json(kubectl, "service", "plain", "-n", namespace)["spec"]["selector"]


def test_weights_by_pods_are_reported_as_approximate(make_sr, kubectl: KubectlFn) -> None:
    r = make_sr(sr_body("plain", {"provider": "none"}, replicas=2))
    s = r.wait("Stable", stable)
    assert "provider none" not in s["message"]
    assert selector(kubectl, r.ns)["shadowroute.io/role"] == "primary"

    r.set_image("registry.example/app:2")
    s = r.wait("step 1 at 10%", at_step(0, 10), timeout=90)
    # 2 primary pods and ceil(2 x 10%) = 1 canary pod behind one Service: a third of
    # the connections, not a tenth. The status says so instead of pretending.
    assert s["message"].endswith(
        "; provider none: weight 10% approximated by pods: 1 canary and 2 primary "
        "behind one Service take ~33% of connections"
    ), s["message"]
    assert selector(kubectl, r.ns) == {
        "shadowroute.io/name": "plain",
        "shadowroute.io/live": "true",
    }
    assert no_routes(kubectl, r.ns)

    r.gate("resume")
    s = r.wait("step 2 at 50%", at_step(1, 50))
    assert "weight 50% approximated by pods: 1 canary and 2 primary" in s["message"]

    r.gate("resume")
    s = r.wait("promoted", lambda s: s.get("phase") == "Succeeded", timeout=60)
    assert "provider none" not in s["message"], "at 100% the canary alone serves: exact"
    assert selector(kubectl, r.ns)["shadowroute.io/role"] == "canary"
    s = r.wait("Stable", stable, timeout=60)
    assert selector(kubectl, r.ns)["shadowroute.io/role"] == "primary"
    assert no_routes(kubectl, r.ns)


def test_abort_puts_the_selector_back(make_sr, kubectl: KubectlFn) -> None:
    r = make_sr(sr_body("plain", {"provider": "none"}, replicas=3))
    r.wait("Stable", stable)
    r.set_image("registry.example/app:2")
    s = r.wait("step 1 at 10%", at_step(0, 10), timeout=90)
    assert "1 canary and 3 primary behind one Service take ~25% of connections" in s["message"]
    r.gate("abort")
    s = r.wait("rolled back", lambda s: s.get("phase") == "RolledBack")
    assert "provider none" not in s["message"]
    assert selector(kubectl, r.ns)["shadowroute.io/role"] == "primary"
