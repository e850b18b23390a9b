"""One aiohttp session for the operator's outgoing HTTP: Prometheus queries and webhooks.

Built at startup (services.py) and handed to both; the session itself is created lazily
on first use, inside the running event loop (aiohttp requires that), and closed at the
operator's cleanup. A session pools connections: an analysis run every few seconds
reuses them.
"""

from __future__ import annotations

import asyncio

import aiohttp


class Http:
    """A lazily created shared session; `session` is what its users are given."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def session(self) -> aiohttp.ClientSession:
        """The session of the running event loop (a new one after the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # Timeouts are per request (the caller's); none here that could cut one short.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None),
                connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=30),
                trust_env=False,  # proxies come from the spec's address, not the pod's env
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        session, loop = self._session, self._loop
        self._session, self._loop = None, None
        if session is not None and not session.closed and loop is asyncio.get_running_loop():
            await session.close()
