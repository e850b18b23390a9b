"""What the data plane should do right now, in the providers' common terms.

One small immutable value computed from the spec and the decided status. Every
provider renders its route objects from it and from its own section of the spec, so
the questions "is a preview on?", "is stickiness on?" and "where does the mirror go?"
are answered once, here, the same way for every data plane.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api.duration import parse_duration
from ..api.models import (
    CookieStickiness,
    PreviewSpec,
    ShadowRouteSpec,
    ShadowRouteStatus,
    StickinessSpec,
)
from ..names import CANARY, PRIMARY, SHADOW, Owner, child_name
from ..render.workloads import route_port
from ..stages import canary_on_trial, canary_serves

STICKY_COOKIE_ATTRIBUTES = "Path=/; HttpOnly; SameSite=Lax"
"""No Secure: the cookie must also stick on plain-HTTP listeners. It only routes."""


@dataclass(frozen=True)
class Intent:
    """The traffic a ShadowRoute wants now: weights, mirror, preview and stickiness."""

    name: str
    namespace: str
    port: int
    """The Service port every route sends to (spec.traffic.port, else the first)."""
    primary: str
    canary: str
    canary_weight: int
    mirror_target: str | None
    """Service the mirror copies requests to; None when nothing is mirrored."""
    mirror_percent: int
    preview: PreviewSpec | None
    """The preview routes, while a preview is on (the canary runs the new version)."""
    stickiness: StickinessSpec | None
    """The sticky routes, while users can land on the canary by weight."""
    token: str
    """What a sticky cookie or header carries: the canary's revision, so a token from an
    earlier rollout never matches a later canary."""

    @property
    def primary_weight(self) -> int:
        return 100 - self.canary_weight

    @property
    def mirroring(self) -> bool:
        return self.mirror_target is not None


def intent(
    owner: Owner,
    spec: ShadowRouteSpec,
    status: ShadowRouteStatus,
    mirror_target: str | None = None,
) -> Intent:
    """The intent for a decided status. `mirror_target` is the Service mirrored
    requests go to; by default the shadow's, later a comparator's (see docs/architecture.md)."""
    weight = min(100, max(0, status.canary_weight))
    in_rollout = canary_on_trial(status)
    mirror = status.mirror_percent > 0
    return Intent(
        name=owner.name,
        namespace=owner.namespace,
        port=route_port(spec),
        primary=child_name(owner.name, PRIMARY),
        canary=child_name(owner.name, CANARY),
        canary_weight=weight,
        mirror_target=(mirror_target or child_name(owner.name, SHADOW)) if mirror else None,
        mirror_percent=min(100, status.mirror_percent) if mirror else 0,
        preview=spec.traffic.preview if canary_serves(status) else None,
        stickiness=spec.traffic.stickiness if in_rollout and 0 < weight < 100 else None,
        token=status.canary_revision,
    )


def set_cookie(cookie: CookieStickiness, token: str) -> str:
    """The Set-Cookie value that pins a user to the canary of this rollout."""
    value = f"{cookie.name}={token}; {STICKY_COOKIE_ATTRIBUTES}"
    if cookie.max_age:
        value += f"; Max-Age={int(parse_duration(cookie.max_age))}"
    return value


def cookie_regex(cookie: CookieStickiness, token: str) -> str:
    """A Cookie header carrying the sticky cookie, anywhere in the list. Anchored at
    both ends, so it means the same under full-match (Envoy, RE2) and search (nginx,
    PCRE) semantics."""
    name = cookie.name.replace(".", r"\.")
    return f"^(.*; ?)?{name}={token}(;.*)?$"
