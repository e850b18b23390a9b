"""Sharding across operator replicas (`--shards S`, S > 1): each shard is a
coordination.k8s.io/v1 Lease, and a replica reconciles only the ShadowRoutes of the
shards it holds.

- A route's shard is `shard_of(namespace, name, S)`: the first 8 bytes of the SHA-256
  of "namespace/name", big-endian, modulo S. Stable across processes, versions and
  machines (never Python's per-process randomized `hash()`).
- Each shard's Lease (`<id>-shard-<i>`) is held by one replica at a time with the
  leader election's algorithm (`lease.LeaderElector`: resourceVersion on every write,
  expiry timed by the reader's own clock). Each replica also announces itself with its
  own member Lease (`<id>-member-<identity>`), renewed the same way.
- Every `retry_period` a replica LISTs the set's Leases (one read, by label) and
  renews its member Lease and the shards it holds. Balance (`plan`): fair share =
  ceil(S / live members); a replica holding more hands its highest shard over
  (stops reconciling it, then clears the Lease's holder), one per round; a replica
  holding less takes free or expired shards. Expired member Leases (a dead replica's)
  are deleted by whoever sees them, with the resourceVersion it saw as precondition.
- A shard whose renewal has not succeeded for `renew_deadline` is dropped: its
  reconciles are cancelled and waited for before `lease_duration` can have passed for
  anyone else; if they do not stop in that margin, `run` raises `ShardLost` and the
  process exits (its pod restarts).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..api_errors import ApiError, api_reason
from .lease import LEASES, LeaderElector, LeaseApi, LeaseConfig, Observed

log = logging.getLogger(__name__)
SET_LABEL = "shadowroute.io/lease-set"
ROLE_LABEL = "shadowroute.io/lease-role"


# ---------------------------------------------------------------------- pure decisions


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard of a route: SHA-256 of "namespace/name", first 8 bytes big-endian, mod S."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def fair_share(shards: int, members: int) -> int:
    """How many shards one replica may hold: ceil(S / live members)."""
    return math.ceil(shards / max(1, members))


@dataclass(frozen=True)
class Moves:
    acquire: tuple[int, ...] = ()
    release: tuple[int, ...] = ()


def plan(
    shards: int, held: frozenset[int], free: frozenset[int], members: int, offset: int = 0
) -> Moves:
    """What one replica does this round. `held`: the shards it holds; `free`: the
    shards nobody holds (holder empty, or expired as we timed it); `members`: the live
    member Leases, ours included. Over the fair share: release the highest held shard
    (one per round, so that shards move one at a time). Under it: take free shards, in
    order starting from `offset` (each replica its own, so that they race less)."""
    share = fair_share(shards, members)
    if len(held) > share:
        return Moves(release=(max(held),))
    wanted = sorted(free - held, key=lambda s: (s - offset) % shards)
    return Moves(acquire=tuple(wanted[: share - len(held)]))


def lease_name(text: str) -> str:
    """A valid Lease name (DNS subdomain) from an identity: lowercase, [a-z0-9-.]."""
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-.")
    return cleaned[:200] or "member"


# ---------------------------------------------------------------------- the shell


class ShardLost(RuntimeError):
    """A lost shard's reconciles did not stop before another replica may take it."""


@dataclass(frozen=True)
class ShardConfig:
    namespace: str
    name: str
    """The set's name: Leases `<name>-shard-<i>` and `<name>-member-<identity>`."""
    identity: str
    shards: int
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"shards must be at least 1, got {self.shards}")
        self.lease("check", "shard")  # the durations' order

    def lease(self, name: str, role: str) -> LeaseConfig:
        return LeaseConfig(
            namespace=self.namespace,
            name=name,
            identity=self.identity,
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
            labels=((SET_LABEL, self.name), (ROLE_LABEL, role)),
        )

    def shard_lease(self, shard: int) -> str:
        return f"{self.name}-shard-{shard}"

    @property
    def member_lease(self) -> str:
        return f"{self.name}-member-{lease_name(self.identity)}"


@dataclass
class Round:
    """What one round of I/O found and did (its thread's answer)."""

    acquired: list[int] = field(default_factory=list)
    release: list[int] = field(default_factory=list)
    taken: list[int] = field(default_factory=list)
    """Held by us, but another replica's name is in the Lease now."""
    members: int = 1


Hook = Callable[[int], Awaitable[None]]


async def _nothing(shard: int) -> None:
    return None


class ShardSet:
    """The shards this replica holds, kept by `run()`. `owns(namespace, name)` tells the
    scheduler whether to act on a route; `listen(on_acquire, on_lose)` connects it."""

    def __init__(
        self,
        config: ShardConfig,
        api: LeaseApi,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        on_change: Callable[[int, bool], None] | None = None,
    ) -> None:
        self.config = config
        self._api = api
        self._clock = clock
        self._electors = [
            LeaderElector(config.lease(config.shard_lease(i), "shard"), api, clock, wall)
            for i in range(config.shards)
        ]
        self._member = LeaderElector(config.lease(config.member_lease, "member"), api, clock, wall)
        self._others: dict[str, Observed] = {}  # other replicas' member Leases, by name
        self._on_change = on_change or (lambda shard, held: None)
        self._on_acquire: Hook = _nothing
        self._on_lose: Hook = _nothing
        self.held: set[int] = set()
        self._offset = int.from_bytes(hashlib.sha256(config.identity.encode()).digest()[:4], "big")
        self.stopped = False
        self._listening = asyncio.Event()

    def owns(self, namespace: str, name: str) -> bool:
        return shard_of(namespace, name, self.config.shards) in self.held

    def shard(self, namespace: str, name: str) -> int:
        return shard_of(namespace, name, self.config.shards)

    def listen(self, on_acquire: Hook, on_lose: Hook) -> None:
        """Connect the scheduler; `run()` takes no shard before this (startup done)."""
        self._on_acquire, self._on_lose = on_acquire, on_lose
        self._listening.set()

    # ------------------------------------------------------------------ one round (blocking)

    def io_round(self) -> Round:
        """LIST the set's Leases; renew ours; clean up expired members; take what the
        plan says. Blocking: run it in a thread."""
        c = self.config
        path = LEASES.format(ns=c.namespace)
        found = Round()
        try:
            listed = self._api("GET", f"{path}?labelSelector={SET_LABEL}%3D{c.name}")
        except ApiError as exc:
            log.warning("cannot list the shard leases in %s: %s", c.namespace, api_reason(exc)[1])
            return found
        items = {
            (item.get("metadata") or {}).get("name", ""): {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **item,
            }
            for item in (listed or {}).get("items") or []
        }  # fmt: skip
        self._member.attempt_on(items.get(c.member_lease))
        now = self._clock()
        live = 1
        for name, item in items.items():
            labels = (item.get("metadata") or {}).get("labels") or {}
            if labels.get(ROLE_LABEL) != "member" or name == c.member_lease:
                continue
            seen = self._others.setdefault(name, Observed(self._clock))
            seen.see(item)
            if seen.live(now, c.lease_duration):
                live += 1
            else:
                self._delete(name, item)
        for name in set(self._others) - set(items):
            del self._others[name]
        found.members = live
        free = set()
        for shard, elector in enumerate(self._electors):
            item = items.get(c.shard_lease(shard))
            if shard in self.held:
                if not elector.attempt_on(item) and elector.taken_by_other():
                    found.taken.append(shard)
                continue
            elector.observe(item)
            if item is None or not elector.taken_by_other():
                free.add(shard)
        held = frozenset(self.held) - frozenset(found.taken)
        moves = plan(c.shards, held, frozenset(free), live, self._offset)
        found.release = list(moves.release)
        for shard in moves.acquire:
            if self._electors[shard].attempt_on(items.get(c.shard_lease(shard))):
                found.acquired.append(shard)
        return found

    def _delete(self, name: str, item: dict[str, Any]) -> None:
        """Delete an expired member Lease (ours, the operator's), only as we saw it."""
        rv = (item.get("metadata") or {}).get("resourceVersion")
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"resourceVersion": rv},
        }
        try:
            self._api("DELETE", f"{LEASES.format(ns=self.config.namespace)}/{name}", body)
            log.info("deleted the expired member lease %s", name)
        except ApiError as exc:
            if exc.status not in (404, 409):
                log.warning("cannot delete the member lease %s: %s", name, api_reason(exc)[1])
        self._others.pop(name, None)

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Keep the shards until cancelled; raises ShardLost when a lost shard's
        reconciles would not stop in time. The first round waits for `listen()`: until
        the operator's startup is done nothing could act on a shard, and a startup that
        keeps the event loop busy would only make a just-taken shard lapse."""
        c = self.config
        for shard in range(c.shards):
            self._on_change(shard, False)
        await self._listening.wait()
        pending: asyncio.Future[Round] | None = None
        while not self.stopped:
            if pending is None:
                pending = asyncio.ensure_future(asyncio.to_thread(self.io_round))
            done, _ = await asyncio.wait({pending}, timeout=self._budget())
            if pending in done:
                try:
                    found = pending.result()
                except Exception as exc:  # a transport error: this round found nothing
                    log.warning("shard round failed: %s: %s", type(exc).__name__, exc)
                    found = Round()
                pending = None
                await self._settle(found)
            await self._drop_lapsed()
            if pending is None:
                # Never past a held shard's renew deadline: a lapse is acted on at once.
                await asyncio.sleep(min(c.retry_period * random.uniform(1.0, 1.2), self._budget()))

    async def round_once(self) -> Round:
        """One whole round, waited for: the I/O, then the shards it moved (tests and tools)."""
        found = await asyncio.to_thread(self.io_round)
        await self._settle(found)
        await self._drop_lapsed()
        return found

    def _budget(self) -> float:
        """Until the first held shard's renew deadline (wake then even if I/O hangs)."""
        c = self.config
        deadlines = [self._electors[s].renewed_at() + c.renew_deadline for s in self.held]
        return max(0.01, min(deadlines, default=self._clock() + c.renew_deadline) - self._clock())

    async def _settle(self, found: Round) -> None:
        for shard in found.taken:
            await self._lose(shard, "another replica holds its lease")
        for shard in found.acquired:
            self.held.add(shard)
            self._on_change(shard, True)
            log.info(
                "took shard %d (lease %s; %d live replicas)",
                shard, self.config.shard_lease(shard), found.members,
            )  # fmt: skip
            await self._on_acquire(shard)
        for shard in found.release:
            await self._lose(shard, f"handing it over ({found.members} live replicas)")
            try:
                await asyncio.to_thread(self._electors[shard].give_up, False)
            except ApiError as exc:
                log.warning("could not release shard %d: %s", shard, api_reason(exc)[1])

    async def _drop_lapsed(self) -> None:
        for shard in sorted(self.held):
            if self._electors[shard].lapsed():
                await self._lose(shard, f"not renewed for {self.config.renew_deadline:.0f}s")

    async def _lose(self, shard: int, why: str) -> None:
        """Stop acting on the shard's routes, and wait until they stopped: within the
        margin before anyone else may take it, or raise ShardLost."""
        if shard not in self.held:
            return
        self.held.discard(shard)
        self._on_change(shard, False)
        log.warning("dropping shard %d: %s", shard, why)
        c = self.config
        # Counted from the last renewal: until then + lease_duration nobody may take it.
        renewed = self._electors[shard].renewed_at()
        if math.isfinite(renewed):
            margin = max(0.0, renewed + c.lease_duration - self._clock())
        else:  # never renewed by us: nobody waits on our record
            margin = c.lease_duration - c.renew_deadline
        try:
            await asyncio.wait_for(self._on_lose(shard), margin)
        except TimeoutError:
            raise ShardLost(
                f"the reconciles of shard {shard} did not stop within {margin:.0f}s"
            ) from None

    async def release(self) -> None:
        """At a clean shutdown, once nothing reconciles: hand every held shard over and
        delete our member Lease, so the others rebalance at their next round."""
        self.stopped = True
        held, self.held = sorted(self.held), set()
        for shard in held:
            self._on_change(shard, False)
        c = self.config

        def give_up() -> None:
            for elector in (*(self._electors[shard] for shard in held), self._member):
                try:
                    elector.give_up(True)  # and never renewed again, even by a late round
                except ApiError as exc:
                    if exc.status != 404:
                        log.warning(
                            "could not release %s: %s", elector.config.name, api_reason(exc)[1]
                        )
            try:
                self._api("DELETE", f"{LEASES.format(ns=c.namespace)}/{c.member_lease}")
            except ApiError as exc:
                if exc.status != 404:
                    log.warning("could not delete %s: %s", c.member_lease, api_reason(exc)[1])

        await asyncio.to_thread(give_up)
        log.info("released shards %s and deleted the member lease %s", held, c.member_lease)
