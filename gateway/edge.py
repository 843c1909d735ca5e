"""The edge of every request: its record (Exchange), request id, header size limit, and
errors as JSON. The one place where GatewayErrors become responses."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.appkeys import EXCHANGE
from gateway.errors import (
    GatewayError,
    HeadersTooLarge,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
)
from gateway.tokens.verifier import Principal

log = logging.getLogger("gateway")

NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_ID_PREFIX: Final = os.urandom(8).hex()  # per process: workers are spawned, never forked
_ID_COUNTER: Final = itertools.count(1)

_HTTP_EXCEPTIONS: Final[dict[int, type[GatewayError]]] = {
    400: InvalidRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


@dataclass(slots=True)
class Exchange:
    """What one request leaves for the access log and metrics, filled in as it is served.

    One object per request, made by the edge middleware: handlers set fields on it instead
    of storing loose per-request keys, and the observer reads it without any lookups.
    """

    request_id: str
    route: str = "gateway"  # the route name once routed; "gateway" for its own endpoints
    principal: Principal | None = None
    error: GatewayError | None = None
    upstream_status: int | None = None  # set once the request was forwarded
    upstream_seconds: float = 0.0
    trace_id: str | None = None  # the trace id sent upstream, when the gateway chose it
    bytes_in: int = 0
    bytes_out: int = 0


def request_id_from(headers: Mapping[str, str]) -> str:
    """The client's X-Request-Id when well-formed, otherwise a fresh one."""
    value = headers.get("X-Request-Id")
    if value is not None and REQUEST_ID_RE.match(value):
        return value
    return new_request_id()


def new_request_id() -> str:
    """32 hex digits, unique per process and across processes: a random process prefix and a
    counter (no system call per request, unlike uuid4)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


def error_response(exc: GatewayError, realm: str) -> web.Response:
    """The JSON error body of SPEC §3, with its challenge; never tokens, claims or internals."""
    body = {"error": exc.code, "error_description": exc.description}
    headers = {**NO_STORE, **exc.headers()}
    challenge = www_authenticate(exc, realm)
    if challenge is not None:
        headers["WWW-Authenticate"] = challenge
    return web.json_response(body, status=exc.status, headers=headers)


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
        self, request: web.Request, exchange: Exchange, status: int, seconds: float
    ) -> None: ...


def edge_middleware(
    *, realm: str, max_header_size: int | None = None, observer: Observer | None = None
) -> Middleware:
    """Request id, header size limit (431), errors as JSON and observation, in one layer.

    One middleware rather than four: each aiohttp middleware layer costs a coroutine and a
    handler wrapper on every request. The request id is kept from a well-formed client
    X-Request-Id or made, and echoed on every response, errors included. GatewayErrors
    become their JSON bodies; anything unexpected is a logged, opaque 500. The request's
    Exchange (request[EXCHANGE]) collects what the observer reports once it is over.
    """

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
                if max_header_size is not None and _header_bytes(request) > max_header_size:
                    raise HeadersTooLarge()
                response = await handler(request)
            except GatewayError as exc:
                exchange.error = exc
                response = error_response(exc, realm)
            except web.HTTPException as exc:  # the router's own 404/405, body limits
                if exc.status < 400:
                    status = exc.status
                    raise
                error = _HTTP_EXCEPTIONS.get(exc.status, InvalidRequest)()
                exchange.error = error
                response = error_response(error, realm)
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


def _header_bytes(request: web.Request) -> int:
    size = 0
    for name, value in request.raw_headers:
        size += len(name) + len(value) + 4
    return size
