"""An http check's verdict: an answer (or its absence) against the check's expectations.

Pure: the shell sends the request, times it and hands over what came back; `judge`
decides. JSON paths are looked up in compare.differ's flattening, so a path means here
exactly what it means in a shadow comparison (``body.items[0].price``), and numbers
compare by value (1 == 1.0, never "1").

Messages go into ``.status`` and Events, which many people can read, so they never
quote a header value (the request's may be a token, the answer's a cookie) and quote
at most `EXCERPT` characters of anything taken from the body, in at most `MAX_MESSAGE`
characters overall.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..acceptance.spec import HttpCheck
from ..compare.differ import TRUNCATED, Leaf, flatten

EXCERPT = 64
"""At most this many characters of the body (or of a value from it) in a message."""
MAX_MESSAGE = 512


@dataclass(frozen=True)
class Answer:
    """What came back: status, headers (names lower-cased), body, and how long the
    request took in seconds (measured by the shell)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0

    __hash__ = None  # type: ignore[assignment]  # headers is a mapping

    def __post_init__(self) -> None:
        lowered = {name.lower(): value for name, value in self.headers.items()}
        object.__setattr__(self, "headers", MappingProxyType(lowered))


@dataclass(frozen=True)
class NoAnswer:
    """No answer at all: refused, reset, timed out, a name that does not resolve.
    ``reason`` is the shell's short description (it is quoted, bounded)."""

    reason: str


@dataclass(frozen=True)
class Outcome:
    """The verdict of one attempt and why, fit for ``.status``."""

    passed: bool
    message: str


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """``text`` quoted, cut to ``limit`` characters with an ellipsis when longer."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + "…"


def _bounded(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def _show(leaves: Mapping[str, Leaf], path: str) -> str:
    """The value at a path as a short text: a leaf's value, or a subtree's size."""
    if set(leaves) == {path}:
        leaf = leaves[path]
        if leaf[0] in ("object", "array"):
            return "{}" if leaf[0] == "object" else "[]"
        if leaf[0] == "null":
            return "null"
        if leaf[0] == "deep":
            return "a container too deep to compare"
        text = json.dumps(leaf[1])  # JSON spelling: "1" (a string) is not 1
        return text if len(text) <= EXCERPT else text[:EXCERPT] + "…"
    return f"a value of {len(leaves)} fields"


def _under(fields: Mapping[str, Leaf], path: str) -> dict[str, Leaf]:
    """The leaves at ``path`` or below it (``.`` or ``[`` follows: ``body.a`` is not
    above ``body.ab``)."""
    return {
        p: leaf
        for p, leaf in fields.items()
        if p == path or (p.startswith(path) and p[len(path)] in ".[")
    }


def _json_failures(check: HttpCheck, body: bytes) -> list[str]:
    if not check.expect.json:
        return []
    paths = ", ".join(check.expect.json)
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return [f"the body is not JSON, so {paths} cannot be read"]
    fields = flatten(value)
    truncated = any(p.endswith(TRUNCATED) for p in fields)
    failures = []
    for path, expected in check.expect.json.items():
        actual = _under(fields, path)
        if not actual:
            more = " (the body has more fields than are read)" if truncated else ""
            failures.append(f"{path} is missing{more}")
            continue
        wanted = flatten(expected, prefix=path)
        if actual != wanted:
            failures.append(f"{path} is {_show(actual, path)}, expected {_show(wanted, path)}")
    return failures


def judge(check: HttpCheck, answer: Answer | NoAnswer) -> Outcome:
    """Whether the answer meets every expectation of the check, and a message saying
    which failed (all of them, so one attempt tells the whole story) or what passed."""
    if isinstance(answer, NoAnswer):
        return Outcome(False, _bounded(f"no answer: {excerpt(answer.reason, 2 * EXCERPT)}"))
    expect = check.expect
    failures: list[str] = []
    if answer.status not in expect.status_codes:
        failures.append(f"status {answer.status} is not {_codes(expect.status_codes)}")
    if expect.max_latency_seconds is not None and not (
        math.isfinite(answer.seconds) and answer.seconds <= expect.max_latency_seconds
    ):
        failures.append(
            f"took {answer.seconds:.3g}s, more than {expect.max_latency_seconds:g}s allowed"
        )
    if expect.body_contains is not None:
        text = answer.body.decode("utf-8", errors="replace")
        if expect.body_contains not in text:
            failures.append(
                f"the body does not contain {excerpt(expect.body_contains)} "
                f"(it starts {excerpt(text)})"
            )
    failures += _json_failures(check, answer.body)
    where = f"{check.method} {excerpt(check.path)}"
    if failures:
        return Outcome(False, _bounded(f"{where}: " + "; ".join(failures)))
    return Outcome(True, _bounded(f"{where}: status {answer.status} in {answer.seconds:.3g}s"))


def _codes(codes: frozenset[int]) -> str:
    """A set of status codes, briefly: 2xx for the whole class, else the list."""
    parts: list[str] = []
    rest = set(codes)
    for hundred in range(100, 600, 100):
        block = set(range(hundred, hundred + 100))
        if block <= rest:
            parts.append(f"{hundred // 100}xx")
            rest -= block
    parts += [str(c) for c in sorted(rest)]
    return " or ".join(parts) if len(parts) < 2 else "one of " + ", ".join(parts)
