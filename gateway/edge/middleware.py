"""The edge layer of every request: its record, the request line and Host checks, the
header size limit, and errors as responses: the one place where GatewayErrors (and the
router's own HTTP errors) are answered, as JSON or, where a listener gives a renderer, as a
page."""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from aiohttp import HttpVersion10, HttpVersion11, web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict

from gateway.appkeys import CLAIMED_VERSION, EXCHANGE
from gateway.edge.record import Exchange, request_id_from
from gateway.edge.request_view import RequestView
from gateway.errors import (
    ExpectationFailed,
    GatewayError,
    HeadersTooLarge,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
)

log = logging.getLogger("gateway")

NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
JSON_TYPE: Final = "application/json; charset=utf-8"
# A response that sets a cookie must never be kept by a shared cache (nor by any cache).
PRIVATE_NO_STORE: Final = "private, no-store"
HTTP_VERSIONS: Final = (HttpVersion10, HttpVersion11)
# RFC 9112 §3.2: host [ ":" port ]; a DNS name or IPv4 address, or an IPv6 literal. No
# userinfo, no list, no spaces: anything else is refused, never forwarded or echoed.
MAX_KNOWN_HOSTS: Final = 1024  # Host values are client-chosen: remembered up to a bound
_HOST: Final = re.compile(r"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?").fullmatch

# aiohttp's own HTTP errors (the router's 404 and 405, its body limit) as the gateway's.
_HTTP_EXCEPTIONS: Final[dict[int, type[GatewayError]]] = {
    400: InvalidRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}
# A listener's own page for an error where a browser reads it (the admin console), or None
# for the JSON body.
ErrorRenderer = Callable[[web.Request, GatewayError], "web.StreamResponse | None"]


def gateway_error(exc: web.HTTPException) -> GatewayError:
    """The gateway's error for one of aiohttp's HTTP errors (status 400 and above)."""
    return _HTTP_EXCEPTIONS.get(exc.status, InvalidRequest)()


def error_response(exc: GatewayError, realm: str) -> web.Response:
    """The JSON error body of SPEC §3, with its challenge; never tokens, claims or internals."""
    headers = {**NO_STORE, **exc.headers()}
    challenge = www_authenticate(exc, realm)
    if challenge is not None:
        headers["WWW-Authenticate"] = challenge
    headers["Content-Type"] = JSON_TYPE
    response = web.Response(
        body=error_body(exc.code, exc.description), status=exc.status, headers=headers
    )
    if exc.cookies:
        add_cookies(response.headers, exc.cookies)
    return response


@functools.lru_cache(maxsize=1024)
def error_body(code: str, description: str) -> bytes:
    """`{"error": …, "error_description": …}` as `web.json_response` writes it, encoded once
    per error (codes and descriptions are the gateway's own words; the cache is bounded)."""
    return json.dumps({"error": code, "error_description": description}).encode()


def add_cookies(headers: CIMultiDict[str], cookies: Iterable[str]) -> None:
    """Set-Cookie fields on a response, which no cache may then keep."""
    for cookie in cookies:
        headers.add("Set-Cookie", cookie)
    headers["Cache-Control"] = PRIVATE_NO_STORE


def www_authenticate(exc: GatewayError, realm: str) -> str | None:
    """The RFC 6750 §3 challenge for an error that carries one, in the listener's realm."""
    if exc.challenge is None:
        return None
    value = f'Bearer realm="{_quoted(realm)}"'
    if exc.challenge:
        value += f', error="{exc.challenge}", error_description="{_quoted(exc.description)}"'
    return value


def _quoted(value: str) -> str:
    """Safe inside an RFC 9110 quoted-string: no backslashes, double quotes as single."""
    return value.replace("\\", "").replace('"', "'")


class Observer(Protocol):
    """Told when a request starts and how it ended (metrics, access log)."""

    def started(self) -> None: ...

    def finished(
        self, request: RequestView, exchange: Exchange, status: int, seconds: float
    ) -> None: ...


def edge_middleware(
    *,
    realm: str,
    max_header_size: int | None = None,
    observer: Observer | None = None,
    render: ErrorRenderer | None = None,
) -> Middleware:
    """Request id, request line and Host checks, header size limit (431), errors as JSON
    and observation, in one layer.

    One middleware rather than four: each aiohttp middleware layer costs a coroutine and a
    handler wrapper on every request. The request id is kept from a well-formed client
    X-Request-Id or made, and echoed on every response, errors included. GatewayErrors
    become their JSON bodies (or what `render` makes of them); anything unexpected is a
    logged, opaque 500. The request's Exchange (request[EXCHANGE]) collects what the observer
    reports once it is over. The decision listener calls it with requests of its own (an
    EdgeRequest: gateway.edge.request_view) and gets its handler's answer back as it is.
    """

    known_hosts: set[str] = set()  # Host values found well-formed already

    def answer(request: web.Request, error: GatewayError) -> web.StreamResponse:
        if render is not None:
            page = render(request, error)
            if page is not None:
                return page
        return error_response(error, realm)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        exchange = Exchange(request_id_from(request.headers))
        request[EXCHANGE] = exchange
        if observer is not None:
            observer.started()
        status = 500
        try:
            try:
                check_request_line(request, known_hosts)
                if max_header_size is not None and _header_bytes(request) > max_header_size:
                    raise HeadersTooLarge()
                response = await handler(request)
            except GatewayError as exc:
                # the record keeps the error, not the frames it went through (which hold the
                # record: a cycle per refusal for the garbage collector to find)
                exchange.error = exc.with_traceback(None)
                response = answer(request, exc)
                if "Expect" in request.headers or CLAIMED_VERSION in request:
                    # refused before its body was asked for: the client will not send it;
                    # or in another protocol than the client speaks: nothing else to say
                    response.force_close()
            except web.HTTPException as exc:  # the router's own 404/405, body limits
                if exc.status < 400:
                    status = exc.status
                    raise
                error = gateway_error(exc)
                exchange.error = error
                response = answer(request, error)
            except Exception:
                log.exception(
                    "unhandled error on %s %s", request.method, request.rel_url.raw_path[:200]
                )
                response = error_response(GatewayError(), realm)
            if not response.prepared:
                response.headers["X-Request-Id"] = exchange.request_id
            status = response.status
            return response
        finally:
            if observer is not None:
                observer.finished(request, exchange, status, time.perf_counter() - started)

    return middleware


def check_request_line(request: web.BaseRequest, known_hosts: set[str]) -> None:
    """HTTP/1.0 or 1.1 only, no expectation but 100-continue, and a well-formed Host (the
    parser already refuses two Host fields, and a missing one in HTTP/1.1). SECURITY: an
    odd version or Host is where two servers in a chain start to read a request differently.
    """
    if request.version not in HTTP_VERSIONS or CLAIMED_VERSION in request:
        raise InvalidRequest("unsupported HTTP version")
    headers = request.headers
    expect = headers.get("Expect")
    if expect is not None and expect.lower() != "100-continue":
        raise ExpectationFailed()
    host = headers.get("Host")
    if host is not None and host not in known_hosts:
        valid = _HOST(host)
        if valid is None or int(valid[1] or 0) > 65535:
            raise InvalidRequest("invalid Host header")
        if len(known_hosts) < MAX_KNOWN_HOSTS:  # the few names clients use: checked once
            known_hosts.add(host)


def _header_bytes(request: web.Request) -> int:
    size = 0
    for name, value in request.raw_headers:
        size += len(name) + len(value) + 4
    return size
