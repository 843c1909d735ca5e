"""The gateway's one aiohttp ClientSession for its own outgoing calls (WebSocket upgrades,
the login backend), opened and closed by the app's lifetime: aiohttp makes its sessions
inside a running event loop, while the services that use it are wired before one runs."""

from __future__ import annotations

import aiohttp

from gateway.config import ProxySettings


class SharedClientSession:
    """Holds the session once `open()` ran; our own deadlines, no decompression, no cookies,
    no headers invented on the gateway's behalf."""

    def __init__(self, settings: ProxySettings, given: aiohttp.ClientSession | None = None):
        self._settings = settings
        self._session = given
        self._owned = given is None

    async def open(self) -> None:
        if self._session is None:
            self._session = _new_session(self._settings)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the HTTP client is used before the app started")
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._owned:
            await self._session.close()
            self._session = None


def _new_session(settings: ProxySettings) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=settings.max_concurrency,
        keepalive_timeout=min(settings.keepalive_timeout, 30),
        enable_cleanup_closed=False,
    )
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
