"""Secrets read for credentials (a Prometheus token, a webhook URL), cached briefly.

A Secret is read through the operator's API client (its worker pool, kube/), cached for a
short while so a run every few seconds does not read it every time, and re-read after
that, so a rotated credential is picked up without a restart. Values stay in memory:
error messages name the Secret and the key, never what it holds, and `redact` takes
every value read out of a text (an error message, a traceback) before it is shown.

One `Secrets` is built at the operator's startup (services.py) and shared by the
analysis and the notifications; tools and tests make their own.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
import time
from dataclasses import dataclass
from typing import Any

from .api_errors import ApiError

CACHE_SECONDS = 30.0
MIN_REDACTED = 4  # shorter strings would blank out ordinary words, and guard nothing


class CredentialsError(Exception):
    """A Secret is missing or unreadable; the message says which and why."""

    reason = "PrometheusUnavailable"


class InvalidCredentials(CredentialsError):
    """A Secret was read, but what it holds cannot be sent: the message names the Secret
    and the key and what is wrong with it, never the value."""

    reason = "CredentialsInvalid"


@dataclass
class _Cached:
    until: float
    data: dict[str, bytes]


def text(raw: bytes, where: str, key: str) -> str:
    """A Secret's value as text; InvalidCredentials (naming where and key) if it is not."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise InvalidCredentials(f"{where}: key {key} is not UTF-8 text") from None


class Secrets:
    """The Secrets read (cached), the credentials sent (for `redact`), and the TLS
    contexts made from CA bundles (one per distinct bundle)."""

    def __init__(self, cache_seconds: float = CACHE_SECONDS) -> None:
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._ssl_contexts: dict[str, ssl.SSLContext] = {}
        self._sensitive: set[str] = set()
        """Every credential sent (token, username, password, the header made of them):
        what `redact` removes from texts. Bounded by the distinct credentials in use."""

    async def read(self, kube: Any, namespace: str, name: str) -> dict[str, bytes]:
        """The decoded data of Secret namespace/name (cached for cache_seconds)."""
        key = (namespace, name)
        hit = self._cache.get(key)
        if hit and hit.until > time.monotonic():
            return hit.data
        if kube is None:
            raise CredentialsError(f"Secret {namespace}/{name}: no API client to read it with")
        try:
            secret = await kube.read_secret(namespace, name)
        except ApiError as exc:
            if exc.status == 404:
                raise CredentialsError(f"Secret {namespace}/{name} not found") from None
            if exc.status == 403:
                raise CredentialsError(
                    f"the operator may not read Secret {namespace}/{name} (RBAC: get secrets)"
                ) from None
            raise CredentialsError(
                f"Secret {namespace}/{name}: HTTP {exc.status} {exc.reason}"
            ) from None
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        self._cache[key] = _Cached(time.monotonic() + self.cache_seconds, data)
        return data

    def forget(self, namespace: str, name: str) -> None:
        self._cache.pop((namespace, name), None)

    def remember(self, *values: str) -> None:
        """Credentials about to be sent: `redact` removes them from texts from now on."""
        for value in values:
            if len(value) >= MIN_REDACTED:
                self._sensitive.add(value)

    def redact(self, text: str) -> str:
        """The text with every credential read from a Secret, and every line of one,
        replaced by `[redacted]`; for error messages and tracebacks that may quote what
        was being sent."""
        pieces: set[str] = set(self._sensitive)
        for hit in self._cache.values():
            for raw in hit.data.values():
                value = raw.decode(errors="replace")
                pieces.add(value.strip())
                pieces.update(line.strip() for line in value.splitlines())
        for piece in sorted((p for p in pieces if len(p) >= MIN_REDACTED), key=len, reverse=True):
            text = text.replace(piece, "[redacted]")
        return text

    def ssl_context(self, pem: bytes, where: str, key: str) -> ssl.SSLContext:
        """A TLS context trusting the given CA bundle (one per distinct bundle)."""
        digest = hashlib.sha256(pem).hexdigest()
        context = self._ssl_contexts.get(digest)
        if context is None:
            try:
                context = ssl.create_default_context(cadata=text(pem, where, key))
            except (ssl.SSLError, ValueError):
                raise InvalidCredentials(f"{where}: key {key} is not a PEM CA bundle") from None
            self._ssl_contexts[digest] = context
        return context
