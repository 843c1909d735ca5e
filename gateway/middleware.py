"""The middleware stack, outermost first: errors → request id → request limits."""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.errors import (
    GatewayError,
    HeadersTooLarge,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
)
from gateway.headers import request_id_from
from gateway.state import ERROR, REQUEST_ID

log = logging.getLogger("gateway")

NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_HTTP_EXCEPTIONS: Final[dict[int, type[GatewayError]]] = {
    400: InvalidRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


def error_response(exc: GatewayError) -> web.Response:
    """The JSON error body of SPEC §3; never carries tokens, claims or internals."""
    body = {"error": exc.code, "error_description": exc.description}
    return web.json_response(body, status=exc.status, headers={**NO_STORE, **exc.headers()})


def errors_middleware() -> Middleware:
    """Turn GatewayErrors into JSON responses; anything unexpected is a logged, opaque 500."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as exc:
            request[ERROR] = exc
            return error_response(exc)
        except web.HTTPException as exc:  # the router's own 404/405, body limits
            if exc.status < 400:
                raise
            error = _HTTP_EXCEPTIONS.get(exc.status, InvalidRequest)()
            request[ERROR] = error
            return error_response(error)
        except Exception:
            log.exception(
                "unhandled error on %s %s", request.method, request.rel_url.raw_path[:200]
            )
            return error_response(GatewayError())

    return middleware


def request_id_middleware() -> Middleware:
    """Keep a well-formed client X-Request-Id or make one; echo it on every response."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request_id_from(request.headers)
        request[REQUEST_ID] = request_id
        try:
            response = await handler(request)
        except GatewayError as exc:
            exc.extra_headers["X-Request-Id"] = request_id
            raise
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        return response

    return middleware


def limits_middleware(*, max_header_size: int) -> Middleware:
    """431 when the request's headers exceed the configured total size."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        size = 0
        for name, value in request.raw_headers:
            size += len(name) + len(value) + 4
        if size > max_header_size:
            raise HeadersTooLarge()
        return await handler(request)

    return middleware
