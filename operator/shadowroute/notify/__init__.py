"""Webhook notifications of a rollout's events (docs/notifications.md).

One job per module:
- `events`: what happened between the status read and the status decided (pure);
- `template`: the `$variables` of a message and their values (pure);
- `targets`: the request each kind of webhook gets: json, slack, teams, generic (pure);
- `delivery`: the cooldown, status.pendingNotifications, sending in the background.
"""

from __future__ import annotations

from .delivery import Notifier, desired_images, notification_spec, pending_id
from .events import Notice, transitions

__all__ = [
    "Notice",
    "Notifier",
    "desired_images",
    "notification_spec",
    "pending_id",
    "transitions",
]
