"""One configuration's applications, started and later retired: a gateway serves one
generation at a time, and a reload starts the next beside it before swapping it in."""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.appkeys import IN_FLIGHT
from gateway.config import Settings
from gateway.edge.connections import Handler
from gateway.runtime.runner import listener_handler
from gateway.services import Services

# What a listener serves, made from one configuration's services.
AppBuilder = Callable[[Services], web.Application]


@dataclass(frozen=True)
class Generation:
    """One configuration's services and, per listener, its started application."""

    number: int  # 1 at start, one more per reload swapped in
    services: Services
    runners: Mapping[str, web.AppRunner]  # by listener name; each app started, never bound
    loaded_at: float  # Unix time

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @classmethod
    async def start(
        cls,
        number: int,
        services: Services,
        builders: Mapping[str, AppBuilder],
        *,
        loaded_at: float,
    ) -> Generation:
        """Build each listener's application and start it (its lifetimes run, it is frozen).
        Each app gets an AppRunner of its own that is never given a site: the runner is
        aiohttp's public way to start an app and to clean it up, and its server's request
        handler and factory are what the listener hands requests to."""
        runners: dict[str, web.AppRunner] = {}
        try:
            for name, build in builders.items():
                runner = web.AppRunner(build(services), access_log=None)
                await runner.setup()
                runners[name] = runner
        except BaseException:
            await _clean_up(runners)
            raise
        return cls(number, services, runners, loaded_at)

    def serving(self, listener: str) -> tuple[Handler, Callable[..., Any]]:
        """(request handler, request factory) of this generation's app for a listener."""
        runner = self.runners[listener]
        server = runner.server
        assert server is not None  # started in `start`
        return listener_handler(runner.app, server), server.request_factory

    def app(self, listener: str) -> web.Application:
        """This generation's started application for a listener."""
        return self.runners[listener].app

    @property
    def in_flight(self) -> int:
        """Requests its applications are serving now."""
        return sum(runner.app[IN_FLIGHT].in_flight for runner in self.runners.values())

    async def close(self) -> None:
        """Stop its applications: their shutdown signals and lifetimes, in reverse."""
        await _clean_up(self.runners)


async def _clean_up(runners: Mapping[str, web.AppRunner]) -> None:
    for runner in reversed(list(runners.values())):
        await runner.cleanup()


def settle_garbage_collector() -> None:
    """Move what the process built to last (libraries, settings, its Resources) out of the
    collector's reach: full collections then scan only what configurations and requests
    created, instead of pausing the event loop for tens of milliseconds at a time (tail
    latency). Done before the first configuration is built: a configuration (about a
    thousand objects) must stay collectable, or a reload could never free the one it
    retires (unfreezing all to collect it pauses the loop for a full collection)."""
    gc.collect()
    gc.freeze()
