"""Which fields of two answers to the same request differ. Pure: no I/O, no clock.

A field is a name and a comparable value: ``status``; ``header:<lower-cased name>``
per response header; per JSON leaf of the body, its path (``body.items[0].price``);
a body that is not JSON (by its content-type, or because it does not parse) is the one
field ``body``. Two answers differ on a field when its values are unequal or it is
present on one side only. Noise (which of those differences also appear between two
instances of the old version) is not decided here: see `tally`.

Path syntax (the same in field names and in ``ignore_paths``):
- an object key made only of ``A-Z a-z 0-9 _ -`` is written ``.key``; any other key
  as ``["key"]`` (JSON-quoted), so ``{"a.b": 1}`` and ``{"a": {"b": 1}}`` never share
  a path;
- an array element is ``[index]``, compared by position;
- in ``ignore_paths`` only, ``[*]`` stands for any index, and a pattern also ignores
  everything below it (``body.meta`` ignores ``body.meta.trace[3].id``).

Values: numbers by value (1 == 1.0), never equal to a string or a boolean (1 != "1",
1 != true); ``null``, ``{}`` and ``[]`` are leaves of their own, so an emptied list or
a type change is a difference.

Bounds, so that one hostile body cannot cost unbounded memory downstream:
- depth: a container at depth `MAX_DEPTH` (below ``body``) is one field, its path,
  whose value is a digest of everything beneath it (ignored paths left out);
- fields: at most `MAX_FIELDS` fields per body, in key-sorted order; the leaves past
  the cap become one more field, ``body#truncated``: a count and a digest of them, so
  a difference there still shows (as that field).
A body too deep for the JSON parser is compared whole, like a non-JSON one.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

MAX_DEPTH = 32
MAX_FIELDS = 1000
BODY = "body"
STATUS = "status"
HEADER = "header:"
TRUNCATED = "#truncated"

# Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's, not the service's; date and
# server change per instance or per second; x-envoy-* is the data plane's. Kept on
# purpose: content-length (it changes exactly when the body does: if that is noise,
# noise subtraction removes it, and if it is not, it is a signal) and content-type.
DEFAULT_IGNORED_HEADERS: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "date",
        "server",
        "x-envoy-*",
    }
)

Leaf = tuple[object, ...]
"""A comparable value: a tag then the value, so that 1 and "1" and true never meet."""

_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_NULL: Leaf = ("null",)
_EMPTY_OBJECT: Leaf = ("object",)
_EMPTY_ARRAY: Leaf = ("array",)


def _header_items(
    headers: Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]],
) -> Iterator[tuple[str, str]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if isinstance(value, str):
            yield name, value
        else:
            for v in value:
                yield name, v


@dataclass(frozen=True, eq=True)
class Response:
    """One answer, as compared: names lower-cased, repeated headers joined with ", " in
    the order received (a proxy may fold them the same way). Built from a mapping
    (values a string or a list) or from (name, value) pairs."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        joined: dict[str, list[str]] = {}
        for name, value in _header_items(self.headers):
            joined.setdefault(name.lower(), []).append(value)
        normal = {name: ", ".join(values) for name, values in joined.items()}
        object.__setattr__(self, "headers", MappingProxyType(normal))

    __hash__ = None  # type: ignore[assignment]  # headers is a mapping

    @property
    def media_type(self) -> str:
        """The content-type without its parameters, lower-cased ("" when absent)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def is_json(self) -> bool:
        """Whether the body claims JSON: application/json or any ``+json`` type."""
        media = self.media_type
        return media == "application/json" or (
            media.startswith("application/") and media.endswith("+json")
        )


def _number(value: int | float) -> Leaf:
    if isinstance(value, float):
        if not math.isfinite(value):
            return ("number", repr(value))  # NaN must equal itself here
        if value.is_integer():
            return ("number", int(value))
    return ("number", value)


def _scalar(value: object) -> Leaf:
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return _number(value)
    return ("string", value)


def _key(path: str, key: str) -> str:
    if _SIMPLE_KEY.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


class _Digest:
    """Leaves folded into one comparable value, in traversal order."""

    def __init__(self) -> None:
        self.count = 0
        self._hash = hashlib.blake2b(digest_size=16)

    def add(self, path: str, leaf: Leaf) -> None:
        self.count += 1
        self._hash.update(repr((path, leaf)).encode() + b"\n")

    def leaf(self, tag: str) -> Leaf:
        return (tag, self.count, self._hash.hexdigest())


def flatten(
    value: object,
    *,
    prefix: str = BODY,
    ignored: IgnoredPaths | None = None,
    max_depth: int = MAX_DEPTH,
    max_fields: int = MAX_FIELDS,
) -> dict[str, Leaf]:
    """A parsed JSON value as {path: leaf}, keys sorted, bounded (see the module).

    Iterative, so a deep value costs no Python recursion.
    """
    out: dict[str, Leaf] = {}
    deep: dict[str, _Digest] = {}
    overflow = _Digest()
    skip = ignored.matches if ignored is not None else None
    # (path, value, depth, the path of the deep container it belongs to or None)
    stack: list[tuple[str, object, int, str | None]] = [(prefix, value, 0, None)]
    while stack:
        path, v, depth, sink = stack.pop()
        if skip is not None and skip(path):
            continue
        if isinstance(v, dict) and v:
            children = [(_key(path, str(k)), v[k]) for k in sorted(v, key=str)]
        elif isinstance(v, list) and v:
            children = [(f"{path}[{i}]", item) for i, item in enumerate(v)]
        else:
            leaf = (
                _EMPTY_OBJECT
                if isinstance(v, dict)
                else _EMPTY_ARRAY
                if isinstance(v, list)
                else _scalar(v)
            )
            if sink is not None:
                deep[sink].add(path, leaf)
            elif len(out) < max_fields:
                out[path] = leaf
            else:
                overflow.add(path, leaf)
            continue
        # past the field cap a too-deep container's leaves just join the overflow
        if sink is None and depth >= max_depth and len(out) < max_fields:
            sink = path
            deep[sink] = _Digest()
            out[path] = _NULL  # reserves its place; the digest replaces it below
        stack.extend((p, c, depth + 1, sink) for p, c in reversed(children))
    for path, digest in deep.items():
        out[path] = digest.leaf("deep")
    if overflow.count:
        out[prefix + TRUNCATED] = overflow.leaf("truncated")
    return out


def body_fields(
    response: Response,
    *,
    ignored: IgnoredPaths | None = None,
    max_depth: int = MAX_DEPTH,
    max_fields: int = MAX_FIELDS,
) -> dict[str, Leaf]:
    """The body's fields: flattened when it is JSON and parses, else ``body`` whole."""
    if response.is_json:
        try:
            value = json.loads(response.body)
        except (ValueError, RecursionError):
            pass  # not JSON after all (or too deep to parse): compared whole
        else:
            return flatten(value, ignored=ignored, max_depth=max_depth, max_fields=max_fields)
    if ignored is not None and ignored.matches(BODY):
        return {}
    return {BODY: ("bytes", response.body)}


class IgnoredPaths:
    """Compiled ``ignore_paths`` patterns (syntax in the module's docstring)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(sorted(set(patterns)))
        for p in self.patterns:
            if p != BODY and not p.startswith((BODY + ".", BODY + "[")):
                raise ValueError(f"an ignored path starts with {BODY!r}: {p!r}")
        alternatives = "|".join(re.escape(p).replace(r"\[\*\]", r"\[\d+\]") for p in self.patterns)
        self._regex = re.compile(f"(?:{alternatives})(?:$|[.\\[#])") if self.patterns else None

    def matches(self, path: str) -> bool:
        """Whether the path is ignored (it is a pattern, or lies below one)."""
        return self._regex is not None and self._regex.match(path) is not None


class IgnoredHeaders:
    """Header names to leave out, case-insensitive; a trailing ``*`` is a prefix."""

    def __init__(self, names: Iterable[str]) -> None:
        lowered = {n.lower() for n in names}
        self.exact = frozenset(n for n in lowered if not n.endswith("*"))
        self.prefixes = tuple(sorted(n[:-1] for n in lowered if n.endswith("*")))

    def matches(self, name: str) -> bool:
        return name in self.exact or name.startswith(self.prefixes)


@lru_cache(maxsize=64)
def _ignored_paths(patterns: tuple[str, ...]) -> IgnoredPaths:
    return IgnoredPaths(patterns)


@lru_cache(maxsize=64)
def _ignored_headers(names: frozenset[str]) -> IgnoredHeaders:
    return IgnoredHeaders(names)


@dataclass(frozen=True)
class Rules:
    """What to compare: built once per comparator (it compiles the patterns), then
    asked for every request. Pass ``DEFAULT_IGNORED_HEADERS | {...}`` to add headers
    to the defaults; ``ignore_headers`` replaces them."""

    ignore_headers: frozenset[str] = DEFAULT_IGNORED_HEADERS
    ignore_paths: tuple[str, ...] = ()
    compare_bodies: bool = True
    max_depth: int = MAX_DEPTH
    max_fields: int = MAX_FIELDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "ignore_headers", frozenset(self.ignore_headers))
        object.__setattr__(self, "ignore_paths", tuple(sorted(set(self.ignore_paths))))
        if self.max_depth < 0 or self.max_fields < 0:
            raise ValueError("max_depth and max_fields are not negative")
        _ignored_paths(self.ignore_paths)  # an invalid pattern fails here, not per request

    def fields(self, response: Response) -> dict[str, Leaf]:
        """Every compared field of one answer. Compute it once per answer: the primary's
        is compared twice (with the candidate's and with the secondary's)."""
        headers = _ignored_headers(self.ignore_headers)
        out: dict[str, Leaf] = {STATUS: ("status", response.status)}
        for name, value in response.headers.items():
            if not headers.matches(name):
                out[HEADER + name] = ("header", value)
        if self.compare_bodies:
            out.update(
                body_fields(
                    response,
                    ignored=_ignored_paths(self.ignore_paths),
                    max_depth=self.max_depth,
                    max_fields=self.max_fields,
                )
            )
        return out

    def differences(self, a: Response, b: Response) -> frozenset[str]:
        return differing(self.fields(a), self.fields(b))

    def observe(
        self, primary: Response, candidate: Response, secondary: Response
    ) -> tuple[frozenset[str], frozenset[str]]:
        """(raw, noise) of one mirrored request: primary vs candidate, primary vs
        secondary; what `tally.Tally.record` takes."""
        base = self.fields(primary)
        return differing(base, self.fields(candidate)), differing(base, self.fields(secondary))


_MISSING: Leaf = ("missing",)


def differing(a: Mapping[str, Leaf], b: Mapping[str, Leaf]) -> frozenset[str]:
    """The names whose values differ, a name on one side only included."""
    return frozenset(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))


def differences(
    a: Response,
    b: Response,
    ignore_headers: Iterable[str] = DEFAULT_IGNORED_HEADERS,
    ignore_paths: Iterable[str] = (),
    compare_bodies: bool = True,
) -> frozenset[str]:
    """The field names on which two answers differ (one-off form of `Rules`)."""
    rules = Rules(frozenset(ignore_headers), tuple(ignore_paths), compare_bodies)
    return rules.differences(a, b)
