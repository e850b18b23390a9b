"""The operator-wide services, built once at startup and kept in kopf's `memo`.

Nothing here is a module global: `handlers.startup` builds one `Services` and stores it
in the memo; the event handlers take it from there; `handlers.cleanup` stops and closes
it. Tools and tests build what they need themselves (each part has a default).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import traffic
from .analysis.prometheus import Client
from .checks.runner import CheckRunner
from .http import Http
from .kube.client import Kube
from .kube.feed import SHADOWROUTE, Feed
from .kube.store import Key, Store
from .names import MANAGED_BY, MANAGER
from .notify import Notifier
from .reconciler import Outcome, reconcile
from .scheduler import Scheduler
from .secrets import Secrets

log = logging.getLogger(__name__)


@dataclass
class Services:
    kube: Kube
    http: Http
    """The one aiohttp session, shared by Prometheus queries and webhooks."""
    secrets: Secrets
    """Secrets read (cached) for the analysis and the notifications; what to redact."""
    prometheus: Client
    notifier: Notifier
    """The webhook notifications' cooldown memory and the deliveries under way."""
    scheduler: Scheduler
    feed: Feed
    """The watch index of the ShadowRoutes and their children, what reconciles read."""

    @classmethod
    def build(
        cls,
        kube: Kube,
        namespaces: Iterable[str] = (),
        watched: Callable[[str], bool] | None = None,
        resync: float | None = None,
        owns: Callable[[str, str], bool] | None = None,
    ) -> Services:
        """`namespaces`: the exact namespaces the operator watches (none: all, or the
        ones `watched` accepts, for patterns). `resync`: None takes $SHADOWROUTE_RESYNC_SECONDS
        (scheduler.py). `owns`: with sharding, whether this replica acts on a route."""
        http, secrets = Http(), Secrets()
        prometheus = Client(session=http.session)
        notifier = Notifier(session=http.session, secrets=secrets)
        checks = CheckRunner(http=http, secrets=secrets)

        async def run(namespace: str, name: str) -> Outcome:
            # A webhook delivery that settles wakes its route, which drops it from status.
            return await reconcile(
                kube, namespace, name, notifier=notifier, prometheus=prometheus,
                secrets=secrets, wake=lambda: scheduler.trigger(namespace, name),
                checks=checks, feed=feed,
            )  # fmt: skip

        def gone(kind: str, key: Key, owner: str | None) -> None:
            """Deleted while the watch was down: a route is forgotten, a child's owner
            reconciled (it puts the child back)."""
            if kind == SHADOWROUTE:
                scheduler.forget(*key)
            elif owner:
                scheduler.trigger(key[0], owner)

        def changed(namespace: str, owner: str) -> None:
            """A child changed (a hand edit, a rollout's progress): its owner looks."""
            scheduler.trigger(namespace, owner)

        children = ("Deployment", "Service", *traffic.ROUTE_RESOURCES)
        feed = Feed(
            kube,
            Store(),
            (SHADOWROUTE, *children),
            {kind: f"{MANAGED_BY}={MANAGER}" for kind in children},
            namespaces,
            watched,
            gone,
            own=children,
            on_change=changed,
            crds={k: r.resource for k, r in traffic.ROUTE_RESOURCES.items() if r.group},
        )
        scheduler = Scheduler(run, resync=resync, owns=owns)
        return cls(kube, http, secrets, prometheus, notifier, scheduler, feed)

    async def close(self, grace: float) -> None:
        """At shutdown, once nothing reconciles: stop the index's LISTs; close the API
        client; let the webhook deliveries under way finish (at most `grace` seconds);
        close the session."""
        await self.feed.stop()
        await self.kube.close()
        try:
            await asyncio.wait_for(self.notifier.drain(), grace)
        except TimeoutError:
            log.warning("notifications still under way at shutdown are left to the next leader")
        await self.http.close()
