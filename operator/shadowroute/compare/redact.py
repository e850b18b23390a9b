"""Which headers carry credentials, and their values hidden. Pure.

Samples show headers so that a person can see why two answers differ; a credential
must never reach the summary (it is read through the API server's service proxy by
anyone allowed to, and pasted into tickets). Logs carry no header values at all.
"""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "<redacted>"
CREDENTIAL_HEADERS: frozenset[str] = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
CREDENTIAL_WORDS: tuple[str, ...] = ("token", "secret", "password", "auth", "api-key", "apikey")
MAX_HEADERS = 64
MAX_HEADER_VALUE = 512


def is_credential(name: str) -> bool:
    """Whether a header (or query parameter) may carry a credential, by its name:
    case-insensitive, ``_`` read as ``-``."""
    lowered = name.lower().replace("_", "-")
    return lowered in CREDENTIAL_HEADERS or any(w in lowered for w in CREDENTIAL_WORDS)


def redact_headers(
    headers: Iterable[tuple[str, str]],
    *,
    max_headers: int = MAX_HEADERS,
    max_value: int = MAX_HEADER_VALUE,
) -> dict[str, str]:
    """Headers as shown in a sample: names lower-cased, repeated ones joined with ", ",
    credentials `REDACTED`, at most `max_headers` names and `max_value` characters a
    value (cut values end with "…")."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key not in out and len(out) >= max_headers:
            continue
        shown = REDACTED if is_credential(key) else value
        out[key] = f"{out[key]}, {shown}" if key in out and shown != REDACTED else shown
    return {k: v if len(v) <= max_value else v[: max_value - 1] + "…" for k, v in out.items()}
