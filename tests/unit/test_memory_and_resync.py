"""The opt-ins the scale benchmark uses (bench/scale.py, docs/operations.md):
$SHADOWROUTE_TRACEMALLOC and /debug/memory, and $SHADOWROUTE_RESYNC_SECONDS."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import pytest
from prometheus_client import REGISTRY
from shadowroute.__main__ import main, parse_args
from shadowroute.observability import memory, metrics
from shadowroute.reconciler import Outcome
from shadowroute.scheduler import RESYNC_SECONDS, Scheduler, resync_seconds


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), metrics.make_handler(REGISTRY))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def tracing():
    was = tracemalloc.is_tracing()
    assert memory.start_from_env({memory.ENV: "1"})
    yield
    if not was:
        tracemalloc.stop()


def test_debug_memory_is_off_by_default_and_says_how_to_turn_it_on(server) -> None:
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc already on in this interpreter")
    assert not memory.start_from_env({})
    code, body = get(server + "/debug/memory")
    assert code == 404 and "SHADOWROUTE_TRACEMALLOC=1" in body


def test_debug_memory_answers_the_top_sites_by_file_package_line_and_stack(server, tracing) -> None:
    hoard = [bytearray(1024) for _ in range(4096)]  # 4 MiB allocated right here
    code, body = get(server + "/debug/memory?top=3")
    assert code == 200, body
    lines = body.splitlines()
    assert lines[0].startswith("tracemalloc: traced") and "bookkeeping" in lines[0]
    assert lines[1].startswith("top 3 of ") and len(lines) == 5
    assert "test_memory_and_resync.py" in lines[2], "the biggest site is this file"
    code, body = get(server + "/debug/memory?by=line&top=1")
    assert code == 200 and "test_memory_and_resync.py:" in body
    code, body = get(server + "/debug/memory?by=package&top=50")
    assert code == 200 and "stdlib:" in body
    code, body = get(server + "/debug/memory?by=traceback&top=1")
    assert code == 200 and "test_memory_and_resync.py:" in body.splitlines()[2], body
    assert get(server + "/debug/memory?by=color")[0] == 400
    assert get(server + "/debug/memory?top=x")[0] == 400
    del hoard


def test_package_of_groups_files_by_what_installed_them() -> None:
    site = "/v/lib/python3.12/site-packages"
    assert memory.package_of(f"{site}/kubernetes/client/models/v1_pod.py") == "kubernetes"
    assert memory.package_of(f"{site}/six.py") == "six"
    assert memory.package_of("/w/operator/shadowroute/kube/client.py") == "shadowroute"
    assert memory.package_of("/usr/lib/python3.12/json/decoder.py") == "stdlib:decoder"
    assert memory.package_of("<frozen importlib._bootstrap>") == "<frozen importlib._bootstrap>"
    assert memory.short_path(f"{site}/kopf/_core/x.py") == "kopf/_core/x.py"


@pytest.mark.parametrize("bad", ["yes", "-1", "26", "1.5"])
def test_a_bad_tracemalloc_setting_is_refused_at_start(bad, monkeypatch) -> None:
    monkeypatch.setenv(memory.ENV, bad)
    with pytest.raises(SystemExit) as exc:
        parse_args([])
    assert exc.value.code == 2


def test_resync_seconds_comes_from_the_environment() -> None:
    assert resync_seconds({}) == RESYNC_SECONDS == 300
    assert resync_seconds({"SHADOWROUTE_RESYNC_SECONDS": "30"}) == 30
    for bad in ("0", "0.5", "soon", "nan", "inf"):
        with pytest.raises(ValueError, match="SHADOWROUTE_RESYNC_SECONDS"):
            resync_seconds({"SHADOWROUTE_RESYNC_SECONDS": bad})


def test_a_bad_resync_setting_is_a_one_line_error(monkeypatch, capsys) -> None:
    monkeypatch.setenv("SHADOWROUTE_RESYNC_SECONDS", "soon")
    assert main(["--metrics-port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SHADOWROUTE_RESYNC_SECONDS='soon'" in err


async def test_the_scheduler_resyncs_after_the_configured_seconds(monkeypatch) -> None:
    monkeypatch.setenv("SHADOWROUTE_RESYNC_SECONDS", "1")
    runs = asyncio.Event()
    count = 0

    async def reconcile(ns: str, name: str) -> Outcome:
        nonlocal count
        count += 1
        if count == 2:
            runs.set()
        return Outcome(None, 0)

    sched = Scheduler(reconcile)
    sched.trigger("ns", "a")
    await asyncio.wait_for(runs.wait(), 5)  # the second run is the resync, 1 s later
    await sched.stop()


async def test_a_reconcile_keeps_nothing_of_the_event_handler_that_triggered_it() -> None:
    """kopf calls the event handler with its context variables set (the cause, with the
    route's body): a reconcile task that copied them would keep one body per route
    alive through its timer and every later run."""
    import contextvars
    import gc
    import weakref

    cause: contextvars.ContextVar[object] = contextvars.ContextVar("cause")

    class Body:
        pass

    ran = asyncio.Event()

    async def reconcile(ns: str, name: str) -> Outcome:
        ran.set()
        return Outcome(60.0, 0)  # a timer: it outlives the task

    sched = Scheduler(reconcile, resync=300)
    body = Body()
    gone = weakref.ref(body)

    def handler(event_body: Body) -> None:
        cause.set(event_body)
        sched.trigger("ns", "a")

    contextvars.copy_context().run(handler, body)
    del body
    await asyncio.wait_for(ran.wait(), 5)
    await asyncio.sleep(0)
    gc.collect()
    assert gone() is None, "the scheduler kept the handler's context"
    await sched.stop()
