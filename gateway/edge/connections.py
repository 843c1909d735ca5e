"""The connection layer: aiohttp's HTTP server with the gateway's deadlines and limits.

* A request head must be complete within `proxy.header_timeout`, counted from the opening of
  the connection or, on a kept-alive one, from the first byte of the next head (an idle
  kept-alive connection is closed after `proxy.keepalive_timeout`): otherwise 408 and close.
* A client that stops reading its response: once the bytes waiting for it have not moved
  for `proxy.send_timeout`, the connection is cut.
* At most `proxy.max_connections` open connections per worker: past it, 503 with
  Retry-After and close, before any byte is read.
* Requests the parser refuses are answered with the gateway's JSON error, never with
  aiohttp's text page, which quotes the offending bytes (a token among them).
* Refusals speak HTTP/1.1: a request line claiming another version than 1.0 or 1.1 is
  handed on as 1.1 (the version it claimed noted for the edge middleware, which refuses it),
  and so is a request the parser refused (aiohttp would answer those in HTTP/1.0).

One periodic sweep per server checks every connection's deadlines, instead of timers armed
and cancelled on every request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import ERROR, RequestHandler

from gateway.appkeys import CLAIMED_VERSION
from gateway.config import ProxySettings
from gateway.edge.middleware import HTTP_VERSIONS, NO_STORE

log = logging.getLogger("gateway.edge")

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
MAX_SWEEP_INTERVAL: Final = 1.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float
    keepalive_timeout: float
    send_timeout: float
    max_connections: int
    parser_backstop: int  # aiohttp's own line/field limits, well above our 431 check

    @classmethod
    def from_settings(cls, settings: ProxySettings) -> ConnectionLimits:
        return cls(
            header_timeout=settings.header_timeout,
            keepalive_timeout=settings.keepalive_timeout,
            send_timeout=settings.send_timeout,
            max_connections=settings.max_connections,
            parser_backstop=max(128 * 1024, 4 * settings.max_header_size),
        )


def raw_error(status: int, reason: str, code: str, description: str, **headers: str) -> bytes:
    """A complete HTTP/1.1 error response, for answers written straight to a transport."""
    body = json.dumps({"error": code, "error_description": description}).encode()
    fields = {
        "Content-Type": "application/json; charset=utf-8",
        **NO_STORE,
        **headers,
        "Connection": "close",
        "Content-Length": str(len(body)),
    }
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields.items())
    return head.encode("latin-1") + b"\r\n" + body


HEAD_TIMEOUT: Final = raw_error(
    408, "Request Timeout", "request_timeout", "the request head was not received in time"
)
TOO_MANY_CONNECTIONS: Final = raw_error(
    503,
    "Service Unavailable",
    "temporarily_unavailable",
    "too many open connections; retry later",
    **{"Retry-After": "1"},
)


class EdgeServer(web.Server):
    """The server a listener runs: makes EdgeConnections, sweeps their deadlines, and hands
    each request to the application it serves now (`serve` replaces it without a restart)."""

    def __init__(
        self,
        handler: Handler,
        *,
        request_factory: Any,
        limits: ConnectionLimits,
        loop: asyncio.AbstractEventLoop,
    ):
        # aiohttp's connections copy the server's handler and request factory when they open,
        # and keep them for every request on the connection: they get these two methods,
        # which look up the application served now, so that a replacement reaches kept-alive
        # connections too.
        super().__init__(
            self._dispatch,
            request_factory=self._make_request,
            loop=loop,
            keepalive_timeout=limits.keepalive_timeout,
            max_line_size=limits.parser_backstop,
            max_field_size=limits.parser_backstop,
            access_log=None,  # the gateway writes its own access lines
        )
        self._serving: tuple[Handler, Any] = (handler, request_factory)
        self.limits = limits
        self.open: set[EdgeConnection] = set()
        self._interval = self._sweep_interval(limits)
        self._sweeper: asyncio.TimerHandle | None = None
        self.refused = 0

    def serve(self, handler: Handler, *, request_factory: Any, limits: ConnectionLimits) -> None:
        """From now on, new requests go to `handler` (and are made by `request_factory`),
        under `limits`. One assignment: a request already handed to the previous handler
        finishes there, with the objects it holds."""
        self._serving = (handler, request_factory)
        self.limits = limits
        self._interval = self._sweep_interval(limits)
        # aiohttp's Server passes these to each new connection (Server._kwargs, as __call__
        # below uses it): connections opened from now on get the new limits.
        self._kwargs.update(
            keepalive_timeout=limits.keepalive_timeout,
            max_line_size=limits.parser_backstop,
            max_field_size=limits.parser_backstop,
        )

    @property
    def handler(self) -> Handler:
        """The request handler served now."""
        return self._serving[0]

    def _dispatch(self, request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        return self._serving[0](request)

    def _make_request(self, message: Any, payload: Any, protocol: Any, *args: Any) -> Any:
        """The request, made by the served application's factory; the connection's head is
        complete (aiohttp calls this once per parsed request, before the handler runs)."""
        protocol.head_complete()
        factory = self._serving[1]
        claimed = message.version
        if claimed in HTTP_VERSIONS and message is not ERROR:
            return factory(message, payload, protocol, *args)
        # SECURITY: aiohttp writes a response's status line in the request's version: a
        # refusal echoing `HTTP/2.0` or `HTTP/0.9` is read as another protocol by whatever
        # sits in front. The request goes on as 1.1; the edge refuses what it claimed.
        request = factory(message._replace(version=HttpVersion11), payload, protocol, *args)
        if message is not ERROR:
            request[CLAIMED_VERSION] = claimed
        return request

    @staticmethod
    def _sweep_interval(limits: ConnectionLimits) -> float:
        return min(MAX_SWEEP_INTERVAL, limits.header_timeout / 4, limits.send_timeout / 4)

    def __call__(self) -> EdgeConnection:
        """The protocol for one new client connection (asyncio's protocol factory)."""
        return EdgeConnection(self, loop=self._loop, **self._kwargs)

    def admit(self, connection: EdgeConnection) -> bool:
        if len(self.open) >= self.limits.max_connections:
            self.refused += 1
            return False
        self.open.add(connection)
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(self._interval, self._sweep)
        return True

    def forget(self, connection: EdgeConnection) -> None:
        self.open.discard(connection)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._loop.time()
        for connection in list(self.open):
            connection.check_deadlines(now)
        if self.open:
            self._sweeper = self._loop.call_later(self._interval, self._sweep)

    async def shutdown(self, timeout: float | None = None) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        await super().shutdown(timeout)


class EdgeConnection(RequestHandler):
    """aiohttp's HTTP/1.1 connection handler, with the gateway's deadlines on its client."""

    __slots__ = ("_edge", "_head_since", "_stalled_since", "_unsent", "awaiting_head")

    def __init__(self, edge: EdgeServer, **kwargs: Any):
        super().__init__(edge, **kwargs)
        self._edge = edge
        self.awaiting_head = True
        self._head_since: float | None = None  # first byte of the head being received
        self._unsent = 0
        self._stalled_since: float | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._edge.admit(self):
            # SECURITY: past the cap nothing is read; the client is told to come back.
            stream = cast(asyncio.Transport, transport)
            stream.write(TOO_MANY_CONNECTIONS)
            stream.close()
            return
        self._head_since = self._loop.time()  # a new connection owes us a head at once
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._edge.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.awaiting_head and self._head_since is None:
            self._head_since = self._loop.time()
        super().data_received(data)

    # -- the request cycle -----------------------------------------------------------------

    def head_complete(self) -> None:
        """A request head was parsed: its deadline is met."""
        self.awaiting_head = False
        self._head_since = None

    def log_access(self, request: web.BaseRequest, response: web.StreamResponse, time: Any) -> None:
        """aiohttp calls this once a response has been written: the next bytes on this
        connection start a new head. (The gateway's own access lines are written by the
        edge middleware's observer; aiohttp's access log is off.)"""
        self.awaiting_head = True
        self._head_since = None

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request the parser refused (or a failure before any handler ran): the JSON
        error body, never the parser's message, which quotes the request's bytes."""
        if status == 500:
            log.error("error before the request reached a handler", exc_info=exc)
            code, description = "server_error", "internal error"
        elif isinstance(exc, LineTooLong):
            status, code, description = 431, "request_header_fields_too_large", "too large"
        else:
            status, code, description = 400, "invalid_request", "malformed HTTP request"
        response = web.json_response(
            {"error": code, "error_description": description}, status=status, headers=NO_STORE
        )
        response.force_close()
        return response

    # -- deadlines (the server's sweep) ----------------------------------------------------

    def check_deadlines(self, now: float) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        head_since = self._head_since
        if self.awaiting_head and head_since is not None:
            if now - head_since > self._edge.limits.header_timeout:
                log.info("closing a connection whose request head took too long")
                transport.write(HEAD_TIMEOUT)
                transport.close()
            return
        unsent = transport.get_write_buffer_size()
        if unsent == 0 or unsent < self._unsent:  # everything sent, or the client read some
            self._stalled_since = None if unsent == 0 else now
        elif self._stalled_since is None:
            self._stalled_since = now
        elif now - self._stalled_since > self._edge.limits.send_timeout:
            log.info("closing a connection whose client stopped reading its response")
            transport.abort()
        self._unsent = unsent
