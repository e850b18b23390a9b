"""Differences counted over many mirrored requests, noise subtracted (Diffy's idea).

Each mirrored request gives two sets of differing field names (see `differ`): raw =
primary vs candidate (old vs new), noise = primary vs secondary (old vs old). A field
that differs between two old instances as often as between old and new (a timestamp,
a request id, a random token) says nothing about the new version. So a field is
**real** only when, over the requests compared so far, with r its raw count, n its
noise count and C the requests compared:

    (r - n) / r > relative_gap   (default 20 %: most of its differences are not noise)
    (r - n) / C > absolute_gap   (default 0.03 %: it is not a handful of requests)

A request is **mismatched** when its raw set holds at least one real field; which
fields are real changes as requests come in, so it is worked out when asked.

Memory is bounded whatever the service answers:
- at most `max_names` distinct field names (default 1,000, ``_other`` included): once
  full, a new name counts as ``_other``; names longer than `MAX_NAME_LENGTH` are cut;
- at most `max_sets` distinct raw sets (default 1,000) are kept to count mismatched
  requests exactly; requests with a raw set beyond that keep only per-field counts,
  and are counted as mismatched by an upper bound (``exact`` says so): erring towards
  failing a rollout, never towards passing one.

A `Tally` is mutable and owned by one comparator loop (not shared between threads);
its queries do not change it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

OTHER = "_other"
MAX_NAMES = 1000
MAX_SETS = 1000
MAX_NAME_LENGTH = 256
RELATIVE_GAP = 0.20
ABSOLUTE_GAP = 0.0003
TOP = 5


class Judgement(StrEnum):
    """What the comparison says about the candidate so far."""

    PASS = "Pass"
    FAIL = "Fail"
    NOT_ENOUGH_DATA = "NotEnoughData"


@dataclass(frozen=True)
class FieldCount:
    """One field's counts over the tally, and whether they make it real."""

    name: str
    raw: int
    noise: int
    real: bool

    @property
    def gap(self) -> int:
        return self.raw - self.noise


@dataclass(frozen=True)
class ShadowVerdict:
    """A verdict and what it rests on; `message` is for status and Events."""

    judgement: Judgement
    compared: int
    mismatched: int
    exact: bool
    max_mismatch_rate: float
    min_compared: int
    top: tuple[FieldCount, ...]

    @property
    def mismatch_rate(self) -> float:
        return self.mismatched / self.compared if self.compared else 0.0

    @property
    def message(self) -> str:
        if self.judgement is Judgement.NOT_ENOUGH_DATA:
            head = f"{self.compared} requests compared, {self.min_compared} needed"
        else:
            bound = "" if self.exact else "at most "
            head = (
                f"{bound}{self.mismatched} of {self.compared} compared requests differ "
                f"beyond noise ({self.mismatch_rate:.2%}, at most "
                f"{self.max_mismatch_rate:.2%} allowed)"
            )
        if not self.top:
            return head
        fields = ", ".join(
            f"{f.name} (raw {f.raw}, noise {f.noise}{'' if f.real else ', within noise'})"
            for f in self.top
        )
        return f"{head}; most differing fields: {fields}"


def is_real(
    raw: float,
    noise: float,
    compared: float,
    relative_gap: float = RELATIVE_GAP,
    absolute_gap: float = ABSOLUTE_GAP,
) -> bool:
    """Whether a field with these counts differs beyond noise (the module's rule)."""
    gap = raw - noise
    return gap > 0 and gap / raw > relative_gap and compared > 0 and gap / compared > absolute_gap


def _cut(name: str) -> str:
    return name if len(name) <= MAX_NAME_LENGTH else name[: MAX_NAME_LENGTH - 1] + "…"


class Tally:
    """The running counts of one shadow comparison (see the module for the rules)."""

    def __init__(
        self,
        *,
        max_names: int = MAX_NAMES,
        max_sets: int = MAX_SETS,
        relative_gap: float = RELATIVE_GAP,
        absolute_gap: float = ABSOLUTE_GAP,
    ) -> None:
        if max_names < 1 or max_sets < 0:
            raise ValueError("max_names is at least 1 (for _other), max_sets not negative")
        if not (0 <= relative_gap < 1 and 0 <= absolute_gap < 1):
            raise ValueError("the gaps are fractions in [0, 1)")
        self.max_names = max_names
        self.max_sets = max_sets
        self.relative_gap = relative_gap
        self.absolute_gap = absolute_gap
        self._compared = 0
        self._raw: dict[str, int] = {}
        self._noise: dict[str, int] = {}
        self._names: set[str] = set()
        self._sets: dict[frozenset[str], int] = {}
        self._overflow_requests = 0
        self._overflow: dict[str, int] = {}

    def _fold(self, names: Iterable[str]) -> frozenset[str]:
        out = set()
        for name in map(_cut, names):
            if name not in self._names:
                if len(self._names) - (OTHER in self._names) >= self.max_names - 1:
                    name = OTHER
                self._names.add(name)
            out.add(name)
        return frozenset(out)

    def record(self, raw: Iterable[str], noise: Iterable[str]) -> None:
        """One compared request: the fields that differed old vs new, and old vs old."""
        raw_set, noise_set = self._fold(raw), self._fold(noise)
        self._compared += 1
        for name in raw_set:
            self._raw[name] = self._raw.get(name, 0) + 1
        for name in noise_set:
            self._noise[name] = self._noise.get(name, 0) + 1
        if not raw_set:
            return
        if raw_set in self._sets or len(self._sets) < self.max_sets:
            self._sets[raw_set] = self._sets.get(raw_set, 0) + 1
        else:
            self._overflow_requests += 1
            for name in raw_set:
                self._overflow[name] = self._overflow.get(name, 0) + 1

    @property
    def compared(self) -> int:
        return self._compared

    @property
    def names(self) -> frozenset[str]:
        """Every field name kept (at most `max_names`)."""
        return frozenset(self._names)

    def count(self, name: str) -> FieldCount:
        raw, noise = self._raw.get(name, 0), self._noise.get(name, 0)
        return FieldCount(name, raw, noise, self._is_real(raw, noise))

    def _is_real(self, raw: int, noise: int) -> bool:
        return is_real(raw, noise, self._compared, self.relative_gap, self.absolute_gap)

    @property
    def fields(self) -> tuple[FieldCount, ...]:
        """Every field's counts, the most differing beyond noise first."""
        counts = [self.count(name) for name in self._names]
        return tuple(sorted(counts, key=lambda f: (-f.gap, f.name)))

    @property
    def real(self) -> frozenset[str]:
        """The fields that differ old vs new more than old vs old, by the thresholds."""
        return frozenset(f.name for f in self.fields if f.real)

    @property
    def exact(self) -> bool:
        """Whether `mismatched` is exact (no raw set went past `max_sets`)."""
        return self._overflow_requests == 0

    @property
    def mismatched(self) -> int:
        """Requests with at least one real differing field (an upper bound if not exact)."""
        real = self.real
        if not real:
            return 0
        known = sum(n for names, n in self._sets.items() if not names.isdisjoint(real))
        bound = min(self._overflow_requests, sum(self._overflow.get(f, 0) for f in real))
        return known + bound

    def verdict(
        self, max_mismatch_rate: float, min_compared: int, *, top: int = TOP
    ) -> ShadowVerdict:
        """Pass or fail on the mismatch rate, once `min_compared` requests were compared
        (never on none); before that, not enough data, whatever the rate: the noise
        estimate is too weak. `top` fields differing beyond noise go with it."""
        mismatched = self.mismatched
        if self._compared == 0 or self._compared < min_compared:
            judgement = Judgement.NOT_ENOUGH_DATA
        elif mismatched / self._compared > max_mismatch_rate:
            judgement = Judgement.FAIL
        else:
            judgement = Judgement.PASS
        return ShadowVerdict(
            judgement=judgement,
            compared=self._compared,
            mismatched=mismatched,
            exact=self.exact,
            max_mismatch_rate=max_mismatch_rate,
            min_compared=min_compared,
            top=tuple(f for f in self.fields if f.gap > 0)[:top],
        )
