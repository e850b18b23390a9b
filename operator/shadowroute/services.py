"""The operator-wide services, built once at startup and kept in kopf's `memo`.

Nothing here is a module global: `handlers.startup` builds one `Services` and stores it
in the memo; the event handlers take it from there; `handlers.cleanup` stops and closes
it. Tools and tests build what they need themselves (each part has a default).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .analysis.prometheus import Client
from .checks.runner import CheckRunner
from .http import Http
from .kube.client import Kube
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

    @classmethod
    def build(cls, kube: Kube, owns: Callable[[str, str], bool] | None = None) -> Services:
        """`owns`: with sharding, whether this replica acts on a route (scheduler.py)."""
        http, secrets = Http(), Secrets()
        prometheus = Client(session=http.session)
        notifier = Notifier(session=http.session, secrets=secrets)
        checks = CheckRunner(http=http, secrets=secrets)

        async def run(namespace: str, name: str) -> Outcome:
            # A webhook delivery that settles wakes its route, which drops it from status.
            return await reconcile(
                kube, namespace, name, notifier=notifier, prometheus=prometheus,
                secrets=secrets, wake=lambda: scheduler.trigger(namespace, name),
                checks=checks,
            )  # fmt: skip

        scheduler = Scheduler(run, owns=owns)
        return cls(kube, http, secrets, prometheus, notifier, scheduler)

    async def close(self, grace: float) -> None:
        """At shutdown, once nothing reconciles: close the API client; let the webhook
        deliveries under way finish (at most `grace` seconds); close the session."""
        await self.kube.close()
        try:
            await asyncio.wait_for(self.notifier.drain(), grace)
        except TimeoutError:
            log.warning("notifications still under way at shutdown are left to the next leader")
        await self.http.close()
