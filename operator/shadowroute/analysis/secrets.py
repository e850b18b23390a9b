"""The Prometheus endpoint of an analysis spec, with its credentials from a Secret.

The Secret is read through the operator's `Secrets` (secrets.py: the cache, and
`redact` for every value read or sent). A Secret that cannot be read raises
CredentialsError (reason PrometheusUnavailable: Prometheus cannot be asked); one that is
read but holds no usable credential (no known key, a token or password that is empty or
holds a control character such as a line break, which no HTTP header may carry) raises
InvalidCredentials (reason CredentialsInvalid), before any request is made.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from ..api.duration import parse_duration
from ..api.models import AnalysisSpec
from ..secrets import CredentialsError, InvalidCredentials, Secrets, text
from .prometheus import Endpoint

__all__ = ["ADDRESS_ENV", "CredentialsError", "InvalidCredentials", "Secrets", "endpoint"]

ADDRESS_ENV = "SHADOWROUTE_PROMETHEUS_URL"
TOKEN_KEY, USERNAME_KEY, PASSWORD_KEY, CA_KEY = "token", "username", "password", "ca.crt"


async def endpoint(
    spec: AnalysisSpec, namespace: str, kube: Any, secrets: Secrets | None = None
) -> Endpoint:
    """The Prometheus endpoint of an analysis spec, credentials resolved; `secrets` is
    the operator's (a fresh one, without a cache, for tools and tests)."""
    secrets = secrets if secrets is not None else Secrets()
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
    data = await secrets.read(kube, namespace, ref)
    headers: dict[str, str] = {}
    where = f"Secret {namespace}/{ref}"
    if TOKEN_KEY in data:
        # A trailing line break (`echo token > file`) is dropped; one inside is refused.
        token = _credential(data[TOKEN_KEY], where, TOKEN_KEY, data[TOKEN_KEY].strip())
        if any(c.isspace() for c in token):
            raise InvalidCredentials(f"{where}: key {TOKEN_KEY} holds a space inside the token")
        headers["Authorization"] = f"Bearer {token}"
        secrets.remember(token)
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
        secrets.remember(user, password, header)
    context = None
    if CA_KEY in data:
        context = secrets.ssl_context(data[CA_KEY], where, CA_KEY)
    if not headers and context is None:
        raise InvalidCredentials(
            f"{where} has none of the keys {TOKEN_KEY}, {USERNAME_KEY}/{PASSWORD_KEY}, {CA_KEY}"
        )
    return Endpoint(address, timeout, headers, context)


def _credential(raw: bytes, where: str, key: str, trimmed: bytes) -> str:
    """A token, username or password as it will be sent: UTF-8, not empty, and free of
    control characters (a line break in a header value would end the header; aiohttp
    refuses it with a ValueError at every request). The message never shows the value."""
    text(raw, where, key)
    value = text(trimmed, where, key)
    if not value:
        raise InvalidCredentials(f"{where}: key {key} is empty")
    if any(_is_control(c) for c in value):
        raise InvalidCredentials(
            f"{where}: key {key} holds a line break or another control character; "
            "write the value without it"
        )
    return value


def _is_control(c: str) -> bool:
    return ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F
