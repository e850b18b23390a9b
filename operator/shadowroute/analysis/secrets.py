"""Credentials from Secrets: the Prometheus endpoint's auth and TLS, webhook URLs.

A Secret is read through the operator's API client (its worker pool, kube/), cached for a
short while so a run every few seconds does not read it every time, and re-read after
that, so a rotated credential is picked up without a restart. Values stay in memory:
error messages name the Secret and the key, never what it holds.
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
    """A Secret is missing, unreadable or incomplete; the message says which and why."""


@dataclass
class _Cached:
    until: float
    data: dict[str, bytes]


_cache: dict[tuple[str, str], _Cached] = {}
_ssl_contexts: dict[str, ssl.SSLContext] = {}


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
        token = _text(data[TOKEN_KEY], where, TOKEN_KEY).strip()
        headers["Authorization"] = f"Bearer {token}"
    elif USERNAME_KEY in data or PASSWORD_KEY in data:
        if USERNAME_KEY not in data or PASSWORD_KEY not in data:
            raise CredentialsError(f"{where} needs both {USERNAME_KEY} and {PASSWORD_KEY}")
        pair = data[USERNAME_KEY].strip() + b":" + data[PASSWORD_KEY].rstrip(b"\r\n")
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    context = None
    if CA_KEY in data:
        context = _ssl_context(data[CA_KEY], where)
    if not headers and context is None:
        raise CredentialsError(
            f"{where} has none of the keys {TOKEN_KEY}, {USERNAME_KEY}/{PASSWORD_KEY}, {CA_KEY}"
        )
    return Endpoint(address, timeout, headers, context)


def _text(raw: bytes, where: str, key: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise CredentialsError(f"{where}: key {key} is not UTF-8 text") from None


def _ssl_context(pem: bytes, where: str) -> ssl.SSLContext:
    """A TLS context trusting the given CA bundle (one per distinct bundle)."""
    digest = hashlib.sha256(pem).hexdigest()
    context = _ssl_contexts.get(digest)
    if context is None:
        try:
            context = ssl.create_default_context(cadata=_text(pem, where, CA_KEY))
        except (ssl.SSLError, ValueError):
            raise CredentialsError(f"{where}: key {CA_KEY} is not a PEM CA bundle") from None
        _ssl_contexts[digest] = context
    return context
