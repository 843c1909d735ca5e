"""The listening sockets of a gateway process: each one an EdgeServer (the gateway's
connection layer) behind aiohttp's ServerRunner and a TCP site, serving whichever
configuration's application is current for it; the decision listener (forward_auth.listen) a
LeanServer (gateway.edge.lean_server) calling its configuration's edge and decision endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.appkeys import DECISIONS, EDGE
from gateway.edge.connections import ConnectionLimits, EdgeServer
from gateway.edge.lean_server import Answer, EdgeCall, LeanLimits, LeanRequest, LeanServer
from gateway.edge.request_view import EdgeRequest
from gateway.runtime.generations import Generation

DRAIN_POLL_INTERVAL = 0.02


@dataclass(frozen=True)
class Listener:
    """One listening address of the process."""

    name: str  # the key of its application in a Generation's runners
    server: EdgeServer
    runner: web.ServerRunner
    site: web.TCPSite

    @classmethod
    async def open(
        cls,
        name: str,
        generation: Generation,
        host: str,
        port: int,
        *,
        reuse_port: bool,
        shutdown_timeout: float,
    ) -> Listener:
        """Listen on host:port, serving `generation`'s application for `name`."""
        handler, factory = generation.serving(name)
        server = EdgeServer(
            handler,
            request_factory=factory,
            limits=ConnectionLimits.from_settings(generation.settings.proxy),
            loop=asyncio.get_running_loop(),
        )
        runner = web.ServerRunner(server, shutdown_timeout=shutdown_timeout)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port or None)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        return cls(name, server, runner, site)

    def serve(self, generation: Generation) -> None:
        """New requests (on new and kept-alive connections alike) go to `generation`'s
        application from now on; requests in flight finish where they started."""
        handler, factory = generation.serving(self.name)
        limits = ConnectionLimits.from_settings(generation.settings.proxy)
        self.server.serve(handler, request_factory=factory, limits=limits)

    @property
    def port(self) -> int:
        """The port it listens on (the one the OS chose for port 0)."""
        return int(self.runner.addresses[0][1])

    def client_transports(self) -> list[asyncio.BaseTransport]:
        return [h.transport for h in self.server.connections if h.transport is not None]

    async def stop_accepting(self) -> None:
        await self.site.stop()

    async def close(self) -> None:
        """Stop accepting, then let the requests in flight finish (up to the drain timeout)
        and close the connections."""
        await self.runner.cleanup()


@dataclass(frozen=True)
class DecisionListener:
    """The decision listener: only /auth/verify, on the lean HTTP layer."""

    name: str
    lean: LeanServer
    server: asyncio.Server
    shutdown_timeout: float

    @classmethod
    async def open(
        cls,
        name: str,
        generation: Generation,
        host: str,
        port: int,
        *,
        reuse_port: bool,
        shutdown_timeout: float,
    ) -> DecisionListener:
        lean = LeanServer(*_decisions_of(generation, name))
        server = await asyncio.get_running_loop().create_server(
            lean, host, port, reuse_address=True, reuse_port=reuse_port or None
        )
        return cls(name, lean, server, shutdown_timeout)

    def serve(self, generation: Generation) -> None:
        """New requests go to `generation`'s decision endpoint from now on."""
        self.lean.serve(*_decisions_of(generation, self.name))

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    async def stop_accepting(self) -> None:
        self.server.close()

    async def close(self) -> None:
        """Stop accepting, let the decisions in flight finish (up to the drain timeout),
        close every connection."""
        self.server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_timeout
        self.lean.close_idle()
        while self.lean.busy and loop.time() < deadline:  # noqa: ASYNC110 - no event; poll
            await asyncio.sleep(DRAIN_POLL_INTERVAL)
        for connection in list(self.lean.connections):
            if connection.transport is not None:
                connection.transport.close()
        await self.server.wait_closed()


def _decisions_of(generation: Generation, name: str) -> tuple[EdgeCall, LeanLimits]:
    """What the lean server calls for `generation`: its edge middleware around its decision
    endpoint, and the edge's limits."""
    app = generation.app(name)
    edge, handler = app[EDGE], cast(Handler, app[DECISIONS].answer)
    proxy = generation.settings.proxy

    def serving(request: LeanRequest) -> Awaitable[Answer | web.StreamResponse]:
        # The edge layer reads of a request only what an EdgeRequest has (the checker holds
        # LeanRequest to it here), and hands the handler's Answer back as it is.
        read: EdgeRequest = request
        return edge(cast(web.Request, read), handler)

    limits = LeanLimits(
        header_timeout=proxy.header_timeout,
        keepalive_timeout=proxy.keepalive_timeout,
        max_header_size=proxy.max_header_size,
    )
    return serving, limits
