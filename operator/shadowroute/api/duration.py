"""Go-style durations ("500ms", "30s", "5m", "1h30m"), the way users write them in YAML.

Pure functions only. Parsing sums exact decimals so that a duration written in
milliseconds comes back as exactly the float ``ms / 1000``; the rollout compares these
against elapsed time, and rounding drift would make timers fire a tick late.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
"""The schema pattern of a duration: one or more number+unit terms, units ms, s, m, h."""

DURATION_MAX_LENGTH = 32

_FULL = re.compile(DURATION_PATTERN)
_TERM = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
_MS_PER_UNIT = (("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1))


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as "1h30m" or "1.5s"; ValueError if malformed."""
    if not isinstance(text, str) or len(text) > DURATION_MAX_LENGTH or not _FULL.fullmatch(text):
        raise ValueError(
            f"invalid duration {text!r}: expected terms like 500ms, 30s, 5m, 1h30m "
            f"(units ms, s, m, h; at most {DURATION_MAX_LENGTH} characters)"
        )
    total = sum(
        (Decimal(number) * _UNIT_SECONDS[unit] for number, unit in _TERM.findall(text)),
        Decimal(0),
    )
    return float(total)


def format_duration(seconds: float) -> str:
    """The canonical spelling of a duration, rounded to the millisecond: 90.5 -> "1m30s500ms".

    Zero components are left out ("5m", not "5m0s"); zero itself is "0s".
    """
    if seconds < 0:
        raise ValueError(f"durations are never negative, got {seconds!r}")
    exact_ms = Decimal(repr(float(seconds))) * 1000
    remaining = int(exact_ms.to_integral_value(rounding=ROUND_HALF_UP))
    parts = []
    for unit, ms_per_unit in _MS_PER_UNIT:
        count, remaining = divmod(remaining, ms_per_unit)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
