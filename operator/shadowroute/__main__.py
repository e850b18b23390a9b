"""`python -m shadowroute` / `shadowroute-operator`: run the operator against the
cluster of the kubeconfig (or in-cluster), in all namespaces or the ones given."""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from .observability.logs import FORMATS, configure

log = logging.getLogger("shadowroute")
HEARTBEAT_SECONDS = 2.0
SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
EXIT_LOST_LEADERSHIP = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="shadowroute-operator", description=__doc__)
    parser.add_argument(
        "-n", "--namespace", action="append", default=[],
        help="watch this namespace (repeatable; glob patterns allowed); default: all",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=8080,
        help="port of /metrics, /healthz and /readyz (0: off); default 8080",
    )
    parser.add_argument("--metrics-address", default="0.0.0.0", help="address /metrics listens on")
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="text (default) or json: one JSON object per line for log pipelines",
    )
    parser.add_argument(
        "--liveness-timeout",
        type=float,
        default=30.0,
        help="/healthz fails when the event loop has not run for this many seconds",
    )
    parser.add_argument(
        "--no-cluster-scope",
        action="store_true",
        help="never read cluster-scoped resources (namespaces, CRDs), for RBAC made of "
        "namespaced Roles only: namespaces must be exact names, and the CRD must be "
        "installed before the operator starts",
    )
    lease = parser.add_argument_group(
        "leader election", "for more than one replica: only the holder of a Lease reconciles"
    )
    lease.add_argument("--leader-elect", action="store_true", help="elect a leader first")
    lease.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE", ""),
        help="namespace of the Lease; default $POD_NAMESPACE, or the pod's own namespace",
    )
    lease.add_argument(
        "--leader-election-id", default="shadowroute-operator", help="name of the Lease"
    )
    lease.add_argument(
        "--shards",
        type=int,
        default=1,
        help="more than 1: shard the routes over the replicas, one Lease per shard "
        "(named after --leader-election-id), instead of electing one leader; default 1",
    )
    lease.add_argument("--lease-duration", type=float, default=15.0, help="seconds; default 15")
    lease.add_argument("--renew-deadline", type=float, default=10.0, help="seconds; default 10")
    lease.add_argument("--retry-period", type=float, default=2.0, help="seconds; default 2")
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=None,
        help="reconcile every route at least this often, a safety net (it reads nothing: "
        "the watch index answers); at least 1; default $SHADOWROUTE_RESYNC_SECONDS, else 300",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    _check_environment(parser)
    if args.shards < 1:
        parser.error(f"--shards must be at least 1, got {args.shards}")
    if args.shards > 1 and args.leader_elect:
        parser.error("--shards > 1 and --leader-elect exclude each other: a shard is a lease")
    if args.leader_elect or args.shards > 1:
        if not args.leader_election_namespace:
            try:
                args.leader_election_namespace = Path(SA_NAMESPACE).read_text().strip()
            except OSError:
                parser.error(
                    "--leader-elect and --shards need --leader-election-namespace "
                    "(or $POD_NAMESPACE)"
                )
        if not 0 < args.retry_period < args.renew_deadline < args.lease_duration:
            parser.error("leader election needs retry period < renew deadline < lease duration")
    if args.resync_seconds is not None and not args.resync_seconds >= 1:
        parser.error(f"--resync-seconds must be at least 1, got {args.resync_seconds}")
    if args.no_cluster_scope:
        if not args.namespace:
            parser.error(
                "--no-cluster-scope needs --namespace: watching all namespaces is cluster-scoped"
            )
        globs = [ns for ns in args.namespace if any(c in ns for c in "*?[!")]
        if globs:
            parser.error(
                f"--no-cluster-scope needs exact namespace names, not {globs}: a "
                "pattern is resolved by listing namespaces, which is cluster-scoped"
            )
    return args


def _check_environment(parser: argparse.ArgumentParser) -> None:
    """$SHADOWROUTE_TRACEMALLOC, refused at start like a bad flag. (The scheduler's
    setting is checked in main, after tracemalloc starts: importing the scheduler
    imports the heavy modules tracemalloc is there to see.)"""
    from .observability.memory import frames_from_env

    try:
        frames_from_env(os.environ)
    except ValueError as exc:
        parser.error(str(exc))


async def _heartbeat() -> None:
    """Tell /healthz the event loop still runs: a blocked loop reconciles nothing.
    Now and then, give the heap's free pages back (observability/memory.trim), in a
    thread: it takes glibc's locks, never the loop."""
    from .observability import memory
    from .observability.metrics import health

    last_trim = time.monotonic()
    while True:
        health.beat()
        if time.monotonic() - last_trim >= memory.TRIM_EVERY_SECONDS:
            last_trim = time.monotonic()
            await asyncio.to_thread(memory.trim)
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def _run(args: argparse.Namespace) -> int:
    """Run kopf; with --leader-elect, only while holding the Lease.

    Shutdown (SIGTERM, SIGINT): kopf stops its watches, then its cleanup handler
    (handlers.py) stops the reconciles, hands the Lease over (released at once, so a
    stand-by need not wait for it to expire), and gives webhook deliveries under way a
    bounded moment. No stop flag is passed to kopf: kopf would leave the task waiting on
    it pending after a signal, and then wait 5 s for that "hung" task before exiting.
    Until kopf has started (standing by, starting up) a signal is handled here, and
    ends the process as cleanly (exit code 0)."""
    import kopf

    from .handlers import SERVICES, SHARDS
    from .kube.client import load_endpoint
    from .kube.lease import LeaderElector, LeaseConfig, client_api
    from .kube.shards import ShardConfig, ShardSet
    from .observability.metrics import LEADER, SHARD_HELD, SHARDS_CONFIGURED, health

    settings = kopf.OperatorSettings()
    # kopf lists and watches CRDs (to notice resources appearing) and, for namespace
    # patterns, namespaces; a namespaced Role cannot grant either. Without the scan it
    # takes the exact namespaces given and the resources discovered at start.
    settings.scanning.disabled = args.no_cluster_scope
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    operator: asyncio.Task[None] | None = None

    def on_signal() -> None:  # kopf replaces this handler with its own once it starts
        signalled.set()
        if operator is not None:
            operator.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    beat = asyncio.create_task(_heartbeat())
    elector = None
    shards: ShardSet | None = None
    SHARDS_CONFIGURED.set(args.shards)
    identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    lease: dict[str, Any] = {  # the Lease (or the shards' Lease set) and its timings
        "namespace": args.leader_election_namespace,
        "name": args.leader_election_id,
        "identity": identity,
        "lease_duration": args.lease_duration,
        "renew_deadline": args.renew_deadline,
        "retry_period": args.retry_period,
    }
    memo = kopf.Memo()
    try:
        memo["namespaces"] = list(args.namespace)  # handlers.NAMESPACES: what the index lists
        memo["resync"] = args.resync_seconds  # handlers.RESYNC (None: the environment's)
        holding: asyncio.Task[None] | None = None
        if args.shards > 1:
            shards = ShardSet(
                ShardConfig(shards=args.shards, **lease),
                client_api(load_endpoint()),
                on_change=lambda shard, held: SHARD_HELD.labels(str(shard)).set(1 if held else 0),
            )
            LEADER.set(0)  # no single leader: shadowroute_shard_held says what it holds
            memo[SHARDS] = shards
            holding = asyncio.create_task(shards.run())
            memo["hand_over"] = functools.partial(_hand_over_shards, shards, holding)
        elif args.leader_elect:
            elector = LeaderElector(
                LeaseConfig(**lease),
                client_api(load_endpoint()),
                on_change=lambda leading: LEADER.set(1 if leading else 0),
            )
            LEADER.set(0)
            health.ready.set()  # a candidate standing by is a healthy, ready replica
            if not await _unless(signalled, elector.acquire()):
                log.info("stopped while standing by")
                return 0
            holding = asyncio.create_task(elector.hold())
            memo["hand_over"] = functools.partial(_hand_over, elector, holding)
        else:
            LEADER.set(1)
        if signalled.is_set():
            return 0
        operator = asyncio.create_task(
            kopf.operator(
                settings=settings,
                # kopf's own peering only pauses operators, it elects nobody: the Lease
                # above (--leader-elect) decides who runs.
                standalone=True,
                clusterwide=not args.namespace,
                namespaces=args.namespace,
                ready_flag=None if elector else health.ready,  # /readyz: started
                memo=memo,
            )
        )
        waiting = {operator} if holding is None else {operator, holding}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if shards is not None and holding is not None and holding.done():
            if not holding.cancelled():
                # The shard rounds ended: a lost shard's reconciles would not stop in
                # time (ShardLost), or the rounds failed. Nobody renews the shards
                # still held: stop everything now, and restart as a candidate.
                log.error("%s; exiting", holding.exception() or "the shard rounds ended")
                operator.cancel()
                await asyncio.wait({operator}, timeout=args.renew_deadline)
                return EXIT_LOST_LEADERSHIP
        elif holding is not None and holding.done() and not holding.cancelled():
            # Lost: stop reconciling now, and exit so that the pod restarts as a candidate.
            operator.cancel()
            await asyncio.wait({operator}, timeout=args.renew_deadline)
            return EXIT_LOST_LEADERSHIP
        try:
            await operator
        except asyncio.CancelledError:
            if not signalled.is_set():
                raise
        return 0
    finally:
        if elector is not None:
            if holding is not None:
                holding.cancel()
            await elector.release()
        if shards is not None and holding is not None:
            services = memo.get(SERVICES)
            if services is not None:  # after a lost shard: kopf's cleanup did not run
                await services.scheduler.stop()
            await _hand_over_shards(shards, holding)
        beat.cancel()


async def _unless(stop: asyncio.Event, work: Coroutine[Any, Any, None]) -> bool:
    """Run work until done (True) or until stop is set (False: work cancelled)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopping):
        pending.cancel()
    await asyncio.gather(task, stopping, return_exceptions=True)
    if task.cancelled():
        return False
    task.result()
    return True


async def _hand_over(elector: Any, holding: asyncio.Task[None]) -> None:
    """Nothing reconciles any more: stop renewing, release the Lease."""
    holding.cancel()
    await asyncio.gather(holding, return_exceptions=True)
    await elector.release()


def keep_out_the_kubernetes_client() -> None:
    """kopf imports the kubernetes client whenever it is installed (a dev or CI venv
    has it for the tests), only to recognise that client's model objects, which the
    operator never hands it: 33 MiB of resident memory for nothing. Refused here, kopf
    works with plain dicts, its own API client and our login handler (handlers.py)."""
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]


async def _hand_over_shards(shards: Any, holding: asyncio.Task[None]) -> None:
    """Nothing reconciles any more: stop the shard rounds, release the shards and
    delete the member Lease (once: at shutdown, or on the way out after a failure)."""
    holding.cancel()
    await asyncio.gather(holding, return_exceptions=True)
    if not shards.stopped:
        await shards.release()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Before kopf, aiohttp and the models are imported: their allocations
    # are what /debug/memory is for (observability/memory.py; off unless asked).
    from .observability.memory import limit_arenas, start_from_env

    tracing = start_from_env(os.environ)
    limit_arenas()  # before any thread starts
    configure(args.log_format, args.verbose)
    keep_out_the_kubernetes_client()

    from . import __version__, handlers  # noqa: F401 - registers the handlers
    from .scheduler import resync_seconds

    try:
        resync_seconds(os.environ)
    except ValueError as exc:
        print(f"shadowroute-operator: error: {exc}", file=sys.stderr)
        return 2
    from .observability.metrics import health, serve

    health.stale_after = args.liveness_timeout
    serve(args.metrics_port, args.metrics_address)
    if tracing:
        log.info("tracemalloc on: /debug/memory answers the top allocation sites")
    log.info(
        "shadowroute %s starting; watching %s%s",
        __version__,
        ", ".join(args.namespace) if args.namespace else "all namespaces",
        f"; {args.shards} shards on leases {args.leader_election_namespace}/"
        f"{args.leader_election_id}-shard-*"
        if args.shards > 1
        else f"; leader election on lease {args.leader_election_namespace}/"
        f"{args.leader_election_id}"
        if args.leader_elect
        else "",
    )
    code = asyncio.run(_run(args))
    # Everything is stopped and closed. The interpreter's last garbage collections would
    # walk the whole heap (kopf, pydantic's models) to free nothing that
    # matters to a process about to end: 0.7-0.9 s of a shutdown otherwise done in 20 ms
    # on a 2-core machine. Frozen objects are left out of them; atexit still runs.
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(main())
