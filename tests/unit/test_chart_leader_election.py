"""Leader election (the chart's replicaCount > 1) against an in-memory Lease store
that behaves like the API server: resourceVersion checks, 404 and 409."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import threading
import time
from typing import Any

import pytest
from shadowroute.api_errors import ApiError
from shadowroute.kube.lease import LeaderElector, LeaseConfig

NS, NAME = "ops", "shadowroute"
PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"


def error(status: int, reason: str) -> ApiError:
    exc = ApiError(status=status, reason=reason)
    exc.body = json.dumps({"message": reason})
    return exc


class FakeApiServer:
    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.down = False

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        if self.down:
            raise error(503, "unavailable")
        if method == "GET":
            if self.lease is None:
                raise error(404, "not found")
            return copy.deepcopy(self.lease)
        if method == "POST":
            assert path == PATH
            if self.lease is not None:
                raise error(409, "already exists")
            return self._store(body)
        if method == "PUT":
            assert path == f"{PATH}/{NAME}"
            if self.lease is None:
                raise error(404, "not found")
            if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
                raise error(409, "the object has been modified")
            return self._store(body)
        raise AssertionError(method)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    @property
    def holder(self) -> str:
        return ((self.lease or {}).get("spec") or {}).get("holderIdentity", "")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> dt.datetime:
        return dt.datetime(2026, 11, 25, tzinfo=dt.UTC) + dt.timedelta(seconds=self.t)


def candidate(api: FakeApiServer, clock: Clock, who: str) -> LeaderElector:
    cfg = LeaseConfig(NS, NAME, who, lease_duration=15, renew_deadline=10, retry_period=2)
    return LeaderElector(cfg, api, clock=clock, wall=clock.wall)


def test_first_candidate_creates_the_lease_and_the_second_waits() -> None:
    api, clock = FakeApiServer(), Clock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    assert a.try_acquire_or_renew() and api.holder == "a"
    assert api.lease["spec"]["leaseTransitions"] == 0
    assert api.lease["spec"]["renewTime"].endswith("Z")
    assert not b.try_acquire_or_renew() and b.holder == "a"
    clock.t += 14  # b has seen the same record for 14 s: not yet expired
    assert not b.try_acquire_or_renew()
    assert a.try_acquire_or_renew(), "the holder renews"
    clock.t += 14  # renewed 14 s ago (as b timed it, from when it saw the change)
    assert not b.try_acquire_or_renew()


def test_a_silent_holder_is_replaced_after_the_lease_duration() -> None:
    api, clock = FakeApiServer(), Clock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    clock.t += 15.1
    assert b.try_acquire_or_renew() and api.holder == "b"
    assert api.lease["spec"]["leaseTransitions"] == 1
    assert not a.try_acquire_or_renew(), "the old holder sees it was taken"


def test_remote_timestamps_are_never_compared_with_our_clock() -> None:
    """A renewTime from a machine whose clock is far behind is not 'expired' to us."""
    api, clock = FakeApiServer(), Clock()
    a = candidate(api, clock, "a")
    a.try_acquire_or_renew()
    api.lease["spec"]["renewTime"] = "2000-01-01T00:00:00.000000Z"
    api.version += 1
    api.lease["metadata"]["resourceVersion"] = str(api.version)
    b = candidate(api, clock, "b")
    assert not b.try_acquire_or_renew()


def test_two_candidates_racing_for_an_expired_lease_cannot_both_win() -> None:
    api, clock = FakeApiServer(), Clock()
    a, b, c = (candidate(api, clock, w) for w in "abc")
    assert a.try_acquire_or_renew()
    b.try_acquire_or_renew(), c.try_acquire_or_renew()
    clock.t += 16
    stale = copy.deepcopy(api.lease)  # c read this before b wrote
    assert b.try_acquire_or_renew()
    real = api.__call__

    def racing_read(method: str, path: str, body: Any = None) -> Any:
        return copy.deepcopy(stale) if method == "GET" else real(method, path, body)

    c._api = racing_read
    assert not c.try_acquire_or_renew(), "its write carries an old resourceVersion: 409"
    assert api.holder == "b"


async def test_hold_returns_when_renewals_fail_for_the_deadline() -> None:
    api = FakeApiServer()
    clock = Clock()
    changes: list[bool] = []
    cfg = LeaseConfig(NS, NAME, "a", lease_duration=0.6, renew_deadline=0.3, retry_period=0.05)
    a = LeaderElector(cfg, api, clock=time.monotonic,
                      wall=clock.wall, on_change=changes.append)  # fmt: skip
    await a.acquire()
    assert a.leading and changes == [True]
    holding = asyncio.create_task(a.hold())
    await asyncio.sleep(0.2)
    assert not holding.done(), "renewing fine"
    api.down = True
    t0 = time.monotonic()
    await asyncio.wait_for(holding, 2)
    assert time.monotonic() - t0 < cfg.lease_duration, "gave up before anyone else may take over"
    assert not a.leading and changes == [True, False]


async def test_hold_returns_at_once_when_someone_else_took_the_lease() -> None:
    api = FakeApiServer()
    clock = Clock()
    cfg = LeaseConfig(NS, NAME, "a", lease_duration=30, renew_deadline=20, retry_period=0.05)
    a = LeaderElector(cfg, api, clock=time.monotonic, wall=clock.wall)
    await a.acquire()
    holding = asyncio.create_task(a.hold())
    api.lease["spec"]["holderIdentity"] = "intruder"
    api.version += 1
    api.lease["metadata"]["resourceVersion"] = str(api.version)
    await asyncio.wait_for(holding, 2)
    assert not a.leading


async def test_release_lets_the_next_candidate_in_at_once() -> None:
    api, clock = FakeApiServer(), Clock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    await a.acquire()
    assert not b.try_acquire_or_renew()
    await a.release()
    assert api.holder == "" and not a.leading
    assert b.try_acquire_or_renew() and api.holder == "b"
    await a.release()  # not leading: nothing happens
    assert api.holder == "b"


async def test_no_renewal_is_made_after_the_release() -> None:
    """At shutdown the Lease is released while the renewing task may still be running
    (its attempt in a thread): once released, it is never taken or renewed again, and
    a renewal under way when the release starts finishes before it."""
    api, clock = FakeApiServer(), Clock()
    a = candidate(api, clock, "a")
    await a.acquire()
    started, go = threading.Event(), threading.Event()

    def slow(method: str, path: str, body: Any = None) -> Any:
        if method == "GET" and not go.is_set():
            started.set()
            go.wait(5)
        return api(method, path, body)

    a._api = slow
    renewal = asyncio.ensure_future(asyncio.to_thread(a.try_acquire_or_renew))
    await asyncio.to_thread(started.wait, 5)
    release = asyncio.ensure_future(a.release())
    await asyncio.sleep(0)
    go.set()  # the renewal's read answers now, after the release began
    assert await renewal is True
    await release
    assert api.holder == "", "the release came last"
    versions = api.version
    assert not a.try_acquire_or_renew() and api.holder == "" and api.version == versions
    clock.t += 60
    assert not a.try_acquire_or_renew() and api.version == versions


def test_config_needs_ordered_durations() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        LeaseConfig(NS, NAME, "a", lease_duration=10, renew_deadline=10, retry_period=2)


def test_no_answer_from_the_api_server_is_a_failed_attempt_not_a_crash() -> None:
    """Review of issue 15: the project's client raises Unreachable (a refused or reset
    connection), which escaped the elector and ended the process (a leader exited, a
    stand-by crashed, a shard round stopped for good); one more failed attempt is what
    it is, and the deadlines decide."""
    import socket

    from shadowroute.kube.apiserver import Endpoint
    from shadowroute.kube.lease import client_api

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = client_api(Endpoint(server=f"http://127.0.0.1:{port}"))
    with pytest.raises(ApiError) as caught:
        api("GET", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/x")
    assert caught.value.status == 0 and "no answer" in caught.value.reason
    cfg = LeaseConfig(NS, NAME, "a", lease_duration=15, renew_deadline=10, retry_period=2)
    assert LeaderElector(cfg, api).try_acquire_or_renew() is False
