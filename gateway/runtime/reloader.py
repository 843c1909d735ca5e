"""Reload without a restart. The configuration file is read again with the files it names
(keys, users, seal keys, …) and built over the process's Resources; its applications are
started beside the running ones and swapped in, in one step per listener, for new requests;
requests in flight finish on the configuration they started on, which is retired (its
lifetimes closed) once they are done. A configuration that does not load, fails a check or
changes a setting read only at start is refused with the message `gateway check-config`
prints, and the running one keeps serving; a log line and gateway_config_reloads_total say
which it was.

Reloads run one at a time; those asked for while one runs are served together by the next,
which reads the file after all of them. Under a supervisor, POST /admin/reload reaches one
worker: it asks the supervisor (SIGHUP) to pass the reload on to every worker, and answers
with its own reload's outcome.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import Final

from gateway.admin.reload_endpoint import ReloadOutcome
from gateway.app import admin_app, decision_app, public_app
from gateway.config import Settings
from gateway.config.restart_only import restart_changes, restart_refusal
from gateway.errors import ConfigError, ReloadUnavailable
from gateway.runtime.generations import AppBuilder, Generation
from gateway.runtime.listeners import DecisionListener, Listener
from gateway.services import Resources, configure

log = logging.getLogger("gateway")

# How long POST /admin/reload waits for its worker's reload when the supervisor passes it on.
EVERYWHERE_TIMEOUT: Final = 30.0
IDLE_CHECK_INTERVAL: Final = 0.05  # how often a retiring configuration's requests are counted
PUBLIC: Final = "public"
ADMIN: Final = "admin"
DECISIONS: Final = "decisions"  # forward_auth.listen

# Where a reload reads the configuration from: `gateway.config.load_settings` of the file the
# gateway was started with (ConfigError when it does not load or validate).
SettingsSource = Callable[[], Settings]


class Reloader:
    """The configuration a gateway process serves, and its reloads."""

    def __init__(
        self,
        resources: Resources,
        *,
        source: SettingsSource | None,
        supervisor_pid: int | None = None,
    ):
        self._resources = resources
        self._source = source
        self._supervisor = supervisor_pid  # passes SIGHUP on to every worker
        self._builders: dict[str, AppBuilder] = {
            PUBLIC: lambda s: public_app(s, run_resources=False),
            ADMIN: lambda s: admin_app(s, reload=self),
        }
        self._listeners: Mapping[str, Listener | DecisionListener] = {}
        self._current: Generation | None = None
        self._requested = False
        self._waiters: list[asyncio.Future[ReloadOutcome]] = []
        self._running: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def current(self) -> Generation:
        assert self._current is not None, "start() first"
        return self._current

    async def start(self, settings: Settings) -> Generation:
        """The configuration the process starts with (ConfigError: it cannot start)."""
        if settings.forward_auth.listen is not None:  # restart-only: every reload has it too
            self._builders[DECISIONS] = decision_app
        generation = await self._build(settings, number=1)
        self._current = generation
        self._resources.metrics.configuration_loaded(generation.number, generation.loaded_at)
        return generation

    def attach(self, listeners: Mapping[str, Listener | DecisionListener]) -> None:
        """The listeners a reload swaps the new configuration into (by app name)."""
        self._listeners = listeners

    # -- asking for a reload -----------------------------------------------------------------

    def trigger(self) -> None:
        """Reload soon (SIGHUP). A reload asked for while one runs is done by the next one."""
        if self._closing:
            return
        self._requested = True
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run())

    async def reload(self) -> ReloadOutcome:
        """Reload this process (after any reload already running) and return the outcome."""
        if self._closing:
            return self._shutting_down()
        waiter = self._wait_for_next()
        self.trigger()
        return await waiter

    async def reload_everywhere(self) -> ReloadOutcome:
        """Every worker reloads; the outcome of this process's own reload. Under a supervisor
        the reload comes back as the SIGHUP it passes on to every worker, this one included."""
        if self._supervisor is None or self._closing:
            return await self.reload()
        waiter = self._wait_for_next()
        try:
            os.kill(self._supervisor, signal.SIGHUP)
        except ProcessLookupError:  # the supervisor is gone; the parent watchdog stops us
            waiter.cancel()
            raise ReloadUnavailable("the supervisor is gone; nothing was reloaded") from None
        try:
            return await asyncio.wait_for(waiter, EVERYWHERE_TIMEOUT)
        except TimeoutError:
            raise ReloadUnavailable() from None

    def _wait_for_next(self) -> asyncio.Future[ReloadOutcome]:
        """The outcome of the next reload to start (one that reads the file from now on)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    async def _run(self) -> None:
        while self._requested and not self._closing:
            self._requested = False
            waiters, self._waiters = self._waiters, []
            outcome = await self._reload()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(outcome)

    # -- one reload --------------------------------------------------------------------------

    async def _reload(self) -> ReloadOutcome:
        running = self.current
        started = time.monotonic()
        try:
            if self._source is None:
                raise ConfigError("the gateway was started without a configuration file")
            settings = self._source()
            changed = restart_changes(running.settings, settings)
            if changed:
                raise ConfigError(restart_refusal(changed))
            generation = await self._build(settings, number=running.number + 1)
        except ConfigError as exc:
            return self._refused(running, exc.description)
        except Exception:
            log.exception("configuration reload failed while building the new configuration")
            return self._refused(
                running, "the new configuration could not be built (see the gateway's log)"
            )
        if self._closing:  # shutting down meanwhile: never swapped in
            await generation.close()
            return self._shutting_down()
        for listener in self._listeners.values():
            listener.serve(generation)
        self._current = generation
        metrics = self._resources.metrics
        metrics.configuration_loaded(generation.number, generation.loaded_at)
        metrics.reload_done(ok=True)
        log.info(
            "configuration reloaded in %.3fs: configuration %d serves new requests (%d routes); "
            "configuration %d retires once its requests are done",
            time.monotonic() - started,
            generation.number,
            len(settings.routes),
            running.number,
        )
        task = asyncio.create_task(self._retire(running))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return ReloadOutcome(reloaded=True, generation=generation.number)

    async def _build(self, settings: Settings, *, number: int) -> Generation:
        services = configure(settings, self._resources)  # reads the files; ConfigError
        return await Generation.start(
            number, services, self._builders, loaded_at=self._resources.clock()
        )

    def _refused(self, running: Generation, refusal: str) -> ReloadOutcome:
        self._resources.metrics.reload_done(ok=False)
        log.error(
            "configuration reload refused; configuration %d keeps serving: %s",
            running.number,
            refusal,
        )
        return ReloadOutcome(reloaded=False, generation=running.number, refusal=refusal)

    async def _retire(self, old: Generation) -> None:
        """Once the old configuration's requests are done (or its drain timeout passed, for
        long streams and WebSockets, which go on with what they hold), close its apps."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + old.settings.proxy.drain_timeout
        while old.in_flight and not self._closing and loop.time() < deadline:  # noqa: ASYNC110 - no event per request; poll
            await asyncio.sleep(IDLE_CHECK_INTERVAL)
        if old.in_flight and not self._closing:
            log.warning(
                "configuration %d retired with %d requests still running on it",
                old.number,
                old.in_flight,
            )
        try:
            await old.close()
        except Exception:
            log.exception("configuration %d did not close cleanly", old.number)
        log.info("configuration %d retired", old.number)

    # -- shutdown ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Once the listeners have drained: no more reloads; configurations still retiring
        and the current one are closed."""
        self._closing = True
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(self._shutting_down())
        await asyncio.gather(*self._retiring, return_exceptions=True)
        if self._current is not None:
            await self._current.close()

    def _shutting_down(self) -> ReloadOutcome:
        return ReloadOutcome(
            reloaded=False,
            generation=self.current.number,
            refusal="the gateway is shutting down",
            shutting_down=True,
        )
