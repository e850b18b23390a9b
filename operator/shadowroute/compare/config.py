"""The comparator's command line, parsed into one frozen `Config`. Pure: no I/O.

Durations are Go-style ("5s", "500ms"), as everywhere else in shadowroute.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..api.duration import parse_duration
from ..observability.logs import FORMATS
from .differ import DEFAULT_IGNORED_HEADERS, Rules

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
DEFAULT_MAX_BODY_BYTES = 1_048_576
DEFAULT_MAX_MISMATCH_RATE = 0.01
DEFAULT_MIN_COMPARED = 100


@dataclass(frozen=True)
class Config:
    """What one comparator compares, and how (one per shadowing revision)."""

    candidate: str
    baseline: str
    route: str
    revision: str
    listen_port: int = 8070
    admin_port: int = 8071
    listen_address: str = "0.0.0.0"
    methods: frozenset[str] = frozenset(SAFE_METHODS)
    ignore_headers: frozenset[str] = frozenset()
    ignore_paths: tuple[str, ...] = ()
    compare_bodies: bool = True
    max_in_flight: int = 64
    timeout: float = 5.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_mismatch_rate: float = DEFAULT_MAX_MISMATCH_RATE
    min_compared: int = DEFAULT_MIN_COMPARED
    samples: int = 3
    log_format: str = "text"
    rules: Rules = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("candidate", "baseline"):
            check_base_url(getattr(self, name), name)
        if not self.route or not self.revision:
            raise ValueError("--route and --revision are not empty")
        for name in ("listen_port", "admin_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ValueError(f"--{name.replace('_', '-')} is a port (0..65535)")
        if self.listen_port == self.admin_port and self.listen_port != 0:
            raise ValueError("--listen-port and --admin-port differ")
        if not self.methods:
            raise ValueError("at least one --method")
        if self.max_in_flight < 1:
            raise ValueError("--max-in-flight is at least 1")
        if not self.timeout > 0:
            raise ValueError("--timeout is more than 0s")
        if self.max_body_bytes < 0:
            raise ValueError("--max-body-bytes is not negative")
        if not 0 <= self.max_mismatch_rate <= 1:
            raise ValueError("--max-mismatch-rate is a fraction in [0, 1]")
        if self.min_compared < 0:
            raise ValueError("--min-compared is not negative")
        if self.samples < 0:
            raise ValueError("--samples is not negative")
        object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))
        # The user's ignored headers are added to the defaults, never replace them.
        ignored = frozenset(h.lower() for h in self.ignore_headers)
        object.__setattr__(self, "ignore_headers", ignored)
        # Rules compiles the patterns: an invalid --ignore-path fails here, at startup.
        rules = Rules(DEFAULT_IGNORED_HEADERS | ignored, self.ignore_paths, self.compare_bodies)
        object.__setattr__(self, "rules", rules)


def check_base_url(url: str, name: str = "url") -> str:
    """An http(s) URL with a host and no query or fragment (a path prefix is allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--{name} is an http:// or https:// URL with a host, got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"--{name} has no query or fragment: {url!r}")
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError:
        raise ValueError(f"--{name} has an invalid port: {url!r}") from None
    return url


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a fraction in [0, 1], got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shadowroute-compare",
        description="The mirror target of a shadowing revision: asks the candidate once and "
        "the baseline twice per mirrored request, counts the differing fields beyond noise.",
    )
    p.add_argument("--candidate", required=True, help="base URL of the new version")
    p.add_argument("--baseline", required=True, help="base URL of the old version")
    p.add_argument("--route", required=True, help="the ShadowRoute's name (a label)")
    p.add_argument("--revision", required=True, help="the shadowed revision (a label)")
    p.add_argument("--listen-port", type=int, default=8070, help="mirrored traffic; 8070")
    p.add_argument("--admin-port", type=int, default=8071, help="/metrics /summary /healthz")
    p.add_argument(
        "--listen-address",
        default=None,
        help="address of both ports (default: $BIND_ADDRESS if set, else every address)",
    )
    p.add_argument(
        "--method",
        action="append",
        dest="methods",
        metavar="METHOD",
        help=f"compare this method (repeatable); default {', '.join(SAFE_METHODS)}",
    )
    p.add_argument(
        "--ignore-header",
        action="append",
        default=[],
        dest="ignore_headers",
        metavar="NAME",
        help="leave this response header out (repeatable; a trailing * is a prefix)",
    )
    p.add_argument(
        "--ignore-path",
        action="append",
        default=[],
        dest="ignore_paths",
        metavar="PATTERN",
        help="leave this JSON body path out, e.g. body.meta or body.items[*].id (repeatable)",
    )
    p.add_argument("--no-bodies", action="store_true", help="compare status and headers only")
    p.add_argument("--max-in-flight", type=int, default=64, help="comparisons at once; 64")
    p.add_argument("--timeout", type=_duration, default=5.0, help="per upstream ask; 5s")
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help=f"bigger request or response bodies are skipped; {DEFAULT_MAX_BODY_BYTES}",
    )
    p.add_argument(
        "--max-mismatch-rate",
        type=_fraction,
        default=DEFAULT_MAX_MISMATCH_RATE,
        help=f"the summary's verdict fails above this; {DEFAULT_MAX_MISMATCH_RATE}",
    )
    p.add_argument(
        "--min-compared",
        type=int,
        default=DEFAULT_MIN_COMPARED,
        help=f"no verdict before this many compared requests; {DEFAULT_MIN_COMPARED}",
    )
    p.add_argument("--samples", type=int, default=3, help="sample pairs kept per field; 3")
    p.add_argument("--log-format", choices=FORMATS, default="text", help="text or json lines")
    return p


def parse_args(argv: list[str] | None = None) -> Config:
    """The Config of a command line; exits with a usage message on bad input."""
    p = parser()
    args = p.parse_args(argv)
    try:
        return Config(
            candidate=args.candidate,
            baseline=args.baseline,
            route=args.route,
            revision=args.revision,
            listen_port=args.listen_port,
            admin_port=args.admin_port,
            listen_address=args.listen_address or os.environ.get("BIND_ADDRESS") or "0.0.0.0",
            methods=frozenset(args.methods or SAFE_METHODS),
            ignore_headers=frozenset(args.ignore_headers),
            ignore_paths=tuple(args.ignore_paths),
            compare_bodies=not args.no_bodies,
            max_in_flight=args.max_in_flight,
            timeout=args.timeout,
            max_body_bytes=args.max_body_bytes,
            max_mismatch_rate=args.max_mismatch_rate,
            min_compared=args.min_compared,
            samples=args.samples,
            log_format=args.log_format,
        )
    except ValueError as e:
        p.error(str(e))
