"""A userspace kube-proxy for the test world: Service ClusterIPs that answer inside
the pod network namespace.

    python hack/kube_proxy.py --kubeconfig K [--api-port P]   # inside the pod network

It runs inside the cluster's network namespace (hack/netbridge.py) as its own process,
next to the test kubelet, as kube-proxy runs next to a kubelet on a node. It watches
Services and EndpointSlices through the API server (at the same 127.0.0.1:<port> as
on the host: the bridge's relay), and for every TCP port of every Service with a
ClusterIP (not headless, not ExternalName):

- makes the ClusterIP local in the namespace (`ip addr add IP/32 dev lo`, only after
  checking that this is the pod network: only `lo`, holding the bridge's 10.244.0.1)
  and listens on ClusterIP:port;
- relays each accepted connection to one ready endpoint of the Service port (the
  EndpointSlices labelled kubernetes.io/service-name=<name>, endpoints whose
  conditions.ready is not false, the slice port of the same name as the Service port),
  chosen round-robin per connection, so successive connections reach every ready pod;
- closes the client's connection when there is no ready endpoint or the endpoint
  refuses (as kube-proxy's reject does); a relay ends when both directions ended;
- removes the listener, and the address when no port of it is left, when the Service
  goes; lists both kinds again after a watch error (410 Gone included).

It only dials pod addresses (10.244.0.0/16), with one exception: the `kubernetes`
Service of `default` (10.96.0.1:443, which has no endpoints here: the API server
advertises loopback) is relayed to 127.0.0.1:<api port> in the namespace, the bridge's
way to the API server, so an in-cluster client reaches the API server by its Service
address as in a real cluster (its serving certificate holds 10.96.0.1).

What it does not do: UDP and SCTP ports, session affinity, NodePorts, external IPs,
load balancer addresses, topology hints, traffic policies; a Service port the data
plane already holds on every address of the namespace (Envoy Gateway's 8080, 8081,
9443, 18000, 18002, 19001) cannot be listened on and is logged as such.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import resource
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netbridge import POD_NETWORK, join

SERVICE_NETWORK = ipaddress.ip_network("10.96.0.0/16")
BRIDGE_ADDRESS = "10.244.0.1"
MASTER = ("default", "kubernetes")
CONNECT_TIMEOUT = 5.0


def log(msg: str) -> None:
    print(f"{dt.datetime.now(dt.UTC).isoformat(timespec='milliseconds')} {msg}", flush=True)


# --------------------------------------------------------------------------- the pure parts


@dataclass(frozen=True)
class ServicePort:
    namespace: str
    service: str
    port_name: str  # "" for the one unnamed port

    def __str__(self) -> str:
        return f"{self.namespace}/{self.service}:{self.port_name or '-'}"


def listeners(services: list[dict]) -> dict[tuple[str, int], ServicePort]:
    """(ClusterIP, port) -> the Service port listening there, for every TCP port of every
    Service with an IPv4 ClusterIP in the Service range."""
    out: dict[tuple[str, int], ServicePort] = {}
    for service in services:
        spec = service.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None" or spec.get("type") == "ExternalName":
            continue
        try:
            if ipaddress.ip_address(ip) not in SERVICE_NETWORK:
                continue
        except ValueError:
            continue
        meta = service["metadata"]
        for p in spec.get("ports") or []:
            if (p.get("protocol") or "TCP") != "TCP":
                continue
            out[(ip, int(p["port"]))] = ServicePort(
                meta["namespace"], meta["name"], p.get("name") or ""
            )
    return out


def endpoints(slices: list[dict], port_name: str) -> list[tuple[str, int]]:
    """The ready endpoints (address, port) of a Service port in its EndpointSlices: the
    slice port of the same name, endpoints whose conditions.ready is not false (unset
    means ready), pod addresses only; sorted, without duplicates."""
    found: set[tuple[str, int]] = set()
    for s in slices:
        if s.get("addressType", "IPv4") != "IPv4":
            continue
        ports = [p for p in s.get("ports") or [] if (p.get("name") or "") == port_name]
        if not ports or ports[0].get("port") is None:
            continue
        if (ports[0].get("protocol") or "TCP") != "TCP":
            continue
        target = int(ports[0]["port"])
        for e in s.get("endpoints") or []:
            if (e.get("conditions") or {}).get("ready") is False:
                continue
            for address in (e.get("addresses") or [])[:1]:
                with contextlib.suppress(ValueError):
                    if ipaddress.ip_address(address) in POD_NETWORK:
                        found.add((address, target))
    return sorted(found)


class RoundRobin:
    """One counter per Service port: connection n goes to endpoint n mod count."""

    def __init__(self) -> None:
        self.next: dict[ServicePort, int] = {}

    def pick(self, key: ServicePort, choices: list[tuple[str, int]]) -> tuple[str, int] | None:
        if not choices:
            return None
        n = self.next.get(key, 0)
        self.next[key] = n + 1
        return choices[n % len(choices)]


# --------------------------------------------------------------------------- the proxy


def in_pod_network() -> bool:
    """Only `lo`, holding the bridge's address: the pod network, never the host."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    names = [line.split(":")[1].strip() for line in links.stdout.splitlines() if ":" in line]
    addrs = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True
    )
    return names == ["lo"] and f" {BRIDGE_ADDRESS}/" in addrs.stdout


def service_addresses() -> set[str]:
    """The Service addresses on `lo` now."""
    shown = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True
    )
    found = set()
    for line in shown.stdout.splitlines():
        words = line.split()
        if "inet" in words:
            ip = words[words.index("inet") + 1].split("/")[0]
            if ipaddress.ip_address(ip) in SERVICE_NETWORK:
                found.add(ip)
    return found


def ip_batch(commands: list[str]) -> None:
    if not commands:
        return
    done = subprocess.run(
        ["ip", "-force", "-batch", "-"],
        input="\n".join(commands) + "\n",
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        log(f"ip: {done.stderr.strip()[-300:]}")


class Proxy:
    def __init__(self, api_port: int | None) -> None:
        self.api_port = api_port
        self.services: dict[tuple[str, str], dict] = {}
        self.slices: dict[tuple[str, str], dict] = {}  # (namespace, slice name) -> slice
        self.by_service: dict[tuple[str, str], dict[str, dict]] = {}
        self.servers: dict[tuple[str, int], tuple[ServicePort, asyncio.Server]] = {}
        self.refused: dict[tuple[str, int], str] = {}  # cannot listen: why (logged once)
        self.addresses = service_addresses()  # a restart's predecessor's, to remove
        self.rr = RoundRobin()
        self.synced: set[str] = set()
        self.dirty = asyncio.Event()

    # --- state from the watches (on the loop)

    def replace(self, kind: str, items: list[dict]) -> None:
        if kind == "services":
            self.services = {_key(o): o for o in items}
            self.dirty.set()
        else:
            self.slices = {}
            self.by_service = {}
            for o in items:
                self._put_slice(o)
        self.synced.add(kind)
        self.dirty.set()

    def event(self, kind: str, type_: str, obj: dict) -> None:
        if kind == "services":
            if type_ == "DELETED":
                self.services.pop(_key(obj), None)
            else:
                self.services[_key(obj)] = obj
            self.dirty.set()
        elif type_ == "DELETED":
            old = self.slices.pop(_key(obj), None)
            if old is not None:
                self.by_service.get(_owner(old), {}).pop(old["metadata"]["name"], None)
        else:
            self._put_slice(obj)

    def _put_slice(self, obj: dict) -> None:
        old = self.slices.get(_key(obj))
        if old is not None:
            self.by_service.get(_owner(old), {}).pop(old["metadata"]["name"], None)
        self.slices[_key(obj)] = obj
        self.by_service.setdefault(_owner(obj), {})[obj["metadata"]["name"]] = obj

    def endpoints_of(self, key: ServicePort) -> list[tuple[str, int]]:
        if (key.namespace, key.service) == MASTER and self.api_port:
            return [("127.0.0.1", self.api_port)]
        slices = list(self.by_service.get((key.namespace, key.service), {}).values())
        return endpoints(slices, key.port_name)

    # --- listeners

    async def reconcile(self) -> None:
        wanted = listeners(list(self.services.values()))
        for where in [w for w in self.servers if self.servers[w][0] != wanted.get(w)]:
            key, server = self.servers.pop(where)
            server.close()
            log(f"{key}: stopped listening on {where[0]}:{where[1]}")
        for where in [w for w in self.refused if w not in wanted]:
            del self.refused[where]
        ips = {ip for ip, _ in wanted}
        ip_batch([f"address add {ip}/32 dev lo" for ip in sorted(ips - self.addresses)])
        for where, key in wanted.items():
            if where in self.servers:
                continue
            try:
                server = await self.listen(where, key)
            except OSError as exc:
                if self.refused.get(where) != str(exc):
                    log(f"{key}: cannot listen on {where[0]}:{where[1]}: {exc}")
                self.refused[where] = str(exc)
                continue
            self.refused.pop(where, None)
            self.servers[where] = (key, server)
            log(f"{key}: listening on {where[0]}:{where[1]}")
        gone = self.addresses - ips
        ip_batch([f"address del {ip}/32 dev lo" for ip in sorted(gone)])
        self.addresses = ips

    async def listen(self, where: tuple[str, int], key: ServicePort) -> asyncio.Server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Envoy holds 0.0.0.0:80 with SO_REUSEPORT: a listener on the exact
            # ClusterIP may share the port, and the kernel prefers the exact address.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(where)
        except OSError:
            sock.close()
            raise
        return await asyncio.start_server(
            lambda r, w: self.relay(key, r, w), sock=sock, backlog=1024
        )

    async def relay(self, key: ServicePort, reader, writer) -> None:
        target = self.rr.pick(key, self.endpoints_of(key))
        if target is None:
            writer.close()  # no ready endpoint: reject
            return
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(*target), CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            writer.close()
            return
        await join((reader, writer), upstream)

    async def run(self, on_ready: Callable[[], None], stop: asyncio.Event) -> None:
        ready = False
        while not stop.is_set():
            waiter = asyncio.ensure_future(self.dirty.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if stop.is_set():
                break
            self.dirty.clear()
            if self.synced >= {"services", "endpointslices"}:
                await self.reconcile()
                if not ready:
                    ready = True
                    on_ready()
        for _, server in self.servers.values():
            server.close()


def _key(obj: dict) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _owner(slice_: dict) -> tuple[str, str]:
    labels = slice_["metadata"].get("labels") or {}
    return slice_["metadata"]["namespace"], labels.get("kubernetes.io/service-name", "")


# --------------------------------------------------------------------------- watches


def watch_forever(kind: str, list_fn, post: Callable[..., None], stopping: threading.Event) -> None:
    """List, then watch from that version; after any error (410 Gone, a dropped
    connection, the API server restarting) list again. Runs in a thread; `post` hands
    each result to the event loop."""
    from kubernetes import watch

    while not stopping.is_set():
        try:
            doc = json.loads(list_fn(_preload_content=False).data)
            post("replace", kind, doc.get("items", []))
            version = doc["metadata"]["resourceVersion"]
            w = watch.Watch()
            for ev in w.stream(
                list_fn, resource_version=version, timeout_seconds=300, allow_watch_bookmarks=True
            ):
                if stopping.is_set():
                    return
                if ev["type"] == "ERROR":
                    raise RuntimeError(f"watch error: {ev['raw_object']}")
                if ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    post("event", kind, ev["type"], ev["raw_object"])
        except Exception as exc:
            if not stopping.is_set():
                log(f"{kind}: watch ended: {exc!r}; listing again")
                stopping.wait(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument(
        "--api-port", type=int, help="where the kubernetes Service leads (127.0.0.1:PORT)"
    )
    args = parser.parse_args(argv)
    if not in_pod_network():
        raise SystemExit("kube-proxy: not in the pod network namespace (see hack/netbridge.py)")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    from kubernetes import client, config

    api = config.new_client_from_config(config_file=args.kubeconfig)
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)

    async def amain() -> None:
        loop = asyncio.get_running_loop()
        proxy = Proxy(args.api_port)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        stopping = threading.Event()

        def post(what: str, *a) -> None:
            handler = proxy.replace if what == "replace" else proxy.event
            loop.call_soon_threadsafe(handler, *a)

        for kind, fn in (
            ("services", core.list_service_for_all_namespaces),
            ("endpointslices", discovery.list_endpoint_slice_for_all_namespaces),
        ):
            threading.Thread(
                target=watch_forever, args=(kind, fn, post, stopping), daemon=True, name=kind
            ).start()
        await proxy.run(lambda: log("kube-proxy running"), stop)
        stopping.set()
        log("kube-proxy stopped")

    asyncio.run(amain())
    return 0


if __name__ == "__main__":
    sys.exit(main())
