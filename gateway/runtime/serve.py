"""Serve the gateway in one process: listeners, event loop, signals, graceful drain."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from gateway.app import create_apps
from gateway.config import Settings
from gateway.runtime.runner import GatewayRunner

log = logging.getLogger("gateway")

PARENT_CHECK_INTERVAL: Final = 0.5
WRITE_POLL_INTERVAL: Final = 0.02


async def serve(
    settings: Settings,
    *,
    reuse_port: bool = False,
    on_ready: Callable[[], None] | None = None,
    parent_pid: int | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or, for a worker, until its supervisor is gone), then
    stop accepting and drain in-flight requests."""
    shutdown_timeout = settings.proxy.drain_timeout
    app, admin_app = create_apps(settings)
    runner = GatewayRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()  # starts the services' lifetimes (store, revocation view, clients)
    admin_runner = GatewayRunner(admin_app, access_log=None, shutdown_timeout=shutdown_timeout)
    await admin_runner.setup()
    site = web.TCPSite(
        runner,
        settings.listen.host,
        settings.listen.port,
        reuse_address=True,
        reuse_port=reuse_port or None,
    )
    await site.start()
    admin_site = web.TCPSite(
        admin_runner, settings.admin.host, settings.admin.port, reuse_port=reuse_port or None
    )
    await admin_site.start()
    log.info(
        "gateway listening on http://%s:%d (%d routes, environment %s); admin on http://%s:%d",
        settings.listen.host,
        settings.listen.port,
        len(settings.routes),
        settings.environment,
        settings.admin.host,
        settings.admin.port,
    )
    if not settings.admin.keys:
        log.warning("admin.keys is empty: every admin API call will be refused")
    _settle_garbage_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    watchdog = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid else None
    if on_ready is not None:
        on_ready()
    try:
        await stop.wait()
        log.info("shutting down: draining in-flight requests (up to %.0fs)", shutdown_timeout)
    finally:
        # Stop accepting on both listeners, let in-flight requests and streams finish and
        # their last bytes reach the clients (all within the drain timeout), then close the
        # store and upstream pools (the app's cleanup).
        if watchdog is not None:
            watchdog.cancel()
        deadline = loop.time() + shutdown_timeout
        await admin_runner.cleanup()
        await site.stop()  # no new connections while the open ones are counted
        transports = _client_transports(runner)
        await runner.cleanup()
        await _until_written(transports, deadline)
        log.info("stopped")


def _client_transports(runner: web.AppRunner) -> list[asyncio.BaseTransport]:
    server = runner.server
    if server is None:
        return []
    return [h.transport for h in server.connections if h.transport is not None]


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


def _settle_garbage_collector() -> None:
    """Move everything built at start-up (settings, keys, libraries, the apps) out of the
    collector's reach: full collections then scan only what requests created, instead of
    pausing the event loop for tens of milliseconds at a time (tail latency)."""
    gc.collect()
    gc.freeze()


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """A worker whose supervisor died (even by SIGKILL) drains and exits, never lingers."""
    while os.getppid() == parent_pid:  # noqa: ASYNC110 - no event exists for this; poll
        await asyncio.sleep(PARENT_CHECK_INTERVAL)
    log.warning("supervisor %d is gone: draining and exiting", parent_pid)
    stop.set()


def run_loop(
    settings: Settings,
    *,
    reuse_port: bool,
    on_ready: Callable[[], None] | None = None,
    parent_pid: int | None = None,
) -> None:
    """Serve on uvloop (the default event loop if uvloop is missing) until stopped."""
    main = serve(settings, reuse_port=reuse_port, on_ready=on_ready, parent_pid=parent_pid)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay runnable
        asyncio.run(main)
    else:
        uvloop.run(main)
