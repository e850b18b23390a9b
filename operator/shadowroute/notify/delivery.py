"""Delivery: which notices a status change sends (the cooldown), and sending the
pending ones in the background.

The notices are written into `status.pendingNotifications` together with the status
that decided them, before anything is sent: delivered at least once, however the
operator is stopped (a restarted operator sends what is still pending), never for a
decision whose status write failed. Each pending notice keeps what status said when it
was decided (stage, weight, step, check, images), so a restarted operator sends the
same words.

Delivery runs in the background (a rollback never waits for a webhook): a few
attempts with backoff and jitter on transient errors, each bounded by a timeout; then
the notice is settled (delivered or given up on) and the reconciler drops it from
status. A cooldown per route, event and revision (and step, check or hold reason)
keeps an outage that comes and goes from spamming; it lives in memory, which at worst
lets one repeat through a restart. URLs and headers may be credentials (a Slack or
Teams webhook URL is one): they are never logged nor written to status.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from ..api.duration import parse_duration
from ..api.models import (
    NotificationSpec,
    PendingNotification,
    ShadowRouteSpec,
    ShadowRouteStatus,
    Webhook,
    WebhookType,
)
from ..http import Http
from ..rollout.machine import desired_revision, template_dict
from ..secrets import CredentialsError, Secrets
from .events import Notice, transitions
from .targets import request

log = logging.getLogger(__name__)

ATTEMPTS = 3
TIMEOUT = 5.0


def notification_spec(spec: ShadowRouteSpec | None) -> NotificationSpec | None:
    """spec.notifications, or its deprecated spelling spec.analysis.notifications."""
    if spec is None:
        return None
    if spec.notifications is not None:
        return spec.notifications
    return spec.analysis.notifications if spec.analysis is not None else None


def desired_images(spec: ShadowRouteSpec) -> tuple[str, tuple[str, ...]]:
    """The revision the spec asks for and its container images (init containers too)."""
    pod = template_dict(spec).get("spec") or {}
    images = [
        c.get("image", "")
        for key in ("initContainers", "containers")
        for c in pod.get(key) or []
        if c.get("image")
    ]
    return desired_revision(spec), tuple(images)


def pending_id(*parts: object) -> str:
    """A notice's identity: made once, when it is decided, then kept in status."""
    key = "\x00".join(map(str, parts))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


Key = tuple[str, str]  # (namespace, name)


class Notifier:
    """Decides which notices a status change sends (with a cooldown) and delivers the
    pending ones in the background, once each per process.

    The operator builds one at startup with its shared session and Secrets
    (services.py); without them (tools, tests) it has a session and Secrets of its own."""

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        secrets: Secrets | None = None,
    ) -> None:
        self._session = session if session is not None else Http().session
        self._secrets = secrets if secrets is not None else Secrets()
        self._clock = clock
        self._sleep = sleep
        # When each notice was last sent, and the cooldown that then applied to it.
        self._sent: dict[tuple[str, ...], tuple[float, float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._started: dict[Key, set[str]] = {}  # ids under way or settled, per route
        self._settled: dict[Key, set[str]] = {}  # ids done: to drop from status

    def decide(
        self,
        spec: NotificationSpec | None,
        old: ShadowRouteStatus,
        new: ShadowRouteStatus,
        namespace: str,
        name: str,
        desired: tuple[str, Sequence[str]] = ("", ()),
    ) -> list[PendingNotification]:
        """The notices the change from old to new sends, for status.pendingNotifications.
        `desired` is the revision the spec holds and its images: a notice about that
        revision names them."""
        if spec is None:
            return []
        cooldown = parse_duration(spec.cooldown)
        now = self._clock()
        due = []
        hold_after = parse_duration(spec.hold_after)
        wanted = {e for hook in spec.webhooks for e in hook.events}
        for notice in transitions(old, new, namespace, name, hold_after):
            if notice.kind not in wanted:
                continue  # no webhook asks for it: nothing to keep in status
            last, _ = self._sent.get(notice.key, (None, 0.0))
            if last is not None and now - last < cooldown:
                log.info(
                    "%s/%s: %s not sent again within the cooldown", namespace, name, notice.kind
                )
                continue
            # Forget what no longer holds anything back: the map stays as small as the
            # notices still cooling down, over years of rollouts and deleted routes.
            self._sent = {k: v for k, v in self._sent.items() if now - v[0] < v[1]}
            self._sent[notice.key] = (now, cooldown)
            ident = pending_id(
                namespace, name, notice.kind.value, notice.revision, notice.at, now, len(due)
            )
            due.append(
                PendingNotification(
                    id=ident,
                    kind=notice.kind,
                    revision=notice.revision,
                    reason=notice.reason,
                    message=notice.message,
                    at=notice.at or None,
                    stage=notice.stage,
                    weight=notice.weight,
                    step=notice.step,
                    check=notice.check,
                    images=list(desired[1])[:32] if notice.revision == desired[0] else [],
                )
            )
        return due

    def deliver(
        self,
        spec: NotificationSpec | None,
        status: ShadowRouteStatus,
        namespace: str,
        name: str,
        kube: Any,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        """Start sending each of status.pendingNotifications not yet started by this
        process; `on_settled` is called when one is done (the reconciler then drops it
        from status)."""
        key = (namespace, name)
        started = self._started.setdefault(key, set())
        for pending in status.pending_notifications:
            if pending.id in started:
                continue
            started.add(pending.id)
            notice = Notice(
                pending.kind,
                namespace,
                name,
                pending.revision,
                reason=pending.reason,
                message=pending.message,
                at=pending.at or "",
                stage=pending.stage,
                weight=pending.weight,
                step=pending.step,
                check=pending.check,
                images=tuple(pending.images),
                stable_revision=status.stable_revision,
                status=status,
            )
            hooks = [h for h in spec.webhooks if notice.kind in h.events] if spec else []
            task = asyncio.get_running_loop().create_task(
                self._deliver_all(hooks, notice, pending.id, kube, on_settled)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def settled(self, namespace: str, name: str) -> set[str]:
        """The ids delivered or given up on, still to be dropped from status."""
        return set(self._settled.get((namespace, name), ()))

    def forget(self, namespace: str, name: str, ids: set[str]) -> None:
        """The status no longer lists these ids: nothing more to remember of them."""
        key = (namespace, name)
        for table in (self._started, self._settled):
            left = table.get(key, set()) - ids
            if left:
                table[key] = left
            else:
                table.pop(key, None)

    def notify(
        self,
        spec: NotificationSpec | None,
        old: ShadowRouteStatus,
        new: ShadowRouteStatus,
        namespace: str,
        name: str,
        kube: Any,
    ) -> list[PendingNotification]:
        """Decide and deliver in one go (no status in between): for tools and tests."""
        due = self.decide(spec, old, new, namespace, name)
        self.deliver(spec, new.model_copy(update={"pending_notifications": due}), namespace,
                     name, kube)  # fmt: skip
        return due

    async def _deliver_all(
        self,
        hooks: list[Webhook],
        notice: Notice,
        ident: str,
        kube: Any,
        on_settled: Callable[[], None] | None,
    ) -> None:
        results = await asyncio.gather(
            *(self._deliver(h, notice, notice.namespace, kube) for h in hooks),
            return_exceptions=True,
        )
        for hook, result in zip(hooks, results, strict=True):
            if isinstance(result, Exception):
                log.error(
                    "webhook %s of %s/%s: %s not delivered: %s",
                    hook.name, notice.namespace, notice.name, notice.kind, type(result).__name__,
                )  # fmt: skip
        self._settled.setdefault((notice.namespace, notice.name), set()).add(ident)
        if on_settled is not None:
            on_settled()

    async def drain(self) -> None:
        """Wait for the deliveries under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _deliver(self, hook: Webhook, notice: Notice, namespace: str, kube: Any) -> None:
        where = f"webhook {hook.name} of {namespace}/{notice.name}"
        try:
            url = hook.url or await _secret_url(hook, namespace, kube, self._secrets)
            headers = await _secret_headers(hook, namespace, kube, self._secrets)
        except CredentialsError as exc:
            log.warning("%s: %s not sent: %s", where, notice.kind, exc)
            return
        try:
            req = request(hook, notice)
        except ValueError as exc:
            log.warning("%s: %s not sent: the body is not JSON: %s", where, notice.kind, exc)
            return
        headers = {**headers, "Content-Type": req.content_type}
        for attempt in range(ATTEMPTS):
            problem = ""
            try:
                async with self._session().request(
                    req.method,
                    url,
                    data=req.body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=TIMEOUT),
                    allow_redirects=False,
                ) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        log.info("%s: sent %s", where, notice.kind)
                        return
                    problem = f"HTTP {resp.status}"
                    if resp.status not in (408, 429) and resp.status < 500:
                        break  # refused for good: asking again changes nothing
            except TimeoutError:
                problem = f"no answer within {TIMEOUT:g}s"
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                problem = type(exc).__name__  # its text may quote the URL or a header
            if attempt + 1 < ATTEMPTS:
                await self._sleep(random.random() * min(4.0, 0.5 * 2**attempt))
        log.warning("%s: %s not delivered: %s", where, notice.kind, problem)


async def _secret_url(hook: Webhook, namespace: str, kube: Any, secrets: Secrets) -> str:
    ref = hook.url_secret_ref
    assert ref is not None
    data = await secrets.read(kube, namespace, ref.name)
    if ref.key not in data:
        raise CredentialsError(f"Secret {namespace}/{ref.name} has no key {ref.key}")
    url = data[ref.key].decode(errors="replace").strip()
    if not url.startswith(("http://", "https://")):
        raise CredentialsError(f"Secret {namespace}/{ref.name} key {ref.key} is not an http(s) URL")
    return url


async def _secret_headers(
    hook: Webhook, namespace: str, kube: Any, secrets: Secrets
) -> dict[str, str]:
    """A generic webhook's headers: each key of its Secret, with its value."""
    ref = hook.headers_secret_ref
    if ref is None or hook.type is not WebhookType.GENERIC:
        return {}
    data = await secrets.read(kube, namespace, ref.name)
    headers = {}
    for key, raw in data.items():
        value = raw.decode(errors="replace").strip()
        if not key.replace("-", "").isalnum() or "\n" in value or "\r" in value:
            raise CredentialsError(
                f"Secret {namespace}/{ref.name} key {key} is not a header name with a "
                "one-line value"
            )
        secrets.remember(value)
        headers[key] = value
    return headers
