"""Serving an application: aiohttp's AppRunner with the gateway's connection layer
(gateway.edge.connections) and, for the public app, the fast lane (gateway.proxy.fastlane)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.appkeys import PROXY, SERVICES
from gateway.edge.connections import ConnectionLimits, EdgeServer, Handler
from gateway.proxy.fastlane import FastLane


class GatewayRunner(web.AppRunner):
    """An AppRunner whose server is an EdgeServer (deadlines, connection cap, JSON parse
    errors); on the public app, plain proxied requests take the fast lane."""

    async def _make_server(self) -> web.Server:
        # aiohttp's own server for the app: built (and the app started) as usual, then its
        # request handler and factory are served through the gateway's connection layer.
        server = await super()._make_server()
        app = self.app
        return EdgeServer(
            listener_handler(app, server),
            request_factory=server.request_factory,
            limits=ConnectionLimits.from_settings(app[SERVICES].settings.proxy),
            loop=asyncio.get_running_loop(),
        )


def listener_handler(app: web.Application, server: web.Server) -> Handler:
    """What a listener hands an app's requests to: aiohttp's handler for the started app
    (`server`, made by its runner), behind the fast lane when the app proxies."""
    handler: Handler = server.request_handler
    if PROXY in app:
        handler = FastLane(app, handler)
    return handler
