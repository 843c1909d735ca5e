"""A lean HTTP/1.1 client for forwarding: pooled keep-alive connections, httptools parsing.

aiohttp's general-purpose client (cookies, redirects, auto headers, tracing, per-request
timeout objects) cost more CPU per proxied request than the whole rest of the gateway. A
reverse proxy needs far less: write the request head in one call, stream the body, parse
the response with llhttp (httptools), stream the body back with flow control, and keep the
connection for the next request. WebSocket upgrades still go through aiohttp.

Failures surface as UpstreamConnectError / UpstreamTimeoutError before the response
starts, and as UpstreamBroken while its body streams.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Final, cast

import httptools
from yarl import URL

HIGH_WATER: Final = 256 * 1024  # buffered response bytes before reading from upstream pauses
MAX_HEADER_BYTES: Final = 64 * 1024
MAX_IDLE_PER_HOST: Final = 256
REPLAYABLE: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_FRAMING_LENGTHS: Final = frozenset({len(b"content-length"), len(b"transfer-encoding")})


class UpstreamError(Exception):
    """The upstream could not be used for this request."""


class UpstreamConnectError(UpstreamError):
    """Refused, unreachable, or gone before answering (502)."""


class UpstreamRefused(UpstreamConnectError):
    """No connection could be made (refused, unreachable, TLS handshake failed): nothing of
    the request was sent."""


class UpstreamAborted(UpstreamConnectError):
    """A new connection was closed or reset before the response started: the target fails
    requests (unlike a kept-alive connection found closed, which it may have closed idle)."""


class UpstreamTimeoutError(UpstreamError):
    """Did not accept the connection within the connect timeout, or silent for longer than
    the read timeout (504)."""


class UpstreamConnectTimeout(UpstreamTimeoutError):
    """The connection was not accepted within the connect timeout: nothing was sent."""


@dataclass(frozen=True, slots=True)
class TlsClient:
    """How the gateway speaks TLS to a pool's targets. Connections are kept per target and
    per `fingerprint` (the CA bundle, client certificate and settings it was made from), so
    a reload that changes them never reuses a connection made under the old ones."""

    context: ssl.SSLContext = field(compare=False)
    server_name: str | None  # SNI and the name checked; None: the target's host
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a request goes: a target's scheme, host and port, and its TLS (keep-alive key)."""

    scheme: str
    host: str
    port: int
    tls: TlsClient | None = None

    @classmethod
    def of(cls, url: URL, tls: TlsClient | None = None) -> Endpoint:
        default = 443 if url.scheme == "https" else 80
        return cls(url.scheme, url.raw_host or "", url.port or default, tls)


class UpstreamBroken(UpstreamError):
    """Failed after the response started: the body is incomplete."""


class _Exchange:
    """State of one request/response on a connection."""

    __slots__ = (
        "chunks",
        "complete",
        "error",
        "expect_body",
        "framed",
        "head",
        "header_names",
        "header_values",
        "reason",
        "size",
        "waiter",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, expect_body: bool):
        self.head: asyncio.Future[None] = loop.create_future()
        self.expect_body = expect_body  # False for HEAD: the parser cannot know
        self.header_names: list[bytes] = []
        self.header_values: list[bytes] = []
        self.reason = b""
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.complete = False
        self.framed = False  # Content-Length or chunked: completion is known, not EOF
        self.error: UpstreamError | None = None
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Connection(asyncio.Protocol):
    """One upstream connection; serves one exchange at a time, then goes back to the pool."""

    def __init__(self, pool: UpstreamPool, key: Endpoint):
        self._pool = pool
        self.key = key
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._exchange: _Exchange | None = None
        self._head_bytes = 0
        self._paused_reading = False
        self._drain: asyncio.Future[None] | None = None
        self.last_read = 0.0
        self.reusable = False
        self.used = False
        self.idle_since = 0.0
        self.closed = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.last_read = self._loop.time()
        exchange = self._exchange
        if exchange is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(UpstreamBroken("malformed response from upstream"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        self._stop_read_deadline()
        exchange = self._exchange
        if exchange is not None and not exchange.complete:
            if exchange.head.done() and not exchange.framed and exchange.error is None:
                exchange.complete = True  # a body delimited by the end of the connection
                exchange.wake()
            else:
                self._fail(
                    UpstreamBroken("upstream closed the connection mid-body")
                    if exchange.head.done()
                    else UpstreamConnectError("upstream closed the connection")
                )
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(UpstreamConnectError("upstream closed the connection"))

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- httptools callbacks ---------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        assert self._exchange is not None
        self._exchange.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        exchange = self._exchange
        assert exchange is not None
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEADER_BYTES:
            raise httptools.HttpParserError("response headers too large")
        exchange.header_names.append(name)
        exchange.header_values.append(value)
        if len(name) in _FRAMING_LENGTHS:
            lower = name.lower()
            if lower == b"content-length" or (
                lower == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                exchange.framed = True

    def on_headers_complete(self) -> None:
        exchange = self._exchange
        assert exchange is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # informational (103 Early Hints, stray 100): wait for the real one
            exchange.header_names.clear()
            exchange.header_values.clear()
            exchange.reason = b""
            exchange.framed = False
            return
        if not exchange.expect_body:  # HEAD: no body follows, whatever the headers say
            exchange.complete = True
            self.reusable = False
            self._stop_read_deadline()
        if not exchange.head.done():
            exchange.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        exchange = self._exchange
        assert exchange is not None
        if exchange.complete:
            return
        exchange.chunks.append(body)
        exchange.size += len(body)
        if exchange.size > HIGH_WATER and not self._paused_reading and self.transport:
            self._paused_reading = True
            self.transport.pause_reading()
        exchange.wake()

    def on_message_complete(self) -> None:
        exchange = self._exchange
        assert exchange is not None
        if not exchange.head.done() or exchange.complete:  # informational, or HEAD
            return
        exchange.complete = True
        self.reusable = self._parser.should_keep_alive()
        self._stop_read_deadline()
        exchange.wake()

    # -- used by the forwarder -------------------------------------------------------------

    async def send(
        self,
        head: bytes,
        body: AsyncIterator[bytes] | None,
        *,
        chunked: bool,
        expect_body: bool,
    ) -> UpstreamResponse:
        assert self.transport is not None
        exchange = self._exchange = _Exchange(self._loop, expect_body)
        self._head_bytes = 0
        self.reusable = False
        self.used = True
        self._start_read_deadline()
        try:
            self.transport.write(head)
            if body is not None:
                await self._send_body(body, chunked, exchange)
            await exchange.head
        except BaseException:
            self._exchange = None
            self.close()  # mid-request: this connection can never be reused
            raise
        return UpstreamResponse(self, exchange)

    async def _send_body(
        self, body: AsyncIterator[bytes], chunked: bool, exchange: _Exchange
    ) -> None:
        transport = self.transport
        assert transport is not None
        async for chunk in body:
            if not chunk:
                continue
            if chunked:
                transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                transport.write(chunk)
            # The read timeout counts the upstream's silence once it has the whole request:
            # a slow client upload is progress, not an upstream that stopped answering.
            self.last_read = self._loop.time()
            if self._drain is not None and not self._drain.done():
                await self._drain
            if exchange.error is not None:  # the upstream answered or failed early
                return
        if chunked:
            transport.write(b"0\r\n\r\n")

    async def next_chunk(self, exchange: _Exchange) -> bytes:
        """The next piece of the body; b"" once it is complete."""
        while True:
            if exchange.chunks:
                chunk = exchange.chunks.popleft()
                exchange.size -= len(chunk)
                if self._paused_reading and exchange.size <= HIGH_WATER // 2 and self.transport:
                    self._paused_reading = False
                    self.last_read = self._loop.time()  # the silence so far was ours
                    self.transport.resume_reading()
                return chunk
            if exchange.error is not None:
                raise exchange.error
            if exchange.complete:
                return b""
            exchange.waiter = self._loop.create_future()
            try:
                await exchange.waiter
            finally:
                exchange.waiter = None

    def finish(self) -> None:
        """The exchange is over: keep the connection if the message ended cleanly."""
        exchange, self._exchange = self._exchange, None
        self._stop_read_deadline()
        if exchange is not None and exchange.complete and self.reusable and not self.closed:
            self.idle_since = self._loop.time()
            self._pool.release(self)
        else:
            self.close()

    def close(self) -> None:
        self.reusable = False
        self._stop_read_deadline()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # -- internals -------------------------------------------------------------------------

    def _fail(self, error: UpstreamError) -> None:
        exchange = self._exchange
        if exchange is None:
            return
        if exchange.error is None:
            exchange.error = error
        if not exchange.head.done():
            exchange.head.set_exception(error)
            exchange.head.exception()  # retrieved: the sender may be gone already
        exchange.wake()

    @property
    def paused(self) -> bool:
        """Reading is paused: the response body waits for a slow client (flow control)."""
        return self._paused_reading

    def _start_read_deadline(self) -> None:
        self.last_read = self._loop.time()
        self._pool.watch(self)

    def timed_out(self) -> None:
        """Silent for the whole read timeout (the pool's sweep found it)."""
        exchange = self._exchange
        started = exchange is not None and exchange.head.done()
        self._fail(
            UpstreamBroken("upstream went silent mid-body")
            if started
            else UpstreamTimeoutError("upstream did not answer in time")
        )
        self.close()

    def _stop_read_deadline(self) -> None:
        self._pool.unwatch(self)


class UpstreamResponse:
    """Status, headers and a streamed body; `release()` once done with it."""

    __slots__ = ("_connection", "_exchange", "reason", "status")

    def __init__(self, connection: Connection, exchange: _Exchange):
        self._connection = connection
        self._exchange = exchange
        self.status: int = connection._parser.get_status_code()
        self.reason = exchange.reason.decode("latin-1")

    @property
    def raw_headers(self) -> Iterator[tuple[bytes, bytes]]:
        """Header fields as received: (name, value) bytes, in order."""
        return zip(self._exchange.header_names, self._exchange.header_values, strict=True)

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (name in lower case), or None."""
        for found, value in self.raw_headers:
            if found.lower() == name:
                return value
        return None

    @property
    def complete(self) -> bool:
        """The whole body has arrived already (the common case for small answers)."""
        return self._exchange.complete and self._exchange.error is None

    def buffered_body(self) -> bytes:
        """The body when `complete`; the chunks are handed over, not copied twice."""
        chunks = self._exchange.chunks
        body = b"".join(chunks)
        chunks.clear()
        self._exchange.size = 0
        return body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self._connection.next_chunk(self._exchange):
            yield chunk

    def release(self) -> None:
        self._connection.finish()

    def close(self) -> None:
        self._connection.close()
        self._connection.finish()


class UpstreamPool:
    """Idle keep-alive connections per upstream (scheme, host, port), most recent first."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        keepalive_timeout: float,
    ):
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by open()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._keepalive = keepalive_timeout
        self._idle: dict[Endpoint, list[Connection]] = {}
        self._ssl: ssl.SSLContext | None = None
        # Read timeouts: one periodic sweep over busy connections instead of a timer
        # armed and cancelled per request; a timeout fires within read_timeout * 1.25.
        self._busy: set[Connection] = set()
        self._sweep_every = max(0.01, min(1.0, read_timeout / 4))
        self._sweeper: asyncio.TimerHandle | None = None
        self._pruner: asyncio.TimerHandle | None = None

    def open(self) -> None:
        """Bind to the running event loop (the pool is made before one runs)."""
        self.loop = asyncio.get_running_loop()
        self._pruner = self.loop.call_later(self._keepalive, self._prune)

    @property
    def idle_connections(self) -> int:
        """Kept-alive connections waiting for a request, over every endpoint."""
        return sum(len(idle) for idle in self._idle.values())

    def _prune(self) -> None:
        """Close connections idle past the keep-alive timeout, also those nobody asks for any
        more (a target a reload removed, TLS files a reload replaced)."""
        cutoff = self.loop.time() - self._keepalive
        for key in list(self._idle):
            idle = self._idle[key]
            for connection in [c for c in idle if c.idle_since <= cutoff]:
                idle.remove(connection)
                connection.close()
            if not idle:
                del self._idle[key]
        self._pruner = self.loop.call_later(self._keepalive / 2, self._prune)

    async def request(
        self,
        method: str,
        key: Endpoint,
        target: str,
        fields: list[tuple[bytes, bytes]],
        body: AsyncIterator[bytes] | None,
        *,
        chunked: bool = False,
        expect_body: bool = True,
    ) -> UpstreamResponse:
        """Send `method target` with these header fields to the endpoint (a kept-alive
        connection to it, or a new one); returns once the response head has arrived."""
        head = _request_head(method, target, fields, chunked)
        connection = self._take_idle(key)
        if connection is not None:
            try:
                return await connection.send(head, body, chunked=chunked, expect_body=expect_body)
            except UpstreamConnectError:
                # A kept-alive connection the upstream closed while it sat idle. Only a
                # bodiless safe request goes again, on a fresh connection.
                if body is not None or method not in REPLAYABLE:
                    raise
        connection = await self._connect(key)
        try:
            return await connection.send(head, body, chunked=chunked, expect_body=expect_body)
        except UpstreamConnectError as exc:
            raise UpstreamAborted(str(exc)) from exc

    def watch(self, connection: Connection) -> None:
        """`connection` waits on the upstream: time it out after read_timeout of silence."""
        self._busy.add(connection)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)

    def unwatch(self, connection: Connection) -> None:
        self._busy.discard(connection)

    def _sweep(self) -> None:
        self._sweeper = None
        cutoff = self.loop.time() - self._read_timeout
        # A connection paused because the client reads slowly is not a silent upstream.
        for connection in [c for c in self._busy if c.last_read <= cutoff and not c.paused]:
            self._busy.discard(connection)
            connection.timed_out()
        if self._busy:
            self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)

    def release(self, connection: Connection) -> None:
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= MAX_IDLE_PER_HOST:
            connection.close()
            return
        idle.append(connection)

    def forget(self, connection: Connection) -> None:
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._pruner is not None:
            self._pruner.cancel()
            self._pruner = None
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    def _take_idle(self, key: Endpoint) -> Connection | None:
        idle = self._idle.get(key)
        now = self.loop.time()
        while idle:
            connection = idle.pop()
            if connection.closed or now - connection.idle_since > self._keepalive:
                connection.close()
                continue
            return connection
        return None

    async def _connect(self, key: Endpoint) -> Connection:
        context: ssl.SSLContext | None = None
        server_name: str | None = None
        if key.scheme == "https":
            tls = key.tls
            context = tls.context if tls is not None else self._ssl_context()
            server_name = (tls.server_name if tls is not None else None) or key.host.strip("[]")
        try:
            _, protocol = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: Connection(self, key),
                    key.host.strip("[]"),
                    key.port,
                    ssl=context,
                    server_hostname=server_name,
                    ssl_handshake_timeout=self._connect_timeout if context else None,
                ),
                self._connect_timeout,
            )
        except TimeoutError:
            raise UpstreamConnectTimeout("connecting to the upstream timed out") from None
        except ssl.SSLError as exc:  # an OSError too: the certificate or the handshake
            raise UpstreamRefused(f"TLS to the upstream failed ({exc.reason})") from None
        except OSError as exc:
            raise UpstreamRefused(f"cannot connect to the upstream ({exc.strerror})") from None
        return protocol

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl


def _request_head(
    method: str, target: str, fields: list[tuple[bytes, bytes]], chunked: bool
) -> bytes:
    parts = [f"{method} {target or '/'} HTTP/1.1\r\n".encode("latin-1")]
    for name, value in fields:
        parts += (name, b": ", value, b"\r\n")
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)
