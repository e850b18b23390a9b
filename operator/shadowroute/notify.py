"""Notifications: a JSON webhook and a Slack-compatible one, on promote, rollback and
hold.

What to send is decided from two statuses, the one read and the one decided
(`transitions`, pure): a new history entry is a promotion or a rollback; the
AnalysisHealthy condition turning False (or Unknown with NoData) while a rollout runs is
a hold. The notices are written into `status.pendingNotifications` together with the
status that decided them, before anything is sent: delivered at least once, however
the operator is stopped (a restarted operator sends what is still pending), never for a
decision whose status write failed.

Delivery runs in the background (a rollback never waits for a webhook): a few
attempts with backoff and jitter on transient errors, each bounded by a timeout; then
the notice is settled (delivered or given up on) and the reconciler drops it from
status. A cooldown per route, kind and revision (or hold reason) keeps an outage that
comes and goes from spamming; it lives in memory, which at worst lets one repeat
through a restart. URLs may be credentials (a Slack webhook URL is one): they are
never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from .analysis.judge import fmt
from .api.duration import parse_duration
from .api.models import (
    AnalysisSpec,
    NotificationEvent,
    PendingNotification,
    ShadowRouteStatus,
    Webhook,
    WebhookType,
    parse_timestamp,
)
from .http import Http
from .names import ROLLOUT_STAGES, Stage
from .reasons import Reason
from .secrets import CredentialsError, Secrets

log = logging.getLogger(__name__)

ATTEMPTS = 3
TIMEOUT = 5.0
HOLD_STAGES = (*ROLLOUT_STAGES, Stage.SUCCEEDED)
_ICONS = {"Promoted": ":white_check_mark:", "RolledBack": ":rotating_light:", "Held": ":pause:"}


@dataclass(frozen=True)
class Notice:
    """One thing to tell: a promotion, a rollback or a hold."""

    kind: NotificationEvent
    namespace: str
    name: str
    revision: str
    reason: str
    message: str
    status: ShadowRouteStatus
    at: str = ""

    @property
    def key(self) -> tuple[str, ...]:
        """What the cooldown counts as "the same notification"."""
        which = self.reason if self.kind is NotificationEvent.HELD else self.revision
        return (self.namespace, self.name, self.kind.value, which)

    def document(self) -> dict[str, Any]:
        """The generic webhook's JSON body."""
        s = self.status
        return {
            "kind": self.kind.value,
            "namespace": self.namespace,
            "name": self.name,
            "revision": self.revision,
            "stableRevision": s.stable_revision,
            "phase": str(s.phase),
            "canaryWeight": s.canary_weight,
            "reason": self.reason,
            "message": self.message,
            "at": self.at,
            "analysis": {
                "verdict": str(s.analysis.verdict) if s.analysis.verdict else None,
                "consecutiveFailures": s.analysis.consecutive_failures,
                "metrics": [
                    {
                        "name": m.name,
                        "value": m.value,
                        "verdict": str(m.verdict),
                        "reason": m.reason,
                        "query": m.query,
                    }
                    for m in s.analysis.metrics
                ],
            },
        }

    def text(self) -> str:
        """The Slack-compatible one-message summary."""
        what = {
            NotificationEvent.PROMOTED: f"revision {self.revision} promoted",
            NotificationEvent.ROLLED_BACK: f"revision {self.revision} rolled back ({self.reason})",
            NotificationEvent.HELD: f"rollout of {self.revision} held ({self.reason})",
        }[self.kind]
        values = ", ".join(
            f"{m.name}={fmt(m.value)} {m.verdict}" for m in self.status.analysis.metrics
        )
        lines = [f"{_ICONS[self.kind.value]} *{self.namespace}/{self.name}*: {what}"]
        if self.message:
            lines.append(self.message)
        if values:
            lines.append(f"metrics: {values}")
        return "\n".join(lines)


def transitions(
    old: ShadowRouteStatus,
    new: ShadowRouteStatus,
    namespace: str,
    name: str,
    hold_after: float = 0.0,
) -> list[Notice]:
    """What happened between two statuses that a person should hear about.

    A hold is told once it has lasted `hold_after` seconds, as seen by an analysis
    run: the first runs of every step have no data yet, and that is no news.
    """
    out = []
    if new.history and (not old.history or new.history[0] != old.history[0]):
        entry = new.history[0]
        kind = {
            "Promoted": NotificationEvent.PROMOTED,
            "RolledBack": NotificationEvent.ROLLED_BACK,
        }.get(str(entry.outcome))
        if kind is not None:
            out.append(
                Notice(
                    kind,
                    namespace,
                    name,
                    entry.revision,
                    entry.reason,
                    entry.message,
                    new,
                    entry.at or "",
                )
            )
    if (
        not any(n.kind is NotificationEvent.ROLLED_BACK for n in out)
        and str(new.stage) in HOLD_STAGES
    ):
        notice = _hold(old, new, namespace, name, hold_after)
        if notice is not None:
            out.append(notice)
    return out


def _hold(
    old: ShadowRouteStatus, new: ShadowRouteStatus, namespace: str, name: str, hold_after: float
) -> Notice | None:
    """A Held notice when the analysis has held the rollout for hold_after seconds by
    the latest run, and had not at the run before (or held for another reason)."""
    after = new.condition("AnalysisHealthy")
    if after is None or not after.last_transition_time:
        return None
    if after.status != "False" and after.reason != Reason.NO_DATA:  # NoData is Unknown
        return None
    since = parse_timestamp(after.last_transition_time)

    def long_enough(s: ShadowRouteStatus) -> bool:
        run = s.analysis.last_run_at
        return bool(run) and (parse_timestamp(run) - since).total_seconds() >= hold_after

    if not long_enough(new):
        return None
    before = old.condition("AnalysisHealthy")
    same = before is not None and (before.status, before.reason) == (after.status, after.reason)
    if same and long_enough(old):
        return None  # told already
    revision = new.analysis.revision or new.canary_revision
    return Notice(
        NotificationEvent.HELD,
        namespace,
        name,
        revision,
        after.reason,
        after.message,
        new,
        after.last_transition_time,
    )


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
        spec: AnalysisSpec | None,
        old: ShadowRouteStatus,
        new: ShadowRouteStatus,
        namespace: str,
        name: str,
    ) -> list[PendingNotification]:
        """The notices the change from old to new sends, for status.pendingNotifications."""
        if spec is None or spec.notifications is None:
            return []
        cooldown = parse_duration(spec.notifications.cooldown)
        now = self._clock()
        due = []
        hold_after = parse_duration(spec.notifications.hold_after)
        for notice in transitions(old, new, namespace, name, hold_after):
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
                )
            )
        return due

    def deliver(
        self,
        spec: AnalysisSpec | None,
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
                pending.reason,
                pending.message,
                status,
                pending.at or "",
            )
            hooks = []
            if spec is not None and spec.notifications is not None:
                hooks = [h for h in spec.notifications.webhooks if notice.kind in h.events]
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
        spec: AnalysisSpec | None,
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
        except CredentialsError as exc:
            log.warning("%s: %s not sent: %s", where, notice.kind, exc)
            return
        body = {"text": notice.text()} if hook.type is WebhookType.SLACK else notice.document()
        for attempt in range(ATTEMPTS):
            problem = ""
            try:
                async with self._session().post(
                    url,
                    json=body,
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
            except (aiohttp.ClientError, OSError) as exc:
                problem = type(exc).__name__  # its text may quote the URL
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
