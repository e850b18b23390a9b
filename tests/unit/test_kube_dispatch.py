"""The thread pool of API calls takes the oldest route's calls first, never loses or
runs a cancelled call, and passes errors back to their caller."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from shadowroute.kube.dispatch import Dispatcher, priority


async def blocked(d: Dispatcher) -> tuple[threading.Event, asyncio.Task[str]]:
    """Occupy the dispatcher's only worker until the event is set."""
    release = threading.Event()
    task = asyncio.create_task(d.run(lambda: (release.wait(5), "first")[1]))
    await asyncio.sleep(0.05)
    return release, task


async def call_with(d: Dispatcher, prio: float, done: list[float]) -> float:
    priority.set(prio)  # this task's context only
    return await d.run(lambda: (done.append(prio), prio)[1])


async def test_waiting_calls_leave_oldest_route_first() -> None:
    d = Dispatcher(1)
    release, first = await blocked(d)
    done: list[float] = []
    calls = [asyncio.create_task(call_with(d, p, done)) for p in (30.0, 10.0, 20.0, 10.0)]
    await asyncio.sleep(0.05)
    release.set()
    assert await first == "first"
    assert await asyncio.gather(*calls) == [30.0, 10.0, 20.0, 10.0]
    assert done == [10.0, 10.0, 20.0, 30.0]
    await d.close()


async def test_a_call_whose_caller_gave_up_is_never_run() -> None:
    d = Dispatcher(1)
    release, first = await blocked(d)
    done: list[float] = []
    dropped = asyncio.create_task(call_with(d, 1.0, done))
    kept = asyncio.create_task(call_with(d, 2.0, done))
    await asyncio.sleep(0.05)
    dropped.cancel()
    release.set()
    await first
    assert await kept == 2.0
    assert done == [2.0]
    with pytest.raises(asyncio.CancelledError):
        await dropped
    await d.close()


async def test_errors_reach_their_caller_and_the_worker_goes_on() -> None:
    d = Dispatcher(2)

    def fail() -> None:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await d.run(fail)
    assert await d.run(lambda: 42) == 42
    await d.close()


async def test_calls_run_in_parallel_up_to_the_worker_count() -> None:
    d = Dispatcher(3)
    inside, peak, lock = 0, 0, threading.Lock()
    gate = threading.Barrier(3, timeout=5)

    def call() -> None:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        gate.wait()  # only passes when three run at once
        with lock:
            inside -= 1

    await asyncio.gather(*(d.run(call) for _ in range(6)))
    assert peak == 3
    await d.close()


async def test_close_cancels_what_still_waits() -> None:
    d = Dispatcher(1)
    release, first = await blocked(d)
    waiting = asyncio.create_task(d.run(lambda: "never"))
    await asyncio.sleep(0.05)
    await d.close()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_each_reconcile_asks_with_its_routes_age() -> None:
    """The scheduler gives a route's API calls the time it first saw the route: an
    older route's calls go first, and a route keeps its place on later reconciles."""
    from shadowroute.reconciler import Outcome
    from shadowroute.scheduler import Scheduler

    seen: list[tuple[str, float]] = []

    async def reconcile(namespace: str, name: str) -> Outcome:
        seen.append((name, priority.get()))
        return Outcome(None, 0)

    sched = Scheduler(reconcile)
    for name in ("old", "new", "old"):
        sched.trigger("ns", name)
        await asyncio.sleep(0.01)
    await sched.stop()
    (_, old), (_, new), (_, old_again) = seen
    assert [n for n, _ in seen] == ["old", "new", "old"]
    assert 0 < old < new and old_again == old
    assert priority.get() == 0.0, "set only inside the reconcile's own task"


async def test_a_waiting_worker_keeps_no_answer_alive() -> None:
    """Issue 15: each worker held its last answer while it waited for the next call:
    at rest, 16 workers kept 11 MiB of decoded LISTs (every Deployment) alive."""
    import gc
    import weakref

    class Answer(dict):  # a dict that can be weakly referenced
        pass

    d = Dispatcher(2)
    answer = await d.run(Answer)
    gone = weakref.ref(answer)
    del answer
    await asyncio.sleep(0.05)  # the workers are back waiting for calls
    gc.collect()
    assert gone() is None, "a worker still holds the last answer"
    await d.close()


def test_the_heap_can_be_trimmed_and_its_arenas_limited() -> None:
    """glibc's mallopt and malloc_trim, through ctypes: they load and answer."""
    from shadowroute.observability import memory

    assert memory.limit_arenas() in (True, False)
    assert memory.trim() in (True, False)
    if memory._glibc() is not None:  # glibc (this machine): mallopt takes the limit
        assert memory.limit_arenas()


async def test_no_answer_from_the_api_server_is_one_line_never_a_traceback(caplog) -> None:
    """CI saw a TLS EOF on a kept-alive connection logged with its whole traceback at
    every retry: an API server that does not answer is one warning line."""
    from shadowroute.kube.apiserver import Unreachable
    from shadowroute.scheduler import Scheduler

    tried = asyncio.Event()

    async def reconcile(namespace: str, name: str) -> Any:
        tried.set()
        raise Unreachable("EOF occurred in violation of protocol")

    sched = Scheduler(reconcile, resync=300)
    sched.trigger("ns", "a")
    await asyncio.wait_for(tried.wait(), 5)
    await asyncio.sleep(0.05)
    await sched.stop()
    (record,) = [r for r in caplog.records if "ns/a" in r.getMessage()]
    assert record.exc_info is None and "no answer from the API server" in record.getMessage()
