"""Credentials from Secrets: the Prometheus endpoint's auth and TLS, webhook URLs.

A Secret is read through the operator's API client (its worker pool, kube/), cached for a
short while so a run every few seconds does not read it every time, and re-read after
that, so a rotated credential is picked up without a restart. Values stay in memory:
error messages name the Secret and the key, never what it holds, and `redact` takes
every value read out of a text (an error message, a traceback) before it is shown.

A Secret that cannot be read raises CredentialsError (reason PrometheusUnavailable:
Prometheus cannot be asked); one that is read but holds no usable credential (no known
key, a token or password that is empty or holds a control character such as a line
break, which no HTTP header may carry) raises InvalidCredentials (reason
CredentialsInvalid), before any request is made.
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import time
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from ..api.duration import parse_duration
from ..api.models import AnalysisSpec
from .prometheus import Endpoint

CACHE_SECONDS = 30.0
ADDRESS_ENV = "SHADOWROUTE_PROMETHEUS_URL"
TOKEN_KEY, USERNAME_KEY, PASSWORD_KEY, CA_KEY = "token", "username", "password", "ca.crt"


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


_cache: dict[tuple[str, str], _Cached] = {}
_ssl_contexts: dict[str, ssl.SSLContext] = {}
_sensitive: set[str] = set()
"""Every credential sent (token, username, password, the header made of them): what
`redact` removes from texts. Bounded by the distinct credentials in use."""
MIN_REDACTED = 4  # shorter strings would blank out ordinary words, and guard nothing


async def read_secret(kube: Any, namespace: str, name: str) -> dict[str, bytes]:
    """The decoded data of Secret namespace/name (cached for CACHE_SECONDS)."""
    key = (namespace, name)
    hit = _cache.get(key)
    if hit and hit.until > time.monotonic():
        return hit.data
    if kube is None:
        raise CredentialsError(f"Secret {namespace}/{name}: no API client to read it with")
    try:
        secret = await kube.read_secret(namespace, name)
    except ApiException as exc:
        if exc.status == 404:
            raise CredentialsError(f"Secret {namespace}/{name} not found") from None
        if exc.status == 403:
            raise CredentialsError(
                f"the operator may not read Secret {namespace}/{name} (RBAC: get secrets)"
            ) from None
        raise CredentialsError(
            f"Secret {namespace}/{name}: HTTP {exc.status} {exc.reason}"
        ) from None
    data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
    _cache[key] = _Cached(time.monotonic() + CACHE_SECONDS, data)
    return data


def forget(namespace: str, name: str) -> None:
    _cache.pop((namespace, name), None)


async def endpoint(spec: AnalysisSpec, namespace: str, kube: Any) -> Endpoint:
    """The Prometheus endpoint of an analysis spec, credentials resolved."""
    prom = spec.prometheus
    address = prom.address if prom is not None else os.environ.get(ADDRESS_ENV, "")
    if not address:
        raise CredentialsError(
            "no Prometheus address: set spec.analysis.prometheus.address "
            f"(or the operator's {ADDRESS_ENV})"
        )
    timeout = parse_duration(prom.timeout) if prom is not None else 5.0
    if prom is None or prom.secret_ref is None:
        return Endpoint(address, timeout)
    ref = prom.secret_ref.name
    data = await read_secret(kube, namespace, ref)
    headers: dict[str, str] = {}
    where = f"Secret {namespace}/{ref}"
    if TOKEN_KEY in data:
        # A trailing line break (`echo token > file`) is dropped; one inside is refused.
        token = _credential(data[TOKEN_KEY], where, TOKEN_KEY, data[TOKEN_KEY].strip())
        if any(c.isspace() for c in token):
            raise InvalidCredentials(f"{where}: key {TOKEN_KEY} holds a space inside the token")
        headers["Authorization"] = f"Bearer {token}"
        _remember(token)
    elif USERNAME_KEY in data or PASSWORD_KEY in data:
        if USERNAME_KEY not in data or PASSWORD_KEY not in data:
            raise InvalidCredentials(f"{where} needs both {USERNAME_KEY} and {PASSWORD_KEY}")
        user = _credential(data[USERNAME_KEY], where, USERNAME_KEY, data[USERNAME_KEY].strip())
        if ":" in user:
            raise InvalidCredentials(f"{where}: key {USERNAME_KEY} holds a colon (RFC 7617)")
        password = data[PASSWORD_KEY]
        password = _credential(password, where, PASSWORD_KEY, password.rstrip(b"\r\n"))
        header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = header
        _remember(user, password, header)
    context = None
    if CA_KEY in data:
        context = _ssl_context(data[CA_KEY], where)
    if not headers and context is None:
        raise InvalidCredentials(
            f"{where} has none of the keys {TOKEN_KEY}, {USERNAME_KEY}/{PASSWORD_KEY}, {CA_KEY}"
        )
    return Endpoint(address, timeout, headers, context)


def _text(raw: bytes, where: str, key: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise InvalidCredentials(f"{where}: key {key} is not UTF-8 text") from None


def _credential(raw: bytes, where: str, key: str, trimmed: bytes) -> str:
    """A token, username or password as it will be sent: UTF-8, not empty, and free of
    control characters (a line break in a header value would end the header; aiohttp
    refuses it with a ValueError at every request). The message never shows the value."""
    _text(raw, where, key)
    text = _text(trimmed, where, key)
    if not text:
        raise InvalidCredentials(f"{where}: key {key} is empty")
    if any(_is_control(c) for c in text):
        raise InvalidCredentials(
            f"{where}: key {key} holds a line break or another control character; "
            "write the value without it"
        )
    return text


def _is_control(c: str) -> bool:
    return ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F


def _remember(*values: str) -> None:
    for value in values:
        if len(value) >= MIN_REDACTED:
            _sensitive.add(value)


def redact(text: str) -> str:
    """The text with every credential this process has read from a Secret, and every
    line of one, replaced by `[redacted]`; for error messages and tracebacks that may
    quote what was being sent."""
    pieces: set[str] = set(_sensitive)
    for hit in _cache.values():
        for raw in hit.data.values():
            value = raw.decode(errors="replace")
            pieces.add(value.strip())
            pieces.update(line.strip() for line in value.splitlines())
    for piece in sorted((p for p in pieces if len(p) >= MIN_REDACTED), key=len, reverse=True):
        text = text.replace(piece, "[redacted]")
    return text


def _ssl_context(pem: bytes, where: str) -> ssl.SSLContext:
    """A TLS context trusting the given CA bundle (one per distinct bundle)."""
    digest = hashlib.sha256(pem).hexdigest()
    context = _ssl_contexts.get(digest)
    if context is None:
        try:
            context = ssl.create_default_context(cadata=_text(pem, where, CA_KEY))
        except (ssl.SSLError, ValueError):
            raise InvalidCredentials(f"{where}: key {CA_KEY} is not a PEM CA bundle") from None
        _ssl_contexts[digest] = context
    return context
