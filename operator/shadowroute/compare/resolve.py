"""Where the comparator sends its asks, and with which Host and headers. Pure: the
environment is passed in, no DNS here.

- A single-label host (``web-shadow``) whose Kubernetes service-link variables exist
  (``WEB_SHADOW_SERVICE_HOST`` and ``WEB_SHADOW_SERVICE_PORT``) is asked at that
  ClusterIP and the URL's port (the Service port): no DNS lookup per connection. Any
  other host is left to the resolver (cluster DNS). An https URL keeps its name, so
  that TLS verifies the name it was given.
- Envoy's RequestMirror appends ``-shadow`` to the mirrored request's host (before the
  port since envoyproxy/envoy#2600: ``web:8080`` becomes ``web-shadow:8080``; Envoy
  Gateway turns the suffix off since envoyproxy/gateway#7229); the asks carry the host
  the client used, so that the services see the same request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

SHADOW_SUFFIX = "-shadow"
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Not forwarded: hop-by-hop headers (RFC 9110 7.6.1) belong to one connection; Host and
# the body's framing are set by the client for each ask.
HOP_BY_HOP: frozenset[str] = frozenset(
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
        "host",
        "content-length",
        "expect",
    }
)


@dataclass(frozen=True)
class Target:
    """One upstream as asked: ``scheme://address:port`` plus the URL's path prefix."""

    scheme: str
    address: str
    port: int
    prefix: str = ""
    via_service_link: bool = False

    def url(self, path_and_query: str) -> str:
        """The ask's URL: the prefix, then the mirrored request's path and query as they
        came (still percent-encoded)."""
        if not path_and_query.startswith("/"):
            path_and_query = "/" + path_and_query
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}{self.prefix}{path_and_query}"


def service_link_env(host: str) -> tuple[str, str] | None:
    """The names of the service-link variables of a single-label host, or None."""
    if not _LABEL.fullmatch(host):
        return None
    stem = host.upper().replace("-", "_")
    return f"{stem}_SERVICE_HOST", f"{stem}_SERVICE_PORT"


def resolve(url: str, environ: Mapping[str, str]) -> Target:
    """The Target of a base URL (see the module for the service-link rule)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"an http:// or https:// URL with a host, got {url!r}")
    host = parts.hostname
    port = parts.port or _DEFAULT_PORTS[scheme]
    prefix = parts.path.rstrip("/")
    names = service_link_env(host) if scheme == "http" else None
    if names is not None and environ.get(names[0]) and environ.get(names[1]):
        return Target(scheme, environ[names[0]], port, prefix, via_service_link=True)
    return Target(scheme, host, port, prefix)


def original_host(host: str) -> str:
    """The mirrored request's Host without Envoy's ``-shadow`` (after the host name or,
    from older Envoys, after the port); unchanged when it has none."""
    if host.endswith(SHADOW_SUFFIX):
        return host[: -len(SHADOW_SUFFIX)]
    if host.startswith("["):  # an IPv6 literal: Envoy has no name to suffix
        return host
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and name.endswith(SHADOW_SUFFIX):
        return f"{name[: -len(SHADOW_SUFFIX)]}:{port}"
    return host


def upstream_headers(headers: Iterable[tuple[str, str]], host: str) -> list[tuple[str, str]]:
    """The headers of each ask: the mirrored request's, hop-by-hop ones and those the
    Connection header names left out, Host set to the original host. Repeated headers
    stay repeated, in order."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    out = [(n, v) for n, v in pairs if n.lower() not in HOP_BY_HOP and n.lower() not in named]
    out.append(("Host", original_host(host)))
    return out
