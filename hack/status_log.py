"""Every status the API server stores for the ShadowRoutes of one namespace, in order.

A watch, not a poll: a poll sees the status at the instants it looks and misses the
versions written in between (a passing run overwritten by a failing one a second
later); a watch delivers each version the API server stores. Shared by the end-to-end
tests and the benchmarks.

    log = StatusLog(kubeconfig, namespace).start()
    ...
    log.latest("web")          # the newest status seen
    log.seen("web")            # every status seen, oldest first
    log.stop()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

GROUP, VERSION, PLURAL = "shadowroute.io", "v1alpha1", "shadowroutes"


class StatusLog:
    def __init__(self, kubeconfig: str, namespace: str) -> None:
        import kubernetes

        self.kubernetes = kubernetes
        api = kubernetes.config.new_client_from_config(config_file=kubeconfig)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.ns = namespace
        self._seen: dict[str, list[dict[str, Any]]] = {}
        self._versions: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="status-log")
        self.error: BaseException | None = None

    def start(self) -> StatusLog:
        """List first (what is there now is recorded), then watch from that version."""
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL)
        for item in listed.get("items") or []:
            self._record(item)
        self._rv = listed["metadata"]["resourceVersion"]
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _record(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta["name"], meta["resourceVersion"])
        with self._changed:
            if key in self._versions:
                return
            self._versions.add(key)
            self._seen.setdefault(meta["name"], []).append(obj.get("status") or {})
            self._changed.notify_all()

    def _run(self) -> None:
        ApiException = self.kubernetes.client.exceptions.ApiException
        failures = 0
        while not self._stop.is_set():
            watch = self.kubernetes.watch.Watch()
            try:
                for event in watch.stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.ns,
                    PLURAL,
                    resource_version=self._rv,
                    timeout_seconds=5,
                ):
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch error: {event['object']}")
                    obj = event["object"]
                    self._rv = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(obj)
                    if self._stop.is_set():
                        break
                failures = 0
            except (ApiException, RuntimeError) as exc:
                # 410 Gone would mean versions were missed: say so, never paper over it.
                status = getattr(exc, "status", None)
                if status == 410 or "410" in str(exc) or failures >= 10:
                    with self._changed:
                        self.error = exc
                        self._changed.notify_all()
                    return
                failures += 1
                time.sleep(0.5)
            except OSError:
                failures += 1
                time.sleep(0.5)
            finally:
                watch.stop()

    def seen(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._seen.get(name, []))

    def latest(self, name: str) -> dict[str, Any]:
        with self._lock:
            got = self._seen.get(name)
            return got[-1] if got else {}

    def wait(
        self, done: Callable[[dict[str, list[dict[str, Any]]]], bool], timeout: float, what: str
    ) -> dict[str, list[dict[str, Any]]]:
        """Wait until done(every status seen, by name) holds; woken by each new version."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self.error is not None:
                    raise RuntimeError(f"the status watch stopped: {self.error}")
                seen = {name: list(seen) for name, seen in self._seen.items()}
                if done(seen):
                    return seen
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
                self._changed.wait(min(left, 1.0))
