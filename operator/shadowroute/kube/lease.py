"""Leader election on a coordination.k8s.io/v1 Lease, so that several replicas of the
operator can run and exactly one reconciles.

The algorithm is client-go's: a candidate takes the Lease when nobody holds it or when
its record has not changed for `lease_duration` *as timed by the candidate's own
clock* (never by comparing another machine's timestamps with ours); the holder renews
it every `retry_period`; a holder that could not renew for `renew_deadline` (shorter
than the lease duration) gives up before anyone else may take over, and the operator
process then exits so that its pod restarts as a candidate. Every write carries the
resourceVersion it read, so two candidates racing for a free Lease cannot both win.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..api_errors import ApiError, api_reason
from .apiserver import ApiServer, Endpoint, Unreachable

log = logging.getLogger(__name__)
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    labels: tuple[tuple[str, str], ...] = ()
    """Labels of the Lease when this candidate creates it (a set of Leases is listed by them)."""

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs retry period < renew deadline < lease duration, "
                f"got {self.retry_period}s, {self.renew_deadline}s, {self.lease_duration}s"
            )


class LeaseApi(Protocol):
    """Raw JSON calls (GET, with a query for a LIST; POST, PUT, DELETE with DeleteOptions)
    that raise ApiError on an error status."""

    def __call__(self, method: str, path: str, body: Any = None) -> Any: ...


def micro_time(moment: dt.datetime) -> str:
    """A Lease's MicroTime: RFC 3339 with microseconds, UTC."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Observed:
    """A Lease's record as timed by our own clock: when it last changed as we saw it.
    Another machine's timestamps are never compared with ours: a record is expired when
    it has not changed for its duration since we first saw it as it is."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.record: tuple[Any, ...] | None = None
        self.at = 0.0
        self.duration = 0.0

    def see(self, lease: dict[str, Any] | None) -> None:
        spec = (lease or {}).get("spec") or {}
        record = (
            spec.get("holderIdentity") or "",
            spec.get("renewTime"),
            spec.get("acquireTime"),
            spec.get("leaseTransitions"),
        )
        if record != self.record:
            self.record, self.at = record, self._clock()
        self.duration = float(spec.get("leaseDurationSeconds") or 0)

    @property
    def holder(self) -> str:
        return self.record[0] if self.record else ""

    def live(self, now: float, default_duration: float) -> bool:
        """Held, and changed less than its duration ago (as we timed it)."""
        return bool(self.holder) and now < self.at + (self.duration or default_duration)


class LeaderElector:
    """One candidate. `acquire()` returns once this candidate holds the Lease;
    `hold()` renews it and returns only when leadership is lost; `release()` hands it
    over at a clean shutdown so that the next leader need not wait for it to expire."""

    def __init__(
        self,
        config: LeaseConfig,
        api: LeaseApi,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.config = config
        self._api = api
        self._clock = clock
        self._wall = wall
        self._on_change = on_change or (lambda leading: None)
        self._seen = Observed(clock)
        self._last_renew = 0.0
        self.leading = False
        self.holder = ""
        # One attempt or the release at a time: a renewal still under way in its thread
        # when the Lease is released finishes first, and none is made after it.
        self._lock = threading.Lock()
        self._released = False

    # ------------------------------------------------------------------ one attempt

    def try_acquire_or_renew(self) -> bool:
        """One attempt (blocking: run it in a thread). True when we hold the Lease.
        After `release()` never again."""
        with self._lock:
            return not self._released and self._attempt()

    def _attempt(self) -> bool:
        c = self.config
        try:
            lease = self._api("GET", f"{LEASES.format(ns=c.namespace)}/{c.name}")
        except ApiError as exc:
            if exc.status != 404:
                log.warning("cannot read lease %s/%s: %s", c.namespace, c.name, _why(exc))
                return False
            lease = None
        return self._attempt_on(lease)

    def attempt_on(self, lease: dict[str, Any] | None) -> bool:
        """One attempt on the Lease as just read (a LIST of a set of Leases feeds each
        of its electors this way: one read for all). Blocking: run it in a thread."""
        with self._lock:
            return not self._released and self._attempt_on(lease)

    def observe(self, lease: dict[str, Any] | None) -> None:
        """Time the Lease's record by our own clock without trying to take it."""
        self._seen.see(lease)
        self.holder = self._seen.holder

    def taken_by_other(self) -> bool:
        """Held by another candidate, renewed recently as we timed it."""
        return self._seen.live(self._clock(), self.config.lease_duration) and self.holder not in (
            "",
            self.config.identity,
        )

    def _attempt_on(self, lease: dict[str, Any] | None) -> bool:
        c = self.config
        now = self._wall()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": c.name, "namespace": c.namespace, "labels": dict(c.labels)},
                "spec": self._spec(now, acquire=True, transitions=0),
            }
            return self._write("POST", LEASES.format(ns=c.namespace), body)
        self.observe(lease)
        if self.taken_by_other():
            return False
        spec = lease.get("spec") or {}
        ours = self.holder == c.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if ours else 1)
        new_spec = self._spec(now, acquire=not ours, transitions=transitions)
        if ours:
            new_spec["acquireTime"] = spec.get("acquireTime") or new_spec["renewTime"]
        lease = {**lease, "spec": new_spec}  # metadata keeps resourceVersion: a lost race is a 409
        return self._write("PUT", f"{LEASES.format(ns=c.namespace)}/{c.name}", lease)

    def _spec(self, now: dt.datetime, acquire: bool, transitions: int) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": max(1, round(self.config.lease_duration)),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        }
        if acquire:
            spec["acquireTime"] = micro_time(now)
        return spec

    def _write(self, method: str, path: str, body: dict[str, Any]) -> bool:
        try:
            stored = self._api(method, path, body)
        except ApiError as exc:
            if exc.status not in (409, 404):
                log.warning("cannot write lease %s: %s", self.config.name, _why(exc))
            return False
        self._seen.see(stored or body)
        self._last_renew = self._clock()
        self.holder = self.config.identity
        return True

    # ------------------------------------------------------------------ the loops

    async def acquire(self) -> None:
        c = self.config
        announced = ""
        while True:
            if await asyncio.to_thread(self.try_acquire_or_renew):
                self._set(True)
                log.info("became the leader (lease %s/%s, as %s)", c.namespace, c.name, c.identity)
                return
            if self.holder != announced:
                announced = self.holder
                log.info("standing by: lease %s/%s is held by %s", c.namespace, c.name, self.holder)
            await asyncio.sleep(c.retry_period * random.uniform(1.0, 1.2))

    async def hold(self) -> None:
        """Renew until a renewal has not succeeded for `renew_deadline`; then return
        (leadership lost: stop reconciling at once)."""
        c = self.config
        while True:
            await asyncio.sleep(c.retry_period)
            try:
                ok = await asyncio.wait_for(
                    asyncio.to_thread(self.try_acquire_or_renew), c.renew_deadline
                )
            except TimeoutError:
                ok = False
            if not ok and (self.holder not in ("", c.identity) or self.lapsed()):
                self._set(False)
                log.error(
                    "lost the lease %s/%s (not renewed for %.0fs; held by %s)",
                    c.namespace, c.name, c.renew_deadline, self.holder or "nobody",
                )  # fmt: skip
                return

    def lapsed(self) -> bool:
        """Our last successful write is `renew_deadline` old: stop acting on the Lease
        now, before anyone else may take it (`lease_duration` after they saw it)."""
        return self._clock() - self._last_renew >= self.config.renew_deadline

    def renewed_at(self) -> float:
        """When our last write of the Lease succeeded (our clock)."""
        return self._last_renew

    async def release(self) -> None:
        """Give the Lease up (holder empty), only if we still hold it; no attempt to
        take or renew it is made after this."""
        if not self.leading:
            self._released = True
            return
        self._set(False)
        try:
            await asyncio.to_thread(self.give_up, True)
            log.info("released the lease %s/%s", self.config.namespace, self.config.name)
        except ApiError as exc:
            log.warning("could not release the lease %s: %s", self.config.name, _why(exc))

    def give_up(self, final: bool) -> None:
        """Clear the holder (only if it is us) so that the next candidate takes the Lease
        at its next attempt. `final`: never take or renew it again. Blocking."""
        c = self.config
        with self._lock:
            if final:
                self._released = True
            path = f"{LEASES.format(ns=c.namespace)}/{c.name}"
            lease = self._api("GET", path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != c.identity:
                return
            spec["holderIdentity"] = ""
            spec["leaseDurationSeconds"] = 1
            lease["spec"] = spec
            self._last_renew = float("-inf")
            self._api("PUT", path, lease)

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            self._on_change(leading)


def client_api(endpoint: Endpoint) -> LeaseApi:
    """LeaseApi over the project's client (its own connection, bounded by a timeout:
    a renewal that hangs must not outlast the renew deadline)."""
    api = ApiServer(endpoint, timeout=10, agent="shadowroute-operator")
    lock = threading.Lock()

    def call(method: str, path: str, body: Any = None) -> Any:
        with lock:  # one connection; the elector's calls come from worker threads
            try:
                return api.request(method, path, body=body)
            except Unreachable as exc:
                # No answer is one more failed attempt (status 0: no HTTP status): the
                # deadlines decide what it means, the same as for a 5xx; never a crash.
                raise ApiError(0, f"no answer: {exc}") from None

    return call


def _why(exc: ApiError) -> str:
    return api_reason(exc)[1]
