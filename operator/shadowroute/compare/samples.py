"""Sample pairs of differing answers, for people (``kubectl shadowroute diff``). Pure.

A sample is one mirrored request with the candidate's answer and the first baseline
answer, redacted (credential headers and query parameters) and cut (bodies to
`MAX_BODY_SHOWN` bytes, marked). `Samples` keeps the first `per_field` samples of each
field that differed old vs new, for at most `max_fields` fields: memory is bounded
(``max_fields * per_field`` samples, fewer in fact since one sample serves every field
it differs on). When the fields are all taken, a field that differs beyond noise more
than a kept one (by raw - noise so far) takes the place of the kept one with the
smallest gap: noise (a timestamp, a request id) never crowds a real change out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .redact import REDACTED, is_credential, redact_headers

MAX_BODY_SHOWN = 2048
MAX_PATH_SHOWN = 2048
MAX_FIELDS = 20
PER_FIELD = 3
QUERY_CREDENTIALS = frozenset({"key", "sig", "signature", "code", "session", "sid"})


def show_body(body: bytes, limit: int = MAX_BODY_SHOWN) -> str:
    """A body as text (UTF-8, invalid bytes replaced), cut at `limit` bytes and marked."""
    if len(body) <= limit:
        return body.decode("utf-8", errors="replace")
    head = body[:limit].decode("utf-8", errors="replace")
    return f"{head}…[truncated: {len(body)} bytes in all]"


def show_path(path_and_query: str, limit: int = MAX_PATH_SHOWN) -> str:
    """A request target with the values of credential-like query parameters redacted."""
    path, question, query = path_and_query.partition("?")
    if question:
        params = []
        for param in query.split("&"):
            name, equals, _ = param.partition("=")
            lowered = name.lower()
            if equals and (is_credential(lowered) or lowered in QUERY_CREDENTIALS):
                param = f"{name}={REDACTED}"
            params.append(param)
        path = f"{path}?{'&'.join(params)}"
    return path if len(path) <= limit else path[: limit - 1] + "…"


@dataclass(frozen=True)
class Shown:
    """One answer as a sample shows it; `status` is "no answer" when there was none."""

    status: int | str
    headers: Mapping[str, str]
    body: str
    error: str | None = None

    @classmethod
    def answer(
        cls, status: int, headers: Iterable[tuple[str, str]], body: bytes, *, bodies: bool = True
    ) -> Shown:
        return cls(status, redact_headers(headers), show_body(body) if bodies else "")

    @classmethod
    def no_answer(cls, error: str) -> Shown:
        return cls("no answer", {}, "", error)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "headers": dict(self.headers)}
        out["body"] = self.body
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class Sample:
    """One request and the two answers compared (candidate, first baseline)."""

    method: str
    path: str
    headers: Mapping[str, str]
    candidate: Shown
    baseline: Shown

    @classmethod
    def of(
        cls,
        method: str,
        path_and_query: str,
        headers: Iterable[tuple[str, str]],
        candidate: Shown,
        baseline: Shown,
    ) -> Sample:
        return cls(method, show_path(path_and_query), redact_headers(headers), candidate, baseline)

    def as_dict(self, field: str) -> dict[str, Any]:
        return {
            "field": field,
            "request": {"method": self.method, "path": self.path, "headers": dict(self.headers)},
            "candidate": self.candidate.as_dict(),
            "baseline": self.baseline.as_dict(),
        }


class Samples:
    """The kept samples, by field (see the module for which are kept)."""

    def __init__(self, per_field: int = PER_FIELD, max_fields: int = MAX_FIELDS) -> None:
        if per_field < 0 or max_fields < 0:
            raise ValueError("per_field and max_fields are not negative")
        self.per_field = per_field
        self.max_fields = max_fields
        self._kept: dict[str, list[Sample]] = {}

    def offer(
        self, fields: Iterable[str], make: Callable[[], Sample], gap: Callable[[str], int]
    ) -> bool:
        """Keep the sample `make` builds (called at most once, only when kept) for those of
        `fields` that want one; `gap` is a field's raw - noise so far. Whether it was kept."""
        if self.per_field == 0:
            return False
        takers = []
        for name in sorted(fields):
            kept = self._kept.get(name)
            if kept is not None:
                if len(kept) < self.per_field:
                    takers.append(name)
            elif len(self._kept) < self.max_fields:
                self._kept[name] = []
                takers.append(name)
            elif self._kept:
                weakest = min(self._kept, key=lambda k: (gap(k), k))
                if gap(weakest) < gap(name):
                    del self._kept[weakest]
                    self._kept[name] = []
                    takers.append(name)
        if not takers:
            return False
        sample = make()
        for name in takers:
            self._kept[name].append(sample)
        return True

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(self._kept)

    def of(self, name: str) -> tuple[Sample, ...]:
        return tuple(self._kept.get(name, ()))

    def listed(self, order: Callable[[str], Any]) -> list[dict[str, Any]]:
        """Every kept sample as the summary shows it, fields sorted by `order`."""
        return [
            sample.as_dict(name)
            for name in sorted(self._kept, key=order)
            for sample in self._kept[name]
        ]
