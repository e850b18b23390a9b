"""Sharding (`--shards`): the pure decisions (a route's shard, the fair share, what to
take and release) and the ShardSet against an in-memory API server of Leases that
behaves like the real one: LIST by label, resourceVersion checks on PUT and DELETE
preconditions, 404 and 409."""

from __future__ import annotations

import asyncio
import copy
import random
import subprocess
import sys
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from shadowroute.kube.shards import (
    ROLE_LABEL,
    SET_LABEL,
    Moves,
    ShardConfig,
    ShardLost,
    ShardSet,
    fair_share,
    lease_name,
    plan,
    shard_of,
)
from shadowroute.scheduler import Scheduler

from .test_chart_leader_election import Clock, error

NS = "ops"
PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"


class Leases:
    """The API server's Leases in one namespace."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.down: set[str] = set()  # identities whose calls fail (a partition)
        self.calls: Counter[str] = Counter()

    def api(self, who: str) -> Any:
        def call(method: str, path: str, body: Any = None) -> Any:
            self.calls[method] += 1
            if who in self.down:
                raise error(503, "unavailable")
            return self.handle(method, path, body)

        return call

    def handle(self, method: str, path: str, body: Any) -> Any:
        url = urlsplit(path)
        if method == "GET" and url.path == PATH:
            selector = parse_qs(url.query)["labelSelector"][0]
            key, value = selector.split("=")
            items = [
                {k: v for k, v in copy.deepcopy(i).items() if k not in ("apiVersion", "kind")}
                for i in self.items.values()
                if i["metadata"].get("labels", {}).get(key) == value
            ]
            return {"kind": "LeaseList", "items": items}
        if method == "POST":
            assert url.path == PATH
            name = body["metadata"]["name"]
            if name in self.items:
                raise error(409, "already exists")
            return self._store(name, body)
        name = url.path.rsplit("/", 1)[1]
        if name not in self.items:
            raise error(404, "not found")
        current = self.items[name]
        if method == "GET":
            return copy.deepcopy(current)
        if method == "PUT":
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise error(409, "the object has been modified")
            return self._store(name, body)
        if method == "DELETE":
            rv = ((body or {}).get("preconditions") or {}).get("resourceVersion")
            if rv is not None and rv != current["metadata"]["resourceVersion"]:
                raise error(409, "precondition failed")
            del self.items[name]
            return {"kind": "Status", "status": "Success"}
        raise AssertionError(method)

    def _store(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.items[name] = copy.deepcopy(body)
        self.items[name]["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.items[name])

    def holder(self, name: str) -> str:
        return (self.items.get(name, {}).get("spec") or {}).get("holderIdentity", "")


def replica(leases: Leases, clock: Clock, who: str, shards: int = 3, **kw: Any) -> ShardSet:
    cfg = ShardConfig(NS, "sr", who, shards, lease_duration=15, renew_deadline=10,
                      retry_period=2, **kw)  # fmt: skip
    return ShardSet(cfg, leases.api(who), clock=clock, wall=clock.wall)


async def rounds(clock: Clock, replicas: list[ShardSet], n: int, step: float = 2.0) -> None:
    for _ in range(n):
        for r in replicas:
            await r.round_once()
            assert_exclusive(replicas)
        clock.t += step


def assert_exclusive(replicas: list[ShardSet]) -> None:
    owners: dict[int, list[str]] = {}
    for r in replicas:
        for shard in r.held:
            owners.setdefault(shard, []).append(r.config.identity)
    double = {s: who for s, who in owners.items() if len(who) > 1}
    assert not double, f"shards held by two replicas at once: {double}"


# ---------------------------------------------------------------------- pure decisions


def test_a_routes_shard_is_pinned_and_does_not_depend_on_the_process() -> None:
    """SHA-256 of "namespace/name": the same in every process, whatever PYTHONHASHSEED."""
    pinned = {("shop", "checkout"): 2, ("shop", "cart"): 2, ("web", "front"): 1}
    got = {k: shard_of(*k, 3) for k in pinned}
    code = "from shadowroute.kube.shards import shard_of; print(shard_of('shop', 'checkout', 3))"
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={"PYTHONHASHSEED": seed}, check=True)  # fmt: skip
        assert out.stdout.strip() == str(got[("shop", "checkout")])
    assert got == pinned
    assert shard_of("shop", "checkout", 1) == 0


def test_routes_spread_evenly_over_the_shards() -> None:
    counts = Counter(shard_of("ns", f"route-{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(900 < n < 1100 for n in counts.values()), counts


@pytest.mark.parametrize(
    ("shards", "members", "share"),
    [(3, 1, 3), (3, 2, 2), (3, 3, 1), (3, 4, 1), (8, 3, 3), (1, 0, 1)],
)
def test_fair_share_is_the_ceiling(shards: int, members: int, share: int) -> None:
    assert fair_share(shards, members) == share


def test_plan_takes_free_shards_up_to_the_share_from_its_offset() -> None:
    assert plan(4, frozenset(), frozenset({0, 1, 2, 3}), 2) == Moves(acquire=(0, 1))
    assert plan(4, frozenset(), frozenset({0, 1, 2, 3}), 2, offset=3) == Moves(acquire=(3, 0))
    assert plan(4, frozenset({1}), frozenset({0, 2}), 2) == Moves(acquire=(0,))
    assert plan(4, frozenset({1, 2}), frozenset({0, 3}), 2) == Moves()


def test_plan_hands_over_one_shard_at_a_time_when_over_the_share() -> None:
    assert plan(3, frozenset({0, 1, 2}), frozenset(), 2) == Moves(release=(2,))
    assert plan(3, frozenset({0, 1, 2}), frozenset(), 3) == Moves(release=(2,))
    assert plan(3, frozenset({0}), frozenset(), 3) == Moves()


def test_identities_become_valid_lease_names() -> None:
    assert lease_name("Operator-7f9c_ab12CD") == "operator-7f9c-ab12cd"
    assert lease_name("___") == "member"


def test_config_needs_ordered_durations_and_a_shard() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        ShardConfig(NS, "sr", "a", 3, lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="at least 1"):
        ShardConfig(NS, "sr", "a", 0)


# ---------------------------------------------------------------------- the ShardSet


async def test_three_replicas_end_with_one_shard_each_never_two_holders() -> None:
    leases, clock = Leases(), Clock()
    a = replica(leases, clock, "a")
    await rounds(clock, [a], 1)
    assert a.held == {0, 1, 2}, "alone: every shard"
    b, c = replica(leases, clock, "b"), replica(leases, clock, "c")
    await rounds(clock, [a, b, c], 6)
    assert sorted(len(r.held) for r in (a, b, c)) == [1, 1, 1]
    for r in (a, b, c):
        for shard in r.held:
            assert leases.holder(f"sr-shard-{shard}") == r.config.identity
    names = {n for n, i in leases.items.items() if i["metadata"]["labels"][ROLE_LABEL] == "member"}
    assert names == {"sr-member-a", "sr-member-b", "sr-member-c"}
    assert all(i["metadata"]["labels"][SET_LABEL] == "sr" for i in leases.items.values())


async def test_a_dead_replicas_shard_moves_within_a_lease_period_and_its_member_goes() -> None:
    leases, clock = Leases(), Clock()
    rs = [replica(leases, clock, w) for w in "abc"]
    await rounds(clock, rs, 6)
    dead = rs[0]
    orphan = next(iter(dead.held))
    alive = rs[1:]
    died_at = clock.t
    moved_at = None
    for _ in range(20):  # the dead one makes no more rounds
        await rounds(clock, alive, 1, step=1.0)
        if any(orphan in r.held for r in alive):
            moved_at = clock.t
            break
    assert moved_at is not None
    # taken at the first round after lease_duration, as the survivors timed it
    assert moved_at - died_at <= 15 + 2 + 1
    assert "sr-member-a" not in leases.items, "the dead replica's member Lease is deleted"
    assert sorted(len(r.held) for r in alive) == [1, 2]


async def test_a_replica_that_cannot_renew_drops_its_shards_before_anyone_may_take_them() -> None:
    leases, clock = Leases(), Clock()
    a, b = replica(leases, clock, "a"), replica(leases, clock, "b")
    dropped: list[tuple[float, int]] = []

    async def lost(shard: int) -> None:
        dropped.append((clock.t, shard))

    async def nothing(shard: int) -> None:
        return None

    a.listen(nothing, lost)
    await rounds(clock, [a, b], 5)
    mine = set(a.held)
    dropped.clear()  # the shard a handed over to b when b came
    leases.down.add("a")  # a is cut off from the API server; b is not
    cut = clock.t
    for _ in range(12):
        await rounds(clock, [a, b], 1, step=1.0)
        if not a.held:
            break
    assert not a.held and {s for _, s in dropped} == mine
    assert all(t - cut <= 10 + 1 for t, _ in dropped), "dropped at the renew deadline"
    assert not (mine & b.held), "nobody took them yet: the lease has not expired for b"
    await rounds(clock, [a, b], 8, step=1.0)
    assert b.held == {0, 1, 2}, "b took them once they expired"


async def test_a_shard_whose_reconciles_do_not_stop_in_the_margin_raises() -> None:
    """The margin is lease_duration - renew_deadline (here 0.1 s, waited for really)."""
    leases, clock = Leases(), Clock()
    cfg = ShardConfig(NS, "sr", "a", 2, lease_duration=0.3, renew_deadline=0.2, retry_period=0.1)
    a = ShardSet(cfg, leases.api("a"), clock=clock, wall=clock.wall)

    async def nothing(shard: int) -> None:
        return None

    async def stuck(shard: int) -> None:
        await asyncio.sleep(3600)

    a.listen(nothing, stuck)
    await a.round_once()
    assert a.held == {0, 1}
    leases.down.add("a")
    clock.t += 1
    with pytest.raises(ShardLost, match="did not stop within"):
        await a.round_once()


async def test_no_shard_is_taken_before_the_scheduler_listens() -> None:
    """run() waits for listen() (the operator's startup done) before its first round."""
    leases = Leases()
    cfg = ShardConfig(NS, "sr", "a", 2, lease_duration=0.6, renew_deadline=0.4, retry_period=0.05)
    a = ShardSet(cfg, leases.api("a"))
    taken: list[int] = []

    async def acquired(shard: int) -> None:
        taken.append(shard)

    async def lost(shard: int) -> None:
        return None

    running = asyncio.create_task(a.run())
    await asyncio.sleep(0.3)
    assert not leases.items and not a.held
    a.listen(acquired, lost)
    for _ in range(100):
        if a.held == {0, 1}:
            break
        await asyncio.sleep(0.02)
    assert a.held == {0, 1} and sorted(taken) == [0, 1]
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await a.release()
    assert sorted(leases.items) == ["sr-shard-0", "sr-shard-1"], "its member Lease deleted"
    assert leases.holder("sr-shard-0") == leases.holder("sr-shard-1") == ""


async def test_a_shard_taken_by_someone_else_is_dropped_at_once() -> None:
    leases, clock = Leases(), Clock()
    a = replica(leases, clock, "a", shards=2)
    await a.round_once()
    assert a.held == {0, 1}
    lease = leases.items["sr-shard-1"]
    leases._store("sr-shard-1", {**lease, "spec": {**lease["spec"], "holderIdentity": "x"}})
    await a.round_once()
    assert 1 not in a.held


async def test_release_hands_every_shard_over_and_the_others_take_them_at_once() -> None:
    leases, clock = Leases(), Clock()
    a, b = replica(leases, clock, "a"), replica(leases, clock, "b")
    await rounds(clock, [a, b], 5)
    await a.release()
    assert not a.held and "sr-member-a" not in leases.items
    await rounds(clock, [b], 1)
    assert b.held == {0, 1, 2}, "no wait for an expiry"
    versions = leases.version
    await a.round_once()  # a late round after the release writes nothing
    assert leases.version == versions


async def test_at_rest_a_round_is_one_list_and_one_renewal_per_lease_held() -> None:
    leases, clock = Leases(), Clock()
    rs = [replica(leases, clock, w) for w in "abc"]
    await rounds(clock, rs, 6)
    leases.calls.clear()
    await rounds(clock, rs, 1)
    assert leases.calls == {"GET": 3, "PUT": 6}, "per replica: one LIST, member + shard"


async def test_random_kills_partitions_and_restarts_never_give_a_shard_two_holders() -> None:
    rng = random.Random(15)
    leases, clock = Leases(), Clock()
    live = [replica(leases, clock, f"r{i}", shards=5) for i in range(3)]
    born = 3
    for _ in range(300):
        event = rng.random()
        if event < 0.03 and len(live) > 1:
            live.remove(rng.choice(live))  # SIGKILL: no release
        elif event < 0.06:
            born += 1
            live.append(replica(leases, clock, f"r{born}", shards=5))
        elif event < 0.10:
            who = rng.choice(live).config.identity
            leases.down ^= {who}  # cut off, or back
        for r in rng.sample(live, len(live)):
            await r.round_once()
            assert_exclusive(live)
        clock.t += rng.uniform(0.5, 2.5)
    leases.down.clear()
    await rounds(clock, live, 15)
    held = sorted(s for r in live for s in r.held)
    assert held == [0, 1, 2, 3, 4], "every shard held again once the API server answers"


async def test_the_scheduler_acts_only_on_owned_routes_and_wakes_and_drops_them() -> None:
    from shadowroute.reconciler import Outcome

    owned: set[str] = set()
    runs: list[str] = []
    release = asyncio.Event()

    async def reconcile(namespace: str, name: str) -> Outcome:
        runs.append(name)
        if name == "slow":
            await release.wait()
        return Outcome(None, 0)

    sched = Scheduler(reconcile, owns=lambda ns, name: name in owned)
    for name in ("a", "slow"):
        sched.seen("ns", name)  # the route's own watch event
        sched.trigger("ns", name)
    await asyncio.sleep(0.01)
    assert runs == [], "not ours: only remembered"
    owned.update({"a", "slow"})
    assert sched.wake(lambda ns, name: True) == 2
    await asyncio.sleep(0.01)
    assert sorted(runs) == ["a", "slow"]
    owned.clear()
    await asyncio.wait_for(sched.drop(lambda ns, name: True), 1)
    assert not sched._running, "the reconcile under way was cancelled and waited for"
    assert not sched._timers, "and no timer is left to fire"
    sched.forget("ns", "a")
    owned.add("a")
    assert sched.wake(lambda ns, name: True) == 1, "a forgotten route is not woken"
    sched.trigger("ns", "a")  # a child's event after the route's DELETED (the GC's)
    assert sched.wake(lambda ns, name: True) == 1, "nor remembered again by it"
    await sched.stop()
