"""The catch-all handler: normalize → route → authenticate → forward."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import NotFound
from gateway.exchange import EXCHANGE
from gateway.routing import normalize_path
from gateway.state import AUTHENTICATOR, FORWARDER, ROUTES


async def proxy(request: web.Request) -> web.StreamResponse:
    """Forward the request if its route's policy admits it; a refusal never reaches upstream."""
    app = request.app
    exchange = request[EXCHANGE]
    path = normalize_path(request.rel_url.raw_path)
    route = app[ROUTES].match(path)
    if route is None or route.policy == "blocked":
        raise NotFound("no route for this path")
    exchange.route = route.name
    exchange.principal = app[AUTHENTICATOR].authenticate(request.headers, route)
    return await app[FORWARDER].forward(request, route, path, exchange)
