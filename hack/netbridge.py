"""The local cluster's pod network: a network namespace of its own, and the only ways
in and out of it, over Unix sockets.

Pods that are real processes (hack/test_kubelet.py) and the data plane (Envoy Gateway
and its Envoy) live inside a network namespace created for the cluster, where the only
link is `lo` and 10.244.0.0/16 is a local range. A packet to a pod address can never
leave it: there is no other interface and no route out. The control plane,
Prometheus, the operator and the user's shell stay on host loopback. This program
joins the two sides; it runs twice:

    inside   in the namespace (started by `unshare --net`, so it also holds it open):
             brings `lo` up with 10.244.0.1/16, serves inside.sock (each connection
             names the address it wants, "HOST PORT\\n", then is a plain byte pipe; only
             127.0.0.0/8, the pod range and the Service range 10.96.0.0/16 (ClusterIPs,
             served by hack/kube_proxy.py) are reachable), and listens on
             127.0.0.1:<api port> there, piping each connection to outside.sock, so
             that processes inside reach the API server at the same URL as outside.
    outside  on the host: serves outside.sock (to the API server, nothing else), and
             listens on host loopback for the gateway (a pipe to the Envoy listener
             inside) and for an HTTP forward proxy into the pod and Service ranges
             (Prometheus scrapes pods through it with `proxy_url`, as tests may); and
             serves egress.sock, the API server's egress (EgressSelectorConfiguration
             `cluster`, HTTPConnect over a Unix socket: services/proxy, pods/proxy,
             kubelet connections, webhooks): `CONNECT host:port` to a pod or Service
             address is dialled inside, to loopback on the host (kwok's fake kubelets
             and whatever the host serves there: what the API server reached before
             it had an egress; 127.0.0.1 inside is another place), anything else is
             refused with 502 (see egress_route).

Nothing here inspects or changes a byte of what it carries, except the CONNECT line
it answers and the forward proxy's request line (absolute URL -> path) and its
Connection header (close: one upstream per request, so a client that pools proxy
connections never reaches the wrong pod).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
from pathlib import Path

POD_NETWORK = ipaddress.ip_network("10.244.0.0/16")
SERVICE_NETWORK = ipaddress.ip_network("10.96.0.0/16")  # ClusterIPs (hack/kube_proxy.py)
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
INSIDE_ADDRESS = "10.244.0.1/16"
INSIDE_SOCKET = "inside.sock"
OUTSIDE_SOCKET = "outside.sock"
EGRESS_SOCKET = "egress.sock"
READY_FILE = "ready"
HEAD_LIMIT = 64 * 1024


def reachable_inside(host: str) -> bool:
    """Only loopback, the pod range and the Service range: the inside agent never dials
    anything else."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address in POD_NETWORK or address in SERVICE_NETWORK or address in LOOPBACK


def egress_route(host: str) -> str:
    """Where the API server's `cluster` egress (an HTTP CONNECT) to `host` goes:
    "inside" for pod and Service addresses (dialled in the pod network), "host" for
    loopback (kwok's fake kubelets, anything the host serves on loopback: that is what
    the API server reached before it had an egress, and 127.0.0.1 inside the namespace
    is another place). Anything else is refused (ValueError): no other address is a
    cluster address here, and a host process never dials another 10.x address."""
    if host == "localhost":
        return "host"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError as exc:
        raise ValueError(f"{host!r} is not an address of the cluster") from exc
    if address in POD_NETWORK or address in SERVICE_NETWORK:
        return "inside"
    if address.is_loopback:
        return "host"
    raise ValueError(f"{host} is not an address of the cluster")


def parse_connect(head: bytes) -> tuple[str, int]:
    """(host, port) of `CONNECT host:port HTTP/1.1`; ValueError for anything else."""
    first = head.decode("latin-1").split("\r\n", 1)[0].split(" ")
    if len(first) != 3 or first[0] != "CONNECT":
        raise ValueError("only CONNECT")
    host, sep, port = first[1].rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"bad CONNECT target {first[1]!r}")
    return host.strip("[]"), int(port)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


async def join(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Pipe both ways until both directions ended, then close both."""
    try:
        await asyncio.gather(pipe(a[0], b[1]), pipe(b[0], a[1]))
    except asyncio.CancelledError:
        pass  # the bridge is stopping: close both ends
    finally:
        for _, w in (a, b):
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()


def relay_to(connect):
    """A connection handler that pipes each client to a fresh `connect()` upstream, and
    hangs up on the client when the upstream cannot be reached."""

    async def handle(reader, writer):
        try:
            upstream = await connect()
        except OSError:
            writer.close()
            return
        await join((reader, writer), upstream)

    return handle


async def dial_inside(sockets: Path, host: str, port: int):
    """A connection to HOST:PORT inside the namespace, through the inside agent."""
    reader, writer = await asyncio.open_unix_connection(str(sockets / INSIDE_SOCKET))
    writer.write(f"{host} {port}\n".encode())
    await writer.drain()
    return reader, writer


# --------------------------------------------------------------------------- inside


def configure_namespace() -> None:
    """lo up with the pod range on it, after making sure this is a fresh namespace:
    never touch an interface of the host."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    names = [line.split(":")[1].strip() for line in links.stdout.splitlines() if ":" in line]
    if names != ["lo"]:
        raise SystemExit(f"netbridge inside: not a fresh network namespace (links {names})")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", INSIDE_ADDRESS, "dev", "lo"], check=True)


async def serve_inside(sockets: Path, api_port: int, on_ready) -> None:
    async def on_dial(reader, writer):
        try:
            line = (await reader.readline()).decode().split()
            host, port = line[0], int(line[1])
            if not reachable_inside(host):
                raise ValueError(f"refused: {host}")
            upstream = await asyncio.open_connection(host, port)
        except (ValueError, IndexError, OSError):
            writer.close()
            return
        await join((reader, writer), upstream)

    def to_api():
        return asyncio.open_unix_connection(str(sockets / OUTSIDE_SOCKET))

    (sockets / INSIDE_SOCKET).unlink(missing_ok=True)
    dial = await asyncio.start_unix_server(on_dial, str(sockets / INSIDE_SOCKET))
    api = await asyncio.start_server(relay_to(to_api), "127.0.0.1", api_port)
    await serve_until_stopped([dial, api], on_ready)


# --------------------------------------------------------------------------- outside


async def serve_outside(
    sockets: Path, api_port: int, gateway: str, proxy_port: int, on_ready
) -> None:
    gateway_port, inner_port = (int(p) for p in gateway.split(":"))

    def to_api():
        return asyncio.open_connection("127.0.0.1", api_port)

    def to_gateway():
        return dial_inside(sockets, "127.0.0.1", inner_port)

    (sockets / OUTSIDE_SOCKET).unlink(missing_ok=True)
    (sockets / EGRESS_SOCKET).unlink(missing_ok=True)
    api = await asyncio.start_unix_server(relay_to(to_api), str(sockets / OUTSIDE_SOCKET))
    gw = await asyncio.start_server(relay_to(to_gateway), "127.0.0.1", gateway_port)
    proxy = await asyncio.start_server(
        lambda r, w: forward_proxy(sockets, r, w), "127.0.0.1", proxy_port
    )
    egress = await asyncio.start_unix_server(
        lambda r, w: connect_proxy(sockets, r, w), str(sockets / EGRESS_SOCKET)
    )
    await serve_until_stopped([api, gw, proxy, egress], on_ready)


async def connect_proxy(sockets: Path, reader, writer) -> None:
    """The API server's egress (EgressSelectorConfiguration `cluster`, HTTPConnect over
    a Unix socket): `CONNECT host:port`, answered 200 and then a byte pipe, to the pod
    network for pod and Service addresses and to host loopback for loopback ones
    (egress_route); 502 when refused or unreachable."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > HEAD_LIMIT:
            raise ValueError("head too long")
        host, port = parse_connect(head)
        if egress_route(host) == "inside":
            upstream = await dial_inside(sockets, host, port)
        else:
            upstream = await asyncio.open_connection(
                "127.0.0.1" if host == "localhost" else host, port
            )
    except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as exc:
        await refuse(writer, exc)
        return
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await join((reader, writer), upstream)


async def refuse(writer, exc: Exception) -> None:
    body = f"netbridge: {exc}\n".encode()
    writer.write(
        b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Type: text/plain\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(Exception):
        await writer.drain()
    writer.close()


def rewrite_head(head: bytes) -> tuple[str, int, bytes]:
    """(host, port, request head for the origin server) from a proxy request head.

    `GET http://10.244.128.3:9898/metrics HTTP/1.1` becomes `GET /metrics HTTP/1.1`,
    and Connection is set to close. Raises ValueError for anything else."""
    lines = head.decode("latin-1").split("\r\n")
    method, url, version = lines[0].split(" ")
    if not url.startswith("http://"):
        raise ValueError("only absolute http:// URLs")
    rest = url[len("http://") :]
    authority, _, path = rest.partition("/")
    host, _, port = authority.rpartition(":")
    if not host:
        host, port = authority, "80"
    kept = [h for h in lines[1:] if h and not h.lower().startswith(("connection:", "proxy-"))]
    out = "\r\n".join([f"{method} /{path} {version}", *kept, "Connection: close", "", ""])
    return host, int(port), out.encode("latin-1")


async def forward_proxy(sockets: Path, reader, writer) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > HEAD_LIMIT:
            raise ValueError("head too long")
        host, port, rewritten = rewrite_head(head)
        if not reachable_inside(host):
            raise ValueError(f"{host} is not in the pod network")
        upstream = await dial_inside(sockets, host, port)
    except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as exc:
        await refuse(writer, exc)
        return
    upstream[1].write(rewritten)
    await join((reader, writer), upstream)


# --------------------------------------------------------------------------- main


async def serve_until_stopped(servers: list[asyncio.Server], on_ready) -> None:
    """Until SIGTERM: then stop listening and drop open pipes at once (waiting for them
    would wait for every client of the API server to hang up first)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    on_ready()
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("side", choices=["inside", "outside"])
    parser.add_argument("--sockets", type=Path, required=True, help="folder of the two sockets")
    parser.add_argument("--api-port", type=int, required=True)
    parser.add_argument("--gateway", help="outside: HOSTPORT:INNERPORT of the gateway listener")
    parser.add_argument("--proxy-port", type=int, help="outside: port of the forward proxy")
    args = parser.parse_args(argv)
    args.sockets.mkdir(parents=True, exist_ok=True)
    ready = args.sockets / f"{args.side}.{READY_FILE}"

    def mark_ready() -> None:
        ready.write_text(str(os.getpid()))

    if args.side == "inside":
        configure_namespace()
        run = serve_inside(args.sockets, args.api_port, mark_ready)
    else:
        if not args.gateway or not args.proxy_port:
            parser.error("outside needs --gateway and --proxy-port")
        run = serve_outside(args.sockets, args.api_port, args.gateway, args.proxy_port, mark_ready)
    try:
        asyncio.run(run)
    finally:
        ready.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
