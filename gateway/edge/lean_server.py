"""A lean HTTP/1.1 server for requests of one fixed shape: a head and no body (forward-auth
decisions). llhttp (httptools) parses; each request becomes a `LeanRequest` (what the edge
layer and the admission read of a request: gateway.edge.request_view), handed to the edge
middleware and its handler as the fast lane does (so the checks, the error answers, the record
and the access line are the same); the answer, never streamed, is written in one piece: an
`Answer` whose fixed fields were encoded once (a principal's identity headers), or any
unprepared `web.Response` (errors). Keep-alive, pipelining in order, and the edge's deadlines
(head within `header_timeout`, idle within `keepalive_timeout`) and header size limit. A body
is read and dropped (the handler refuses such requests).

What aiohttp's server would add per request (its RequestHandler, `web.Request`, payload
streams, the response writer) is what this leaves out.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final, cast

import httptools
from aiohttp import HttpVersion, web
from aiohttp.http import HttpVersion10, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.edge.connections import raw_error

log = logging.getLogger("gateway")

# (the request) → the answer: the edge middleware of the configuration served now around its
# handler
EdgeCall = Callable[["LeanRequest"], Awaitable["Answer | web.StreamResponse"]]
MAX_TARGET: Final = 16 * 1024  # request-target bytes; the path limit is the router's
KNOWN_TARGETS: Final = 1024  # request targets whose URL is remembered
_NO_BODY_STATUSES: Final = frozenset({204, 304})
_FRAMING: Final = frozenset({"content-length", "connection", "transfer-encoding"})  # ours


class LeanRequest:
    """A parsed request as the edge layer and the admission read it (an EdgeRequest, as an
    aiohttp `web.Request` is one): method, target, version, headers, peer, and the state the
    edge keeps on it (its Exchange)."""

    __slots__ = ("_state", "headers", "method", "raw_headers", "rel_url", "remote", "version")

    body_exists: Final = False  # a body is never read: its framing headers say it was there

    def __init__(
        self,
        method: str,
        rel_url: URL,
        version: HttpVersion,
        headers: CIMultiDictProxy[str],
        raw_headers: tuple[tuple[bytes, bytes], ...],
        remote: str | None,
    ):
        self.method = method
        self.rel_url = rel_url
        self.version = version
        self.headers = headers
        self.raw_headers = raw_headers
        self.remote = remote
        self._state: dict[object, Any] = {}

    @property
    def host(self) -> str:
        """The Host header (as `web.Request.host`: the server's name without one)."""
        return self.headers.get("Host") or socket.getfqdn()

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return None if value is None else int(value)

    def __getitem__(self, key: object) -> Any:
        return self._state[key]

    def __setitem__(self, key: object, value: Any) -> None:
        self._state[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._state

    def get(self, key: object, default: Any = None) -> Any:
        return self._state.get(key, default)


class Answer:
    """An answer without a body: its status, fixed fields encoded once (`encoded`, the same
    fields as `fixed`), and the fields added per request (`headers`: the request id, cookies).
    The lean server writes it as it is; `response()` makes it aiohttp's for other listeners."""

    __slots__ = ("encoded", "fixed", "headers", "status")

    prepared: Final = False  # as an unprepared web.Response: the edge adds its request id
    keep_alive: Final = None

    def __init__(self, status: int, fixed: tuple[tuple[str, str], ...], encoded: bytes | None):
        self.status = status
        self.fixed = fixed
        self.encoded = encoded  # None: a value that cannot be written (a line break)
        self.headers: CIMultiDict[str] = CIMultiDict()

    def response(self) -> web.Response:
        headers = CIMultiDict(self.fixed)
        headers.extend(self.headers)
        return web.Response(status=self.status, headers=headers)


def encode_fields(fields: tuple[tuple[str, str], ...]) -> bytes | None:
    """`Name: value\r\n` lines; None when a value holds a line break (SECURITY: never a
    header line of its own)."""
    for _, value in fields:
        if "\r" in value or "\n" in value:
            return None
    return "".join(f"{name}: {value}\r\n" for name, value in fields).encode(
        "utf-8", "surrogateescape"
    )


@dataclass(frozen=True, slots=True)
class LeanLimits:
    header_timeout: float  # seconds from a request's first byte to the end of its head
    keepalive_timeout: float  # seconds an idle connection is kept
    max_header_size: int  # bytes of header fields (431 past it)


class LeanServer:
    """Serves connections with whatever `serving` is at the time of each request (a reload
    swaps it); keeps the open connections to close them when it stops."""

    def __init__(self, serving: EdgeCall, limits: LeanLimits):
        self.serving = serving
        self.limits = limits
        self.connections: set[LeanConnection] = set()
        self._urls: dict[str, URL] = {}

    def url(self, target: str) -> URL:
        """The target as a URL, remembered (an ingress asks about few decision paths; the
        bound keeps client-chosen ones from growing it)."""
        url = self._urls.get(target)
        if url is None:
            path, _, query = target.partition("?")
            url = URL.build(path=path, query_string=query, encoded=True)
            if len(self._urls) >= KNOWN_TARGETS:
                self._urls.clear()
            self._urls[target] = url
        return url

    def serve(self, serving: EdgeCall, limits: LeanLimits) -> None:
        self.serving, self.limits = serving, limits

    def __call__(self) -> LeanConnection:
        return LeanConnection(self)

    @property
    def busy(self) -> int:
        return sum(1 for c in self.connections if c.busy)

    def close_idle(self) -> None:
        for connection in list(self.connections):
            connection.close_when_idle()


class LeanConnection(asyncio.Protocol):
    """One client connection: parse, answer in order, keep alive."""

    def __init__(self, server: LeanServer):
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peername: Any = None
        self.sockname: Any = None
        self.ssl_context: Any = None
        self._remote: str | None = None
        self._pending: deque[tuple[LeanRequest, bool]] = deque()
        self._worker: asyncio.Task[None] | None = None
        # One idle timer, re-armed lazily (no timer call per request); a head's deadline only
        # for a head that does not arrive in one piece.
        self._idle: asyncio.TimerHandle | None = None
        self._idle_since = self._loop.time()
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_began = 0.0
        self._closing = False
        self._too_large = False
        self._reset()

    # -- the connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's or uvloop's TCP transport (uvloop's are no asyncio.Transport subclasses)
        self.transport = cast(asyncio.Transport, transport)
        self.peername = transport.get_extra_info("peername")
        if isinstance(self.peername, list | tuple):
            self._remote = str(self.peername[0])
        elif self.peername is not None:
            self._remote = str(self.peername)
        self.sockname = transport.get_extra_info("sockname")
        self._server.connections.add(self)
        self._idle = self._loop.call_later(self._server.limits.keepalive_timeout, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._closing = True
        for timer in (self._idle, self._head_timer):
            if timer is not None:
                timer.cancel()
        self._pending.clear()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
            if self._in_head and self._head_timer is None:  # the rest of the head must follow
                deadline = self._head_began + self._server.limits.header_timeout
                self._head_timer = self._loop.call_at(deadline, self._head_expired)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "invalid_request", "upgrades are not served here")
        except httptools.HttpParserError:  # a callback's own error comes wrapped in one
            if self._too_large:
                self._refuse(431, "request_header_fields_too_large", "request headers too large")
            else:
                self._refuse(400, "invalid_request", "malformed request")

    @property
    def busy(self) -> bool:
        return self._worker is not None and not self._worker.done()

    def close_when_idle(self) -> None:
        self._closing = True
        if not self.busy and self.transport is not None:
            self.transport.close()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()
        self._in_head = True
        self._head_began = self._loop.time()

    def on_url(self, url: bytes) -> None:
        self._target += url
        if len(self._target) > MAX_TARGET:
            self._too_large = True
            raise httptools.HttpParserError("request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._size += len(name) + len(value) + 4
        if self._size > self._server.limits.max_header_size:
            self._too_large = True
            raise httptools.HttpParserError("request headers too large")
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def on_message_complete(self) -> None:
        parser = self._parser
        version = HttpVersion11 if parser.get_http_version() == "1.1" else HttpVersion10
        raw = self._raw
        headers = CIMultiDict(
            [(n.decode("latin-1"), v.decode("utf-8", "surrogateescape")) for n, v in raw]
        )
        target = self._target.decode("latin-1")
        request = LeanRequest(
            parser.get_method().decode("ascii"),
            self._server.url(target),
            version,
            CIMultiDictProxy(headers),
            tuple(raw),
            self._remote,
        )
        self._pending.append((request, parser.should_keep_alive()))
        if not self.busy:
            self._worker = self._loop.create_task(self._answer_all())

    # -- answers -----------------------------------------------------------------------------

    async def _answer_all(self) -> None:
        while self._pending and self.transport is not None:
            request, keep_alive = self._pending.popleft()
            data, keep_alive = await self._answer(request, keep_alive)
            transport = self.transport
            if transport is None:
                return
            transport.write(data)
            if not keep_alive or self._closing:
                transport.close()
                return
        self._idle_since = self._loop.time()

    async def _answer(self, request: LeanRequest, keep_alive: bool) -> tuple[bytes, bool]:
        # SECURITY: a target that is no path (`*`, an absolute URL) never reaches a handler
        if not request.rel_url.raw_path.startswith("/"):
            return _raw(400, "invalid_request", "invalid request target"), False
        try:
            response = await self._server.serving(request)
        except Exception:
            log.exception("unhandled error on the decision listener")
            return _raw(500, "server_error", "internal error"), False
        if isinstance(response, Answer):
            return serialize_answer(response, keep_alive)
        return _serialize(response, head=request.method == "HEAD", keep_alive=keep_alive)

    # -- deadlines and refusals --------------------------------------------------------------

    def _reset(self) -> None:
        self._target = b""
        self._raw: list[tuple[bytes, bytes]] = []
        self._size = 0
        self._in_head = False

    def _refuse(self, status: int, code: str, description: str) -> None:
        self._closing = True
        self._pending.clear()
        if self.transport is not None and not self.busy:
            self.transport.write(_raw(status, code, description))
            self.transport.close()

    def _check_idle(self) -> None:
        """Close a connection idle for `keepalive_timeout`; otherwise look again then."""
        if self.transport is None:
            return
        keepalive = self._server.limits.keepalive_timeout
        now = self._loop.time()
        if self.busy or self._in_head or self._pending:
            self._idle = self._loop.call_at(now + keepalive, self._check_idle)
        elif now - self._idle_since >= keepalive:
            self.transport.close()
        else:
            self._idle = self._loop.call_at(self._idle_since + keepalive, self._check_idle)

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._in_head and self.transport is not None:
            self._refuse(408, "request_timeout", "the request head took too long")


def _raw(status: int, code: str, description: str) -> bytes:
    return raw_error(status, HTTPStatus(status).phrase, code, description)


_REASONS: Final = {status.value: status.phrase for status in HTTPStatus}
_NO_BODY: Final = b"Content-Length: 0\r\n\r\n"
_NO_BODY_CLOSE: Final = b"Content-Length: 0\r\nConnection: close\r\n\r\n"


def serialize_answer(answer: Answer, keep_alive: bool) -> tuple[bytes, bool]:
    """An Answer on the wire: its status line, the fields encoded once, the request's own."""
    if answer.encoded is None:
        return _raw(500, "server_error", "internal error"), False
    parts = [f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, '')}\r\n".encode()]
    parts.append(answer.encoded)
    for name, value in answer.headers.items():
        if "\r" in value or "\n" in value:  # SECURITY: never a header line of its own
            return _raw(500, "server_error", "internal error"), False
        parts.append(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape"))
    parts.append(_NO_BODY if keep_alive else _NO_BODY_CLOSE)
    return b"".join(parts), keep_alive


def _serialize(response: web.StreamResponse, *, head: bool, keep_alive: bool) -> tuple[bytes, bool]:
    """A handler's unprepared Response as bytes on the wire, framed by Content-Length."""
    if not isinstance(response, web.Response):  # the decision never streams
        return _raw(500, "server_error", "internal error"), False
    body = response.body
    data = body if isinstance(body, bytes) else b""
    status = response.status
    lines = [f"HTTP/1.1 {status} {response.reason}"]
    headers = response.headers
    if data and "Content-Type" not in headers and response.content_type:
        lines.append(f"Content-Type: {response.content_type}")
    for name, value in headers.items():
        if "\r" in value or "\n" in value:  # SECURITY: never a header line of its own
            return _raw(500, "server_error", "internal error"), False
        if name.lower() not in _FRAMING:
            lines.append(f"{name}: {value}")
    if status not in _NO_BODY_STATUSES:
        lines.append(f"Content-Length: {len(data)}")
    if response.keep_alive is False:  # the edge closes after some refusals
        keep_alive = False
    if not keep_alive:
        lines.append("Connection: close")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    if head or status in _NO_BODY_STATUSES:
        return head_bytes, keep_alive
    return head_bytes + data, keep_alive
