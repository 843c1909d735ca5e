"""The catch-all handler: normalize → route → authenticate → forward."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.appkeys import EXCHANGE, PROXY
from gateway.errors import NotFound
from gateway.proxy.bearer import Authenticator
from gateway.proxy.forwarder import Forwarder
from gateway.proxy.routing import RouteTable, normalize_path

if TYPE_CHECKING:
    from gateway.browser.gate import CookieGate


class ProxyEndpoint:
    """Forwards a request if its route's policy admits it; a refusal never reaches upstream.

    Reached through the router's catch-all route, or straight from the server for plain
    paths (gateway.proxy.fastlane), so it takes nothing from request.app.
    """

    def __init__(
        self,
        routes: RouteTable,
        authenticator: Authenticator,
        forwarder: Forwarder,
        cookies: CookieGate | None = None,
    ):
        self._routes = routes
        self._authenticator = authenticator
        self._forwarder = forwarder
        self._cookies = cookies  # browser sessions, when enabled (gateway.browser.gate)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        exchange = request[EXCHANGE]
        route, path = self._routes.resolve(normalize_path(request.rel_url.raw_path))
        if route is None or route.blocked:
            raise NotFound("no route for this path")
        exchange.route = route.name
        cookies = self._cookies
        if cookies is not None and cookies.accepts(route, request.headers):
            exchange.principal = await cookies.authenticate(request, route, exchange)
        else:
            exchange.principal = self._authenticator.authenticate(request.headers, route)
        return await self._forwarder.forward(request, route, path, exchange)


async def proxy(request: web.Request) -> web.StreamResponse:
    """The router's catch-all route (paths the fast lane leaves to the router)."""
    return await request.app[PROXY](request)
