"""kopf wiring only: watch events become reconcile triggers.

Only event handlers are used, never kopf's change-detecting handlers: those store
their progress in annotations and finalizers on the object, which would be writes on
every change and would fight GitOps tools. Our progress lives in `.status`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf

# kopf's own namespace matching, so that the index's LISTs keep what kopf watches.
from kopf._cogs.structs.references import match_namespace

from .api.models import GROUP, PLURAL, VERSION
from .kube.apiserver import Endpoint
from .kube.client import Kube, load_endpoint
from .kube.feed import SHADOWROUTE, Feed
from .kube.shards import ShardSet
from .kube.watch import LIST_PAGE
from .scheduler import Scheduler
from .services import Services

log = logging.getLogger(__name__)

DELIVERY_GRACE_SECONDS = 5.0
SERVICES = "services"
"""The memo key of the operator's Services (services.py), set at startup."""
SHARDS = "shards"
"""The memo key of the ShardSet (kube/shards.py), set by __main__ with --shards > 1."""


def _connect(shards: ShardSet, scheduler: Scheduler) -> None:
    """A shard acquired: reconcile every route of it seen so far. A shard lost or
    handed over: stop its routes' reconciles and timers, and wait for them."""

    def of(shard: int) -> Callable[[str, str], bool]:
        return lambda namespace, name: shards.shard(namespace, name) == shard

    async def acquired(shard: int) -> None:
        woken = scheduler.wake(of(shard))
        log.info("shard %d: reconciling its %d known routes", shard, woken)

    async def lost(shard: int) -> None:
        await scheduler.drop(of(shard))

    shards.listen(acquired, lost)


NAMESPACES = "namespaces"
"""The memo key of the namespaces (patterns) the operator watches, set by __main__."""
RESYNC = "resync"
"""The memo key of the resync period in seconds, set by __main__."""


def scheduler(memo: kopf.Memo) -> Scheduler:
    services: Services = memo[SERVICES]
    return services.scheduler


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf's watches read the kubeconfig (or the service account) exactly as the
    operator's own client does (kube/apiserver.py). kopf asks again after a 401."""
    return connection_info(load_endpoint())


def connection_info(endpoint: Endpoint) -> kopf.ConnectionInfo:
    scheme, _, token = endpoint.auth_headers().get("Authorization", "").partition(" ")
    return kopf.ConnectionInfo(
        server=endpoint.server,
        ca_data=endpoint.ca_pem,
        insecure=endpoint.insecure,
        scheme=scheme or None,
        token=token or None,
        certificate_data=endpoint.cert_pem,
        private_key_data=endpoint.key_pem,
        default_namespace=endpoint.namespace,
        proxy_url=endpoint.proxy,
    )


def feed(memo: kopf.Memo) -> Feed:
    services: Services = memo[SERVICES]
    return services.feed


def _scope(patterns: list[str]) -> tuple[list[str], Callable[[str], bool] | None]:
    """The exact namespaces to list in, or (for patterns, or none: all namespaces) a
    cluster-wide LIST and which namespaces of it kopf watches (kopf's own matching)."""
    if patterns and not any(c in p for p in patterns for c in "*?[!,"):
        return patterns, None
    if not patterns:
        return [], None
    return [], lambda ns: any(match_namespace(ns, p) for p in patterns)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Build the operator-wide services into the memo (kopf copies the memo into every
    resource's handlers once startup is done)."""
    shards: ShardSet | None = memo.get(SHARDS)
    namespaces, watched = _scope(list(memo.get(NAMESPACES) or []))
    services = Services.build(
        Kube(), namespaces, watched, memo.get(RESYNC), owns=shards.owns if shards else None
    )
    memo[SERVICES] = services
    if shards is not None:
        _connect(shards, services.scheduler)
    services.feed.start()  # one LIST per kind; reconciles wait for the kinds they read
    settings.posting.enabled = False  # our Events are written by kube/, not kopf's logger
    # kopf logs every handled watch event at INFO ("Handler ... succeeded"): at one
    # event per child change that drowns what matters.
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings.watching.server_timeout = 300
    # kopf LISTs the ShadowRoutes in one answer unless told a page size: at 10,000
    # routes that answer is a few hundred MB of Python objects at once, and the RSS
    # keeps what the peak took.
    settings.watching.chunk_size = LIST_PAGE


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """At shutdown, after kopf stopped its watches: stop the reconciles; hand the Lease
    or the shards over (`memo.hand_over`, set by __main__ with --leader-elect or
    --shards) before waiting for anything else, so another replica takes over at once;
    then the webhook deliveries under way get up to DELIVERY_GRACE_SECONDS, and the
    HTTP session is closed."""
    services: Services | None = memo.get(SERVICES)
    if services is not None:
        await services.scheduler.stop()
    hand_over = memo.get("hand_over")
    if hand_over is not None:
        await hand_over()
    if services is not None:
        await services.close(grace=DELIVERY_GRACE_SECONDS)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def shadowroute_event(
    event: dict[str, Any], name: str, namespace: str, memo: kopf.Memo, **_: Any
) -> None:
    feed(memo).observe(SHADOWROUTE, event.get("type"), event["object"])
    if event.get("type") == "DELETED":
        scheduler(memo).forget(namespace, name)
        return
    scheduler(memo).seen(namespace, name)
    scheduler(memo).trigger(namespace, name)


# The children (Deployments, Services, routes) are not kopf's: the feed's own watches
# (kube/watch.py) keep them in the index and wake their owner when one changes, so a
# hand edit is put back at once. kopf would keep a memory of every object it saw.
