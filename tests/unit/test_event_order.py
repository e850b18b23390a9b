"""Our Events list oldest first in `kubectl describe`: it orders them by lastTimestamp
(seconds), and keeps the API server's order, by name, among those of one second."""

from __future__ import annotations

import datetime as dt

from shadowroute.api import ShadowRouteStatus
from shadowroute.kube.client import event_body
from shadowroute.reconciler import _enqueue

SR = {
    "apiVersion": "shadowroute.io/v1alpha1",
    "kind": "ShadowRoute",
    "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "7"},
}
T = dt.datetime(2026, 12, 1, 21, 22, 19, 654452, tzinfo=dt.UTC)


def test_the_event_is_core_v1_with_every_timestamp_kubectl_sorts_by() -> None:
    body = event_body(SR, "Normal", "RolloutStarted", "revision abc", T, name="web.x")
    assert body["apiVersion"] == "v1" and body["metadata"] == {"name": "web.x", "namespace": "shop"}
    assert body["eventTime"] == "2026-12-01T21:22:19.654452Z"
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-12-01T21:22:19Z"
    assert body["count"] == 1
    involved = body["involvedObject"]
    assert involved["uid"] == "u-1" and involved["kind"] == "ShadowRoute"
    assert (body["reason"], body["action"], body["message"]) == (
        "RolloutStarted", "RolloutStarted", "revision abc",
    )  # fmt: skip
    assert body["reportingComponent"] == "shadowroute.io/operator"


def test_event_names_sort_as_the_events_happened() -> None:
    s = ShadowRouteStatus()
    times = [T, T + dt.timedelta(microseconds=1), T + dt.timedelta(seconds=1), T.replace(year=2099)]
    for i, now in enumerate(times):
        _enqueue(s, now, [("Normal", "A", str(i)), ("Normal", "B", str(i))])
    ids = [p.id for p in s.pending_events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [p.message for p in s.pending_events] == ["0", "0", "1", "1", "2", "2", "3", "3"]
    assert all(len(i) == 16 for i in ids)  # the PendingEvent id's schema
