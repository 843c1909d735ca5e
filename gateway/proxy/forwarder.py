"""Streaming forwarder: bodies streamed both ways over pooled upstream connections
(gateway.proxy.upstream), WebSocket upgrades handed to gateway.proxy.websocket.

Only this module maps upstream failures (`upstream_errors`); they leave it as
UpstreamUnavailable (502), UpstreamTimeout (504) or, after the response has started, as an
aborted client connection (never a truncated response that looks complete).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from typing import Final

import aiohttp
from aiohttp import web
from yarl import URL

from gateway.config import ProxySettings
from gateway.edge import Exchange, add_cookies
from gateway.edge.bodies import BodyReader
from gateway.errors import (
    InvalidRequest,
    Overloaded,
    PayloadTooLarge,
    ServiceFault,
    UpstreamsDown,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.outbound.http_client import SharedClientSession
from gateway.proxy.headers import HeaderPolicy, keep_private
from gateway.proxy.routing import Route
from gateway.proxy.upstream import (
    UpstreamAborted,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamPool,
    UpstreamRefused,
    UpstreamResponse,
    UpstreamTimeoutError,
)
from gateway.proxy.upstream_group import IDEMPOTENT, Target, UpstreamGroup
from gateway.proxy.websocket import connect_websocket, is_websocket_upgrade, relay_websocket

log = logging.getLogger("gateway.proxy")

NO_BODY_STATUSES: Final = frozenset({204, 304})


class Forwarder:
    """Forwards one authorized request to its route's upstream and streams the answer back."""

    def __init__(
        self,
        pool: UpstreamPool,
        http: SharedClientSession,
        policy: HeaderPolicy,
        bodies: BodyReader,
        settings: ProxySettings,
    ):
        self._pool = pool
        self._bodies = bodies
        self._http = http  # WebSocket upgrades only
        self._policy = policy
        self._max_body = settings.max_body_size
        self._max_concurrency = settings.max_concurrency
        self._read_timeout = settings.read_timeout
        self.in_flight = 0

    def forward(
        self,
        request: web.Request,
        route: Route,
        path: str,
        exchange: Exchange,
    ) -> Awaitable[web.StreamResponse]:
        """Check and prepare the request (raising refusals right away); the awaitable it
        returns does the I/O. Not a coroutine itself: one frame less on every resumption."""
        declared = request.content_length
        if self._max_body and declared is not None and declared > self._max_body:
            raise PayloadTooLarge()
        if self.in_flight >= self._max_concurrency:
            raise Overloaded()
        group = route.upstream
        cap = group.max_in_flight
        if cap is not None and group.in_flight >= cap:
            raise Overloaded("the upstream is at its max_in_flight")
        fields = self._policy.upstream_request_fields(
            request.raw_headers,
            request.headers,
            principal=exchange.principal,
            request_id=exchange.request_id,
            remote=request.remote,
            scheme=request.scheme,
            host=request.host,
            upstream_host=None if route.preserve_host else group.first.authority,
            exchange=exchange,
        )
        tail = route.tail(path)
        query = request.rel_url.raw_query_string
        if query:
            tail = f"{tail}?{query}"
        if is_websocket_upgrade(request):
            if not route.websocket:
                raise InvalidRequest("WebSocket upgrades are not enabled on this route")
            return self._forward_websocket(request, group, tail, fields)
        host_field = -1
        if not route.preserve_host and len(group.targets) > 1:  # each target's own Host
            host_field = next((i for i in range(len(fields)) if fields[i][0] == b"Host"), -1)
        return self._forward_http(request, group, tail, fields, host_field, declared, exchange)

    async def _forward_http(
        self,
        request: web.Request,
        group: UpstreamGroup,
        tail: str,
        fields: list[tuple[bytes, bytes]],
        host_field: int,
        declared: int | None,
        exchange: Exchange,
    ) -> web.StreamResponse:
        self.in_flight += 1
        group.in_flight += 1
        target: Target | None = None
        try:
            body: AsyncIterator[bytes] | None = None
            if request.body_exists:
                if declared is not None:
                    fields.append((b"Content-Length", b"%d" % declared))  # our framing header
                body = self._body(request, exchange)
            has_body = request.method != "HEAD"
            loop = asyncio.get_running_loop()
            started = loop.time()
            chunked = body is not None and declared is None
            if group.named:
                target, upstream = await self._send(
                    request.method,
                    group,
                    tail,
                    fields,
                    host_field,
                    body,
                    chunked=chunked,
                    expect_body=has_body,
                    exchange=exchange,
                    deadline=started + group.retry_deadline,
                )
            else:  # a route's URL: its one target, no failover (and one frame less)
                target = group.first
                target.in_flight += 1
                with upstream_errors():
                    upstream = await self._pool.request(
                        request.method,
                        target.endpoint,
                        target.base_path + tail,
                        fields,
                        body,
                        chunked=chunked,
                        expect_body=has_body,
                    )
            exchange.upstream_status = upstream.status
            try:
                return await self._relay(request, upstream, exchange, has_body)
            finally:
                exchange.upstream_seconds = loop.time() - started
                upstream.release()
        finally:
            if target is not None:
                target.in_flight -= 1
            group.in_flight -= 1
            self.in_flight -= 1

    async def _send(
        self,
        method: str,
        group: UpstreamGroup,
        tail: str,
        fields: list[tuple[bytes, bytes]],
        host_field: int,
        body: AsyncIterator[bytes] | None,
        *,
        chunked: bool,
        expect_body: bool,
        exchange: Exchange,
        deadline: float,
    ) -> tuple[Target, UpstreamResponse]:
        """Send to a target in rotation; returns once a response head arrived. A failure to
        connect (nothing sent) moves on to the next target; a request that was sent goes to
        another target at most once, and only when its method is idempotent and nothing of
        its body was read from the client yet; neither past the pool's retry deadline.
        Every target out of rotation: 503 with the time until the first is tried again."""
        tried: list[Target] = []
        retried = False
        target = group.choose()
        if target is None:
            raise UpstreamsDown(retry_after=group.retry_after())
        while True:
            if host_field >= 0:
                fields[host_field] = (b"Host", target.authority.encode("latin-1"))
            target.in_flight += 1
            try:
                response = await self._pool.request(
                    method,
                    target.endpoint,
                    target.base_path + tail,
                    fields,
                    body,
                    chunked=chunked,
                    expect_body=expect_body,
                )
            except UpstreamError as exc:
                target.in_flight -= 1
                sent = not isinstance(exc, UpstreamRefused | UpstreamConnectTimeout)
                # Out of rotation: no connection, a new one dropped before any answer, or no
                # answer in time (a stalled target).
                dropped = isinstance(exc, UpstreamAborted | UpstreamTimeoutError)
                group.failed(target, str(exc), eject=not sent or dropped)
                tried.append(target)
                again = asyncio.get_running_loop().time() < deadline
                if sent:
                    # SECURITY: a request the target may have acted on is sent again only
                    # when repeating it is harmless (RFC 9110 §9.2.2) and no body byte was
                    # consumed: a POST is never doubled.
                    again = again and not retried and method in IDEMPOTENT and not exchange.bytes_in
                    retried = True
                following = group.choose(tried) if again else None
                if following is None:
                    raise upstream_failure(exc) from exc
                log.info("upstream %s: %s on %s; trying %s", group, exc, target.url, following.url)
                target = following
                continue
            group.succeeded(target)
            return target, response

    async def _relay(
        self,
        request: web.Request,
        upstream: UpstreamResponse,
        exchange: Exchange,
        has_body: bool,
    ) -> web.StreamResponse:
        """The upstream's answer to the client: in one write when it has fully arrived
        (the common case), streamed otherwise."""
        status = upstream.status
        has_body = has_body and status not in NO_BODY_STATUSES
        out_headers = self._policy.downstream_response_headers(upstream.raw_headers)
        out_headers["X-Request-Id"] = exchange.request_id
        if exchange.auth_method == "cookie":  # a browser session's answer is personal
            keep_private(out_headers)
        if exchange.set_cookies:  # a browser session's refreshed cookie (gateway.browser)
            add_cookies(out_headers, exchange.set_cookies)
        reason = upstream.reason or None
        if has_body and upstream.complete:
            content = upstream.buffered_body()
            exchange.bytes_out = len(content)
            return web.Response(status=status, reason=reason, headers=out_headers, body=content)
        response = web.StreamResponse(status=status, reason=reason, headers=out_headers)
        length = upstream.header(b"content-length")
        chunked = upstream.header(b"transfer-encoding") is not None
        if length is not None and length.isdigit() and not chunked:
            response.content_length = int(length)
        await response.prepare(request)
        if has_body and not await self._stream_body(request, upstream, response, exchange):
            return response
        await response.write_eof()
        return response

    async def _body(self, request: web.Request, exchange: Exchange) -> AsyncIterator[bytes]:
        """The client's body under the gateway's deadlines, cut with 413 past
        proxy.max_body_size; reading it first answers a pending `Expect: 100-continue`."""
        async for chunk in self._bodies.chunks(request, max_size=self._max_body):
            exchange.bytes_in += len(chunk)
            yield chunk

    async def _stream_body(
        self,
        request: web.Request,
        upstream: UpstreamResponse,
        response: web.StreamResponse,
        exchange: Exchange,
    ) -> bool:
        """Copy the body; on an upstream fault mid-body, abort the client connection."""
        try:
            async for chunk in upstream.iter_chunks():
                await response.write(chunk)
                exchange.bytes_out += len(chunk)
        except UpstreamError as exc:
            # The status line is gone already: the only honest signal left is to cut the
            # connection without the final chunk, so the client cannot mistake it for success.
            log.warning("upstream failed mid-body (%s); aborting client connection", exc)
            upstream.close()
            if request.transport is not None:
                request.transport.close()
            return False
        except BaseException:
            upstream.close()  # the client went away: this connection cannot be reused
            raise
        return True

    async def _forward_websocket(
        self,
        request: web.Request,
        group: UpstreamGroup,
        tail: str,
        fields: list[tuple[bytes, bytes]],
    ) -> web.StreamResponse:
        target = group.choose()
        if target is None:
            raise UpstreamsDown(retry_after=group.retry_after())
        tls = target.endpoint.tls
        with upstream_errors():
            upstream = await connect_websocket(
                self._http.session,
                request,
                URL(target.url),
                target.base_path + tail,
                fields,
                self._read_timeout,
                ssl=tls.context if tls is not None else True,
                server_hostname=tls.server_name if tls is not None else None,
            )
        return await relay_websocket(request, upstream)


# What the lean client and aiohttp's (WebSocket upgrades) raise when the upstream fails.
UPSTREAM_ERRORS: Final = (UpstreamError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


def upstream_failure(exc: BaseException) -> ServiceFault:
    """The one mapping of a failure to reach the upstream (before its response started):
    a timeout is 504, anything else 502. Raises what is not an upstream failure."""
    if isinstance(exc, UpstreamTimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeout()
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        status = getattr(exc, "status", "no status")
        return UpstreamUnavailable(f"upstream refused the WebSocket upgrade ({status})")
    if isinstance(exc, UPSTREAM_ERRORS):
        return UpstreamUnavailable()
    raise exc


@contextmanager
def upstream_errors() -> Iterator[None]:
    """Failures of the upstream client(s) in the block leave as 502/504 (`upstream_failure`)."""
    try:
        yield
    except UPSTREAM_ERRORS as exc:
        raise upstream_failure(exc) from exc
