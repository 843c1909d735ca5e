"""The catch-all handler: normalize → route → authenticate → forward."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.appkeys import EXCHANGE
from gateway.edge.bodies import defer_expectation
from gateway.errors import NotFound
from gateway.proxy.forwarder import Forwarder
from gateway.proxy.route_policy import bearer_principal
from gateway.proxy.routing import RouteTable, normalize_path
from gateway.tokens.bearer import Authenticator

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

    def routes(self) -> list[web.RouteDef]:
        """The catch-all route: every path no other route of the listener takes (add last)."""
        return [web.route("*", "/{tail:.*}", self.handle, expect_handler=defer_expectation)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        exchange = request[EXCHANGE]
        route, path = self._routes.resolve(normalize_path(request.rel_url.raw_path))
        if route is None or route.blocked:
            raise NotFound("no route for this path")
        exchange.route = route.name
        cookies = self._cookies
        if cookies is not None and cookies.accepts(route, request.headers):
            exchange.principal = await cookies.authenticate(request, route, exchange)
        else:
            exchange.principal = bearer_principal(self._authenticator, request.headers, route)
        return await self._forwarder.forward(request, route, path, exchange)
