"""One shared aiohttp session for Prometheus queries and webhooks.

Created lazily on first use, inside the running event loop (aiohttp requires that), so
the operator's startup needs no wiring; `close()` runs at the operator's cleanup.
A session pools connections: an analysis run every few seconds reuses them.
"""

from __future__ import annotations

import asyncio

import aiohttp

_session: aiohttp.ClientSession | None = None
_loop: asyncio.AbstractEventLoop | None = None


def session() -> aiohttp.ClientSession:
    """The session of the running event loop (a new one after the loop changed)."""
    global _session, _loop
    loop = asyncio.get_running_loop()
    if _session is None or _session.closed or _loop is not loop:
        # Timeouts are per request (the caller's); none here that could cut one short.
        _session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None),
            connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=30),
            trust_env=False,  # proxies come from the spec's address, not the pod's env
        )
        _loop = loop
    return _session


async def close() -> None:
    global _session, _loop
    if _session is not None and not _session.closed and _loop is asyncio.get_running_loop():
        await _session.close()
    _session, _loop = None, None
