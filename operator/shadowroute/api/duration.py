"""Go-style durations ("500ms", "30s", "5m", "1h30m"), the way users write them in YAML.

Pure functions only. Parsing sums exact decimals so that a duration written in
milliseconds comes back as exactly the float ``ms / 1000``; the rollout compares these
against elapsed time, and rounding drift would make timers fire a tick late.

Bounds: every duration field has a minimum and a maximum, declared once
(``DurationBounds``) and enforced twice from that one declaration: as a CEL rule the API
server evaluates (``DurationBounds.cel_rule``, with CEL's ``duration()``, which is Go's
``time.ParseDuration``) and as a Python check (``DurationBounds.check``, which computes
the very same nanoseconds with ``go_nanoseconds``, a port of ``time.ParseDuration``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
"""The schema pattern of a duration: one or more number+unit terms, units ms, s, m, h."""

DURATION_MAX_LENGTH = 32

DURATION_CEILING = "8760h"
"""No duration field may allow more than this (365 days). Every declared maximum is at
most this, which is what makes the overflow guard of the CEL rule exact (see
``_FITS_PATTERN``)."""

_FITS_PATTERN = (
    r"^([0-9]{1,5}([.][0-9]+)?h|[0-9]{1,7}([.][0-9]+)?m|[0-9]{1,9}([.][0-9]+)?s"
    r"|[0-9]{1,12}([.][0-9]+)?ms)+$"
)
"""Durations whose every term is below 100000h, 10^7 m, 10^9 s or 10^12 ms. Within 32
characters such a duration stays under 10^6 h, far from where Go's ``time.Duration``
(and so CEL's ``duration()``) overflows at 2562047h, so the CEL rule never errors; and
a term that does not fit is alone longer than ``DURATION_CEILING``, so refusing it is
refusing what is above every maximum anyway."""

_CEL_DURATION_PATTERN = DURATION_PATTERN.replace("\\.", "[.]")
"""DURATION_PATTERN without a backslash: a CEL string literal has no ``\\.`` escape."""

_GO_UNITS_NS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_GO_MAX = (1 << 63) - 1

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
    try:
        go_nanoseconds(text)
    except OverflowError:
        raise ValueError(
            f"invalid duration {text!r}: longer than a Go duration can be (2562047h)"
        ) from None
    total = sum(
        (Decimal(number) * _UNIT_SECONDS[unit] for number, unit in _TERM.findall(text)),
        Decimal(0),
    )
    return float(total)


def go_nanoseconds(text: str) -> int:
    """Nanoseconds in a duration exactly as Go's ``time.ParseDuration`` computes them
    (the function behind CEL's ``duration()``): fractions truncated to the nanosecond,
    through the same float64 arithmetic; OverflowError where Go reports an overflow.

    ``text`` must already match DURATION_PATTERN (ValueError otherwise).
    """
    if not isinstance(text, str) or not _FULL.fullmatch(text):
        raise ValueError(f"invalid duration {text!r}")
    total = 0
    for number, unit_name in _TERM.findall(text):
        whole, _, fraction = number.partition(".")
        unit = _GO_UNITS_NS[unit_name]
        v = 0
        for digit in whole:  # leadingInt
            if v > (1 << 63) // 10:
                raise OverflowError(text)
            v = v * 10 + int(digit)
            if v > 1 << 63:
                raise OverflowError(text)
        f, scale, spilled = 0, 1.0, False
        for digit in fraction:  # leadingFraction: digits past uint64 are ignored
            if spilled or f > _GO_MAX // 10 or f * 10 + int(digit) > 1 << 63:
                spilled = True
                continue
            f = f * 10 + int(digit)
            scale *= 10
        if v > (1 << 63) // unit:
            raise OverflowError(text)
        v *= unit
        if f > 0:
            v += int(float(f) * (float(unit) / scale))
            if v > 1 << 63:
                raise OverflowError(text)
        total = (total + v) % (1 << 64)  # uint64, as in Go
        if total > 1 << 63:
            raise OverflowError(text)
    if total > _GO_MAX:
        raise OverflowError(text)
    return total


@dataclass(frozen=True)
class DurationBounds:
    """The least and the greatest value a duration field accepts, both inclusive."""

    minimum: str
    maximum: str = DURATION_CEILING

    def __post_init__(self) -> None:
        lo, hi = go_nanoseconds(self.minimum), go_nanoseconds(self.maximum)
        if not lo <= hi <= go_nanoseconds(DURATION_CEILING):
            raise ValueError(f"bounds {self} are not within 0s..{DURATION_CEILING}")

    @property
    def message(self) -> str:
        if go_nanoseconds(self.minimum) == 0:
            return f"must be a duration of at most {self.maximum}"
        return f"must be a duration between {self.minimum} and {self.maximum}"

    @property
    def cel_rule(self) -> str:
        """The CEL form. A malformed string is left to the schema's pattern (one error,
        not two); the overflow guard comes before ``duration()`` (CEL's && stops there)."""
        checks = [f"self.matches('{_FITS_PATTERN}')"]
        if go_nanoseconds(self.minimum) > 0:
            checks.append(f"duration(self) >= duration('{self.minimum}')")
        checks.append(f"duration(self) <= duration('{self.maximum}')")
        return f"!self.matches('{_CEL_DURATION_PATTERN}') || ({' && '.join(checks)})"

    def check(self, text: str) -> str:
        """The Python form: the same verdict as ``cel_rule`` (ValueError with its message)."""
        try:
            nanoseconds = go_nanoseconds(text)  # ValueError if malformed, as the pattern
        except OverflowError:
            raise ValueError(self.message) from None
        if not go_nanoseconds(self.minimum) <= nanoseconds <= go_nanoseconds(self.maximum):
            raise ValueError(self.message)
        return text

    @classmethod
    def from_rule(cls, rule: str) -> DurationBounds | None:
        """The bounds a rule made by ``cel_rule`` enforces; None for any other rule."""
        found = re.fullmatch(
            re.escape(
                f"!self.matches('{_CEL_DURATION_PATTERN}') || (self.matches('{_FITS_PATTERN}')"
            )
            + r"(?: && duration\(self\) >= duration\('([^']+)'\))?"
            + r" && duration\(self\) <= duration\('([^']+)'\)\)",
            rule,
        )
        if found is None:
            return None
        return cls(found.group(1) or "0s", found.group(2))


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
