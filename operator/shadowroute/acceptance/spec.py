"""What an acceptance check is: its name, the hook it runs at, its time and retry
budget, and what it does (an http request judged against expectations, or a Job).

Frozen dataclasses on purpose, not pydantic models of ``ShadowRouteSpec``: the CRD must
not change until the feature is wired (the models generate it). When it is, the models
can build these, and these stay what the pure core reasons about.

Every rule that would be a CEL rule later is checked in ``__post_init__``, so a check
built in Python is as valid as one the API server would accept.

Secrets: a header value is a literal or a `SecretValue` (a Secret's name and key,
resolved by the shell at request time); neither the literal nor the resolved value is
ever written into a message or the status (`http` names headers, never their values).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..api.duration import parse_duration
from ..api.jsonpath import canonical_json_path
from ..api.models import AcceptanceCheck, CheckHook

MAX_CHECK_NAME_LENGTH = 40
"""Short enough that ``<route>-check-<name>-…`` Jobs rarely need hash-shortening, and a
valid label value (``shadowroute.io/check``)."""
MAX_RETRIES = 10
MAX_TIMEOUT_SECONDS = 24 * 3600.0
DEFAULT_STATUS_CODES: frozenset[int] = frozenset(range(200, 300))
"""Any 2xx passes unless the check says otherwise: what "it works" means for HTTP."""

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: methods, header names


Hook = CheckHook
"""When a check runs in the life of a revision (the resource's enum, one spelling)."""


@dataclass(frozen=True)
class SecretValue:
    """A header value kept in a Secret (its name and key in the route's namespace), so
    that the spec, the status and the logs never hold it. Resolving it is the shell's
    job; the pure core only carries the reference."""

    name: str
    key: str

    def __post_init__(self) -> None:
        if not self.name or not self.key:
            raise ValueError("a SecretValue names both a Secret and a key")

    def __repr__(self) -> str:  # the reference is not secret, but say it is one
        return f"SecretValue(name={self.name!r}, key={self.key!r})"


HeaderValue = str | SecretValue


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Expect:
    """What an answer must be to pass: every expectation given must hold.

    - ``status_codes``: the status is one of these (any 2xx by default);
    - ``body_contains``: the body, decoded as UTF-8 (invalid bytes replaced), contains it;
    - ``json``: JSON path → expected JSON value; the value at the path (a whole subtree
      for an object or array) equals it, numbers by value (1 == 1.0, 1 != "1");
    - ``max_latency_seconds``: the answer took at most this long.
    """

    status_codes: frozenset[int] = DEFAULT_STATUS_CODES
    body_contains: str | None = None
    json: Mapping[str, Any] = field(default_factory=dict)
    max_latency_seconds: float | None = None

    __hash__ = None  # type: ignore[assignment]  # json is a mapping

    def __post_init__(self) -> None:
        codes = frozenset(self.status_codes)
        if not codes or any(isinstance(c, bool) or not 100 <= c <= 599 for c in codes):
            raise ValueError("status_codes is a non-empty set of codes within 100..599")
        object.__setattr__(self, "status_codes", codes)
        if self.body_contains == "":
            raise ValueError("body_contains is absent or a non-empty string")
        if self.max_latency_seconds is not None and not (
            math.isfinite(self.max_latency_seconds) and self.max_latency_seconds > 0
        ):
            raise ValueError("max_latency_seconds is positive")
        paths = {canonical_json_path(p): v for p, v in self.json.items()}
        if len(paths) != len(self.json):
            raise ValueError("two JSON paths of the expectation name the same field")
        for p, v in paths.items():
            try:
                json.dumps(v, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise ValueError(f"the expected value at {p} is not JSON: {e}") from None
        object.__setattr__(self, "json", _frozen(paths))


@dataclass(frozen=True)
class HttpCheck:
    """One request to the new version (where it is sent is the shell's concern: its
    Service or the preview route) and what its answer must be. Header names are
    case-insensitive, kept lower-cased."""

    method: str = "GET"
    path: str = "/"
    headers: Mapping[str, HeaderValue] = field(default_factory=dict)
    port: int | None = None
    """The Service port asked; None means the port traffic is routed to."""
    body: str = ""
    expect: Expect = field(default_factory=Expect)

    __hash__ = None  # type: ignore[assignment]  # headers is a mapping

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.method):
            raise ValueError(f"not an HTTP method: {self.method!r}")
        object.__setattr__(self, "method", self.method.upper())
        if not self.path.startswith("/") or any(c.isspace() for c in self.path):
            raise ValueError(f"an http check's path starts with / and has no space: {self.path!r}")
        headers: dict[str, HeaderValue] = {}
        for name, value in self.headers.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"not a header name: {name!r}")
            if not isinstance(value, str | SecretValue):
                raise ValueError(f"header {name}: a string or a SecretValue")
            if isinstance(value, str) and ("\r" in value or "\n" in value):
                raise ValueError(f"header {name}: a value has no line break")  # value unsaid
            if name.lower() in headers:
                raise ValueError(f"header {name.lower()} is given twice")
            headers[name.lower()] = value
        object.__setattr__(self, "headers", _frozen(headers))

    @property
    def secret_headers(self) -> tuple[str, ...]:
        """The headers whose values the shell reads from Secrets, sorted."""
        return tuple(sorted(n for n, v in self.headers.items() if isinstance(v, SecretValue)))


@dataclass(frozen=True)
class JobCheck:
    """A Job from a pod template (``{"metadata": …, "spec": …}``): an acceptance or
    load-test suite in a container of the user's, passing when the Job succeeds."""

    template: Mapping[str, Any]

    __hash__ = None  # type: ignore[assignment]  # template is a mapping

    def __post_init__(self) -> None:
        spec = self.template.get("spec") if isinstance(self.template, Mapping) else None
        if not isinstance(spec, Mapping) or not spec.get("containers"):
            raise ValueError("a job check's template is a pod template with containers")
        object.__setattr__(self, "template", _frozen(self.template))


@dataclass(frozen=True)
class Check:
    """One acceptance check. ``retries`` is the number of attempts allowed beyond the
    first, so a check runs at most ``1 + retries`` times per revision (per step for
    `Hook.EACH_STEP`); ``timeout_seconds`` bounds each attempt."""

    name: str
    hook: Hook
    action: HttpCheck | JobCheck
    timeout_seconds: float = 30.0
    retries: int = 0

    __hash__ = None  # type: ignore[assignment]  # its action holds mappings

    def __post_init__(self) -> None:
        if len(self.name) > MAX_CHECK_NAME_LENGTH or not _DNS_LABEL.fullmatch(self.name):
            raise ValueError(
                f"a check's name is a DNS label of at most {MAX_CHECK_NAME_LENGTH} "
                f"characters: {self.name!r}"
            )
        object.__setattr__(self, "hook", Hook(self.hook))
        if not isinstance(self.action, HttpCheck | JobCheck):
            raise ValueError("a check's action is an HttpCheck or a JobCheck")
        if isinstance(self.timeout_seconds, bool) or not (
            math.isfinite(self.timeout_seconds) and 0 < self.timeout_seconds <= MAX_TIMEOUT_SECONDS
        ):
            raise ValueError(f"timeout_seconds is within (0, {MAX_TIMEOUT_SECONDS:g}]")
        if isinstance(self.retries, bool) or not 0 <= self.retries <= MAX_RETRIES:
            raise ValueError(f"retries is within 0..{MAX_RETRIES}")

    @property
    def max_attempts(self) -> int:
        return 1 + self.retries


def checks_for(checks: Iterable[Check], hook: Hook) -> tuple[Check, ...]:
    """The checks of one hook, in declared order (the order they run in)."""
    return tuple(c for c in checks if c.hook == hook)


def duplicate_names(checks: Sequence[Check]) -> tuple[str, ...]:
    """Names given to more than one check, sorted: a check's records are found by name,
    so the list that will become the spec must have none (its CEL rule, later)."""
    counts = Counter(c.name for c in checks)
    return tuple(sorted(name for name, n in counts.items() if n > 1))


def from_model(model: AcceptanceCheck) -> Check:
    """The check a `spec.checks` entry declares, as the pure core reasons about it."""
    action: HttpCheck | JobCheck
    if model.http is not None:
        h = model.http
        headers: dict[str, HeaderValue] = {
            x.name: (
                x.value
                if x.value is not None
                else SecretValue(x.secret_key_ref.name, x.secret_key_ref.key)  # type: ignore[union-attr]
            )
            for x in h.headers
        }
        e = h.expect
        expect = Expect(
            status_codes=frozenset(e.status_codes) if e.status_codes else DEFAULT_STATUS_CODES,
            body_contains=e.body_contains,
            json={j.path: j.value for j in e.json_},
            max_latency_seconds=parse_duration(e.max_latency) if e.max_latency else None,
        )
        action = HttpCheck(
            method=h.method, path=h.path, headers=headers, port=h.port, body=h.body, expect=expect
        )
    else:
        assert model.job is not None  # the model has exactly one of them
        action = JobCheck(model.job.template.model_dump(mode="json", by_alias=True))
    return Check(
        model.name,
        Hook(model.when),
        action,
        timeout_seconds=parse_duration(model.timeout),
        retries=model.retries,
    )


def from_models(models: Iterable[AcceptanceCheck]) -> tuple[Check, ...]:
    return tuple(from_model(m) for m in models)
