"""Serve the gateway in one process: listeners, event loop, signals, reloads, graceful drain."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

from gateway.config import Settings, load_settings
from gateway.runtime.generations import settle_garbage_collector
from gateway.runtime.lifetimes import resource_lifetimes, running
from gateway.runtime.listeners import DecisionListener, Listener
from gateway.runtime.reloader import ADMIN, DECISIONS, PUBLIC, Reloader
from gateway.services import build_resources

log = logging.getLogger("gateway")

PARENT_CHECK_INTERVAL: Final = 0.5
WRITE_POLL_INTERVAL: Final = 0.02


@dataclass(frozen=True)
class Gateway:
    """A serving gateway process: its two listeners and the configuration they serve."""

    reloader: Reloader
    public: Listener
    admin: Listener
    decisions: DecisionListener | None = None  # forward_auth.listen


@asynccontextmanager
async def gateway_running(
    settings: Settings,
    *,
    config: Path | str | None = None,
    reuse_port: bool = False,
    supervisor_pid: int | None = None,
    settle_garbage: bool = False,
) -> AsyncIterator[Gateway]:
    """The process's Resources started once, the first configuration's applications, the
    listeners; on the way out: stop accepting, drain in-flight requests up to
    `proxy.drain_timeout`, wait for their last bytes to leave, then close the configurations
    and the Resources (store, clients). Reloads read `config` (None: there is nothing to
    reload from). `settle_garbage`: what the process built before its first configuration
    is moved out of the garbage collector's reach (gateway serve; never under a test runner).
    """
    shutdown_timeout = settings.proxy.drain_timeout
    resources = build_resources(settings)
    source = None if config is None else partial(load_settings, config)
    async with running(resource_lifetimes(resources)):
        if settle_garbage:
            settle_garbage_collector()
        reloader = Reloader(resources, source=source, supervisor_pid=supervisor_pid)
        await reloader.start(settings)  # (no reference kept: a reload retires it)
        public = admin = None
        decisions: DecisionListener | None = None
        try:
            public = await Listener.open(
                PUBLIC,
                reloader.current,
                settings.listen.host,
                settings.listen.port,
                reuse_port=reuse_port,
                shutdown_timeout=shutdown_timeout,
            )
            admin = await Listener.open(
                ADMIN,
                reloader.current,
                settings.admin.host,
                settings.admin.port,
                reuse_port=reuse_port,
                shutdown_timeout=shutdown_timeout,
            )
            listeners: dict[str, Listener | DecisionListener] = {PUBLIC: public, ADMIN: admin}
            decision_listen = settings.forward_auth.listen
            if decision_listen is not None:
                decisions = await DecisionListener.open(
                    DECISIONS,
                    reloader.current,
                    decision_listen.host,
                    decision_listen.port,
                    reuse_port=reuse_port,
                    shutdown_timeout=shutdown_timeout,
                )
                listeners[DECISIONS] = decisions
            reloader.attach(listeners)
            yield Gateway(reloader, public, admin, decisions)
        finally:
            # Stop accepting on both listeners, let in-flight requests and streams finish and
            # their last bytes reach the clients (all within the drain timeout), then stop the
            # configurations' apps; the Resources close as `running` ends.
            deadline = asyncio.get_running_loop().time() + shutdown_timeout
            if decisions is not None:
                await decisions.close()
            if admin is not None:
                await admin.close()
            if public is not None:
                await public.stop_accepting()  # no new connections while the open ones count
                transports = public.client_transports()
                await public.close()
                await _until_written(transports, deadline)
            await reloader.close()


async def serve(
    settings: Settings,
    *,
    config: Path | str | None = None,
    reuse_port: bool = False,
    on_ready: Callable[[], None] | None = None,
    parent_pid: int | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or, for a worker, until its supervisor is gone), then
    stop accepting and drain in-flight requests. SIGHUP reloads `config`."""
    async with gateway_running(
        settings,
        config=config,
        reuse_port=reuse_port,
        supervisor_pid=parent_pid,
        settle_garbage=True,
    ) as gateway:
        log.info(
            "gateway listening on http://%s:%d (%d routes, environment %s); admin on http://%s:%d",
            settings.listen.host,
            gateway.public.port,
            len(settings.routes),
            settings.environment,
            settings.admin.host,
            gateway.admin.port,
        )
        if gateway.decisions is not None:
            log.info(
                "forward-auth decisions also on http://%s:%d/auth/verify",
                settings.forward_auth.listen.host if settings.forward_auth.listen else "",
                gateway.decisions.port,
            )
        if not settings.admin.keys:
            log.warning("admin.keys is empty: every admin API call will be refused")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, gateway.reloader.trigger)
        # A SIGHUP that came while the gateway started was held back (supervisor.run blocks
        # it) and is handled now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        watchdog = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid else None
        if on_ready is not None:
            on_ready()
        try:
            await stop.wait()
            log.info(
                "shutting down: draining in-flight requests (up to %.0fs)",
                settings.proxy.drain_timeout,
            )
        finally:
            if watchdog is not None:
                watchdog.cancel()
            loop.remove_signal_handler(signal.SIGHUP)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no reload while draining
    log.info("stopped")


async def _until_written(transports: list[asyncio.BaseTransport], deadline: float) -> None:
    """Wait, until `deadline`, for what the finished requests wrote to leave the process. A
    handler is done once its last bytes are handed to the transport; a slow client may
    still be reading them, and exiting now would drop the end of its response."""
    loop = asyncio.get_running_loop()
    while not all(_written(t) for t in transports) and loop.time() < deadline:  # noqa: ASYNC110 - transports have no "flushed" event; poll
        await asyncio.sleep(WRITE_POLL_INTERVAL)


def _written(transport: Any) -> bool:
    try:
        return transport.get_write_buffer_size() == 0  # type: ignore[no-any-return]
    except (AttributeError, RuntimeError):  # closed already: nothing left to write
        return True


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """A worker whose supervisor died (even by SIGKILL) drains and exits, never lingers."""
    while os.getppid() == parent_pid:  # noqa: ASYNC110 - no event exists for this; poll
        await asyncio.sleep(PARENT_CHECK_INTERVAL)
    log.warning("supervisor %d is gone: draining and exiting", parent_pid)
    stop.set()


def run_loop(
    settings: Settings,
    *,
    config: Path | str | None = None,
    reuse_port: bool,
    on_ready: Callable[[], None] | None = None,
    parent_pid: int | None = None,
) -> None:
    """Serve on uvloop (the default event loop if uvloop is missing) until stopped."""
    main = serve(
        settings, config=config, reuse_port=reuse_port, on_ready=on_ready, parent_pid=parent_pid
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay runnable
        asyncio.run(main)
    else:
        uvloop.run(main)
