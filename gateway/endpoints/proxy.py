"""The catch-all handler: normalize → route → authenticate → forward."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import NotFound
from gateway.proxy import Exchange
from gateway.routing import normalize_path
from gateway.state import (
    AUTHENTICATOR,
    EXCHANGE,
    FORWARDER,
    PRINCIPAL,
    REQUEST_ID,
    ROUTE_NAME,
    ROUTES,
)


async def proxy(request: web.Request) -> web.StreamResponse:
    """Forward the request if its route's policy admits it; a refusal never reaches upstream."""
    app = request.app
    path = normalize_path(request.rel_url.raw_path)
    route = app[ROUTES].match(path)
    if route is None or route.policy == "blocked":
        raise NotFound("no route for this path")
    request[ROUTE_NAME] = route.name
    principal = app[AUTHENTICATOR].authenticate(request.headers, route)
    if principal is not None:
        request[PRINCIPAL] = principal
    exchange = Exchange()
    request[EXCHANGE] = exchange
    return await app[FORWARDER].forward(
        request, route, path, principal, request[REQUEST_ID], exchange
    )
