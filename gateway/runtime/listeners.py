"""The listening sockets of a gateway process: each one an EdgeServer (the gateway's
connection layer) behind aiohttp's ServerRunner and a TCP site, serving whichever
configuration's application is current for it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from gateway.edge.connections import ConnectionLimits, EdgeServer
from gateway.runtime.generations import Generation


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
