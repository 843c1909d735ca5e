"""WebSocket upgrades: the upstream handshake through aiohttp's client, then frames piped
both ways until either side closes. Failures to connect are mapped by the forwarder."""

from __future__ import annotations

import asyncio
from ssl import SSLContext

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from gateway.edge.request_view import RequestView

# The client's handshake fields that aiohttp's client makes for its own connection.
_HANDSHAKE_FIELDS = ("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions")


def is_websocket_upgrade(request: RequestView) -> bool:
    return (
        request.headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in request.headers.get("Connection", "").lower()
    )


async def connect_websocket(
    session: aiohttp.ClientSession,
    request: web.Request,
    origin: URL,
    target: str,
    fields: list[tuple[bytes, bytes]],
    close_timeout: float,
    *,
    ssl: SSLContext | bool = True,
    server_hostname: str | None = None,
) -> aiohttp.ClientWebSocketResponse:
    """The upstream's side of the WebSocket, opened with the forwarded header fields."""
    url = URL(f"{origin.scheme}://{origin.raw_authority}{target}", encoded=True)
    headers = CIMultiDict((n.decode("latin-1"), v.decode("latin-1")) for n, v in fields)
    for name in _HANDSHAKE_FIELDS:
        headers.pop(name, None)
    protocols = tuple(
        p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    )
    headers.pop("Sec-WebSocket-Protocol", None)
    return await session.ws_connect(
        url,
        headers=headers,
        protocols=protocols,
        autoping=False,
        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=close_timeout),
        ssl=ssl,
        server_hostname=server_hostname,
    )


async def relay_websocket(
    request: web.Request, upstream: aiohttp.ClientWebSocketResponse
) -> web.WebSocketResponse:
    """Accept the client's upgrade and pipe frames both ways until one side closes."""
    client = web.WebSocketResponse(
        protocols=(upstream.protocol,) if upstream.protocol else (), autoping=False
    )
    await client.prepare(request)
    try:
        await asyncio.gather(_pipe(client, upstream), _pipe(upstream, client))
    finally:
        await upstream.close()
        await client.close()
    return client


async def _pipe(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.PING:
            await sink.ping(message.data)
        elif message.type == WSMsgType.PONG:
            await sink.pong(message.data)
        else:
            break
    await sink.close()
