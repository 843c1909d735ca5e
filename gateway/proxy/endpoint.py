"""The catch-all handler: admit (gateway.proxy.admission), then forward."""

from __future__ import annotations

from aiohttp import web

from gateway.appkeys import EXCHANGE
from gateway.edge.bodies import defer_expectation
from gateway.proxy.admission import Admission
from gateway.proxy.forwarder import Forwarder


class ProxyEndpoint:
    """Forwards a request if its route's policy admits it; a refusal never reaches upstream.

    Reached through the router's catch-all route, or straight from the server for plain
    paths (gateway.proxy.fastlane), so it takes nothing from request.app.
    """

    def __init__(self, admission: Admission, forwarder: Forwarder):
        self._admission = admission
        self._forwarder = forwarder

    def routes(self) -> list[web.RouteDef]:
        """The catch-all route: every path no other route of the listener takes (add last)."""
        return [web.route("*", "/{tail:.*}", self.handle, expect_handler=defer_expectation)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        exchange = request[EXCHANGE]
        admitted = await self._admission.admit(request, exchange)
        return await self._forwarder.forward(request, admitted.route, admitted.path, exchange)
