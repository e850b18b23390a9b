"""The operator's own LIST-then-WATCH (kube/watch.py) and how the feed takes what it
reports (kube/feed.py): LIST pages, watch events, bookmarks, a 410 Gone that LISTs
again, a kind not served waited for by its CRD, a 403 that ends the watch, a stop that
cuts a blocked read; the index filled on the event loop, owners told of changes (not
of the answers to our own writes), a re-list dropping what it lacks.

The watch runs against a small scripted HTTP server here (the protocol's edges on
demand); tests/e2e/test_watch_index.py runs it against the real API server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from shadowroute.kube import watch as watch_module
from shadowroute.kube.apiserver import Endpoint
from shadowroute.kube.feed import Feed
from shadowroute.kube.store import Store
from shadowroute.kube.watch import CRDS, KindWatch

NS = "shop"
PATH = f"/api/v1/namespaces/{NS}/services"


def svc(name: str, rv: str, owner: str = "web") -> dict[str, Any]:
    return {
        "kind": "Service",
        "metadata": {
            "name": name, "namespace": NS, "resourceVersion": rv,
            "labels": {"shadowroute.io/name": owner},
        },
    }  # fmt: skip


class Script:
    """What the server answers, request by request: each entry is (path, answer); an
    answer is (status, body) or ("stream", [events], hold) where hold keeps the stream
    open until released."""

    def __init__(self, answers: list[tuple[str, Any]]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def next(self, path: str, query: dict[str, str]) -> Any:
        with self.lock:
            self.requests.append((path, query))
            for i, (want, _) in enumerate(self.answers):
                if want == path:
                    return self.answers.pop(i)[1]
        return ("stream", [], True)  # nothing scripted: a quiet watch


@pytest.fixture
def server():
    servers: list[ThreadingHTTPServer] = []

    def start(script: Script) -> Endpoint:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                answer = script.next(url.path, query)
                if answer[0] != "stream":
                    data = json.dumps(answer[1]).encode()
                    self.send_response(answer[0])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in answer[1]:
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                if answer[2]:
                    script.release.wait(10)
                self.wfile.write(b"0\r\n\r\n")

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        servers.append(httpd)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return Endpoint(server=f"http://127.0.0.1:{httpd.server_address[1]}")

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


class Recorder:
    def __init__(self) -> None:
        self.said: list[tuple[str, Any]] = []

    def __call__(self, what: str, payload: Any) -> None:
        self.said.append((what, payload))

    def wait(self, check, what: str, seconds: float = 5) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if check(self.said):
                return
            time.sleep(0.01)
        raise AssertionError(f"never: {what}; said {self.said}")


def listing(items: list[dict], rv: str, token: str = "") -> tuple[int, dict]:
    meta = {"resourceVersion": rv, **({"continue": token} if token else {})}
    bare = [{k: v for k, v in i.items() if k != "kind"} for i in items]  # as a LIST has them
    return (200, {"metadata": meta, "items": bare})


def started(endpoint: Endpoint, sink: Recorder, **options: Any) -> KindWatch:
    watch = KindWatch(endpoint, "Service", PATH, sink, selector="a=b", page=1, **options)
    watch.start()
    return watch


def test_a_list_by_pages_then_watch_events_and_a_410_lists_again(server) -> None:
    script = Script([
        (PATH, listing([svc("web", "5")], "10", token="next")),
        (PATH, listing([svc("web-canary", "6")], "10")),
        (PATH, ("stream", [
            {"type": "ADDED", "object": svc("web-preview", "11")},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
            {"type": "DELETED", "object": svc("web-canary", "16")},
        ], False)),
        (PATH, ("stream", [{"type": "ERROR", "object": {"code": 410}}], False)),
        (PATH, listing([svc("web", "5")], "40")),
    ])  # fmt: skip
    sink = Recorder()
    watch = started(server(script), sink)
    sink.wait(lambda s: sum(w == "listed" for w, _ in s) == 2, "a second LIST after the 410")
    watch.stop()
    watch.join(5)
    said = [(w, p if w in ("listed",) else None) for w, p in sink.said]
    assert [w for w, _ in said] == ["page", "page", "listed", "put", "deleted", "page", "listed"]
    first, again = [p for w, p in sink.said if w == "listed"]
    assert first == ({(NS, "web"), (NS, "web-canary")}, "10", True)
    assert again == ({(NS, "web")}, "40", False)
    pages = [p for w, p in sink.said if w == "page"]
    assert pages[0][0]["kind"] == "Service", "a LIST's items get their kind"
    lists = [q for p, q in script.requests if p == PATH and "watch" not in q]
    watches = [q for p, q in script.requests if p == PATH and "watch" in q]
    assert lists[0] == {"limit": "1", "labelSelector": "a=b"}
    assert lists[1]["continue"] == "next"
    assert watches[0]["resourceVersion"] == "10" and watches[0]["allowWatchBookmarks"] == "true"
    assert watches[1]["resourceVersion"] == "16", "resumed from the last version seen"


def test_a_kind_not_served_is_missing_until_its_crd_is_added(server) -> None:
    crd = "httproutes.gateway.networking.k8s.io"
    script = Script([
        (PATH, (404, {"kind": "Status", "code": 404})),
        (CRDS, (200, {"metadata": {"resourceVersion": "3"}, "items": []})),
        (CRDS, ("stream", [{"type": "ADDED", "object": {"metadata": {"name": crd}}}], False)),
        (PATH, listing([svc("web", "5")], "20")),
    ])  # fmt: skip
    sink = Recorder()
    watch = started(server(script), sink, crd=crd)
    sink.wait(lambda s: any(w == "listed" for w, _ in s), "listed once the CRD is there", 10)
    watch.stop()
    watch.join(5)
    assert [w for w, _ in sink.said][:3] == ["missing", "page", "listed"]
    crd_queries = [q for p, q in script.requests if p == CRDS]
    assert crd_queries[0]["fieldSelector"] == f"metadata.name={crd}"
    assert crd_queries[1]["watch"] == "1" and crd_queries[1]["resourceVersion"] == "3"


def test_a_kind_it_may_not_list_is_reported_and_the_watch_ends(server) -> None:
    script = Script([(PATH, (403, {"kind": "Status", "code": 403, "message": "no"}))])
    sink = Recorder()
    watch = started(server(script), sink)
    watch.join(5)
    assert [w for w, _ in sink.said] == ["forbidden"]
    assert len(script.requests) == 1


def test_a_lost_connection_is_retried_from_the_last_version(
    server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module, "RETRY_SECONDS", (0.01,))
    script = Script([
        (PATH, listing([], "10")),
        (PATH, (500, {"kind": "Status", "code": 500, "message": "etcd"})),
        (PATH, ("stream", [{"type": "MODIFIED", "object": svc("web", "12")}], True)),
    ])  # fmt: skip
    sink = Recorder()
    watch = started(server(script), sink)
    sink.wait(lambda s: any(w == "put" for w, _ in s), "the event after the retry")
    t0 = time.monotonic()
    watch.stop()  # the stream is held open: stop cuts the read
    watch.join(5)
    assert time.monotonic() - t0 < 2
    script.release.set()
    watches = [q for p, q in script.requests if p == PATH and "watch" in q]
    assert [q["resourceVersion"] for q in watches] == ["10", "10"]
    assert [w for w, _ in sink.said] == ["listed", "put"]


# ---------------------------------------------------------------- the feed's side


class Scripted:
    """A KindWatch stand-in the test drives: what it reports is what the test says."""

    def __init__(self, kind: str, path: str, sink, **options: Any) -> None:
        self.kind, self.path, self.sink, self.options = kind, path, sink, options
        self.running = False

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False


class Kube:
    def __init__(self) -> None:
        self.watches: list[Scripted] = []

    def watch(self, kind: str, path: str, sink, **options: Any) -> Scripted:
        self.watches.append(Scripted(kind, path, sink, **options))
        return self.watches[-1]


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_the_feed_is_synced_once_every_namespace_is_listed_and_tells_owners() -> None:
    kube = Kube()
    told: list[tuple[str, str]] = []
    gone: list[tuple] = []
    feed = Feed(
        kube, Store(), ("Service",), {"Service": "a=b"},  # type: ignore[arg-type]
        namespaces=[NS, "other"], on_gone=lambda *a: gone.append(a),
        own=("Service",), on_change=lambda ns, owner: told.append((ns, owner)),
    )  # fmt: skip
    feed.start()
    shop, other = kube.watches
    assert shop.path == PATH and shop.options["selector"] == "a=b" and shop.running
    assert shop.options["accept"](NS) and not shop.options["accept"]("other")
    shop.sink("page", [svc("web", "5"), svc("web-canary", "6")])
    shop.sink("listed", ({(NS, "web"), (NS, "web-canary")}, "10", True))
    await settle()
    assert not feed.synced("Service"), "one namespace still to list"
    assert told == [], "the first LIST tells no one: the routes' own events start them"
    other.sink("listed", (set(), "10", True))
    await settle()
    assert feed.synced("Service")
    # Our own write's answer came first (write-through); its watch event is no news.
    feed.remember(svc("web", "11"))
    shop.sink("put", svc("web", "11"))
    await settle()
    assert told == []
    shop.sink("put", svc("web", "12"))  # a hand edit
    shop.sink("deleted", svc("web-canary", "13"))
    await settle()
    assert told == [(NS, "web"), (NS, "web")]
    assert feed.store.get("Service", NS, "web-canary") is None
    # After a gap: the re-list's pages tell owners of what changed; what it lacks is gone.
    feed.remember(svc("web-preview", "14"))
    shop.sink("page", [svc("web", "20", owner="api")])
    shop.sink("listed", ({(NS, "web")}, "21", False))
    await settle()
    assert told[-1] == (NS, "api")
    assert gone == [("Service", (NS, "web-preview"), "web")]
    await feed.stop()
    assert not shop.running and not other.running


async def test_a_watch_thread_waits_until_its_list_page_is_put() -> None:
    """Backpressure: a loop busy elsewhere must not let a watch queue a whole LIST."""
    kube = Kube()
    feed = Feed(
        kube, Store(), ("Service",), {}, namespaces=[NS], own=("Service",),  # type: ignore[arg-type]
    )  # fmt: skip
    feed.start()
    (watch,) = kube.watches
    thread = threading.Thread(target=watch.sink, args=("page", [svc("web", "5")]))
    thread.start()
    thread.join(0.5)  # the loop is held here: the page cannot be put yet
    assert thread.is_alive(), "the watch thread went on before its page was put"
    await asyncio.wait_for(asyncio.to_thread(thread.join), 10)  # the loop is free again
    assert feed.store.get("Service", NS, "web") is not None
    await feed.stop()


async def test_a_kind_reported_missing_or_forbidden_is_known_as_empty() -> None:
    kube = Kube()
    feed = Feed(
        kube, Store(), ("HTTPRoute", "Service"), {},  # type: ignore[arg-type]
        own=("HTTPRoute", "Service"), crds={"HTTPRoute": "httproutes.gateway.networking.k8s.io"},
    )  # fmt: skip
    feed.start()
    routes, services = kube.watches
    assert routes.options["crd"] == "httproutes.gateway.networking.k8s.io"
    assert services.options["crd"] is None
    assert routes.path == "/apis/gateway.networking.k8s.io/v1/httproutes", "cluster-wide"
    routes.sink("missing", None)
    services.sink("forbidden", "services is forbidden")
    await asyncio.wait_for(feed.wait(("HTTPRoute", "Service")), 5)
    assert await feed.list_children(NS, "web", ("HTTPRoute", "Service")) == {
        "HTTPRoute": [], "Service": [],
    }  # fmt: skip
    await feed.stop()


def test_streams_that_end_at_once_are_retried_after_a_backoff(server) -> None:
    """A proxy that closes every watch at once would otherwise be asked again at once,
    in a loop: each short stream counts as a failure."""
    script = Script([(PATH, listing([], "10"))] + [(PATH, ("stream", [], False))] * 20)
    sink = Recorder()
    watch = started(server(script), sink)
    sink.wait(lambda s: any(w == "listed" for w, _ in s), "listed")
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline and len(script.requests) < 5:
        time.sleep(0.05)
    watch.stop()
    watch.join(5)
    watches = [q for p, q in script.requests if "watch" in q]
    assert 1 <= len(watches) <= 2, f"{len(watches)} watches in 1.5 s"
