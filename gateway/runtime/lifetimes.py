"""Lifetimes of the services, as aiohttp cleanup contexts: what connects and starts when the
public app starts, and closes when it stops. Background tasks keep a reference and are
cancelled and awaited on the way out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol

from aiohttp import web
from redis.asyncio import Redis

from gateway.authserver.federation.exchange import FederatedLogin
from gateway.errors import StoreUnavailable
from gateway.observability.counter_history import CounterHistory
from gateway.observability.metrics import Metrics
from gateway.observability.telemetry import Telemetry
from gateway.outbound.http_client import SharedClientSession
from gateway.proxy.route_limits import RouteLimiter
from gateway.proxy.upstream import UpstreamPool
from gateway.tokens.provider_keys import ProviderKeys
from gateway.tokens.revocation_sync import RevocationSync

log = logging.getLogger("gateway")

CANCEL_RETRY_INTERVAL: Final = 0.05
SAMPLE_INTERVAL: Final = 5.0
Lifetime = Callable[[web.Application], AsyncIterator[None]]


def clients_lifetime(http: SharedClientSession, pool: UpstreamPool) -> Lifetime:
    """The outgoing HTTP clients: the upstream pool and the shared aiohttp session."""

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        pool.open()
        await http.open()
        try:
            yield
        finally:
            pool.close()
            await http.close()

    return lifetime


def store_lifetime(redis: Redis, sync: RevocationSync, *, owned: bool) -> Lifetime:
    """The revocation view loaded and followed while the app runs; the Redis client closed
    after (when the gateway made it)."""

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        try:
            await sync.reload()  # serve with revocations loaded whenever Redis is up
        except StoreUnavailable:
            log.error("Redis unavailable at start: revocations not loaded yet (retrying)")
        try:
            async with background(sync.run(), sync.watchdog()):
                yield
        finally:
            if owned:
                await redis.aclose()

    return lifetime


def federation_lifetime(federation: FederatedLogin) -> Lifetime:
    """The identity providers' keys fetched in the background at start (the first exchange
    need not wait for them); fetches still in flight cancelled on the way out."""

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        try:
            async with background(federation.warm_up()):
                yield
        finally:
            await federation.close()

    return lifetime


class Closable(Protocol):
    async def close(self) -> None: ...


def keys_lifetime(registry: Closable, provider_keys: Sequence[ProviderKeys]) -> Lifetime:
    """Keys fetched on demand (registered clients' JWKS, providers' keys for routes):
    fetches still in flight cancelled on the way out."""

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await registry.close()
            for keys in provider_keys:
                await keys.close()

    return lifetime


def telemetry_lifetime(telemetry: Telemetry) -> Lifetime:
    """Spans still queued for export are flushed when the app stops."""

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(telemetry.shutdown)  # the exporter's flush blocks

    return lifetime


def sampling_lifetime(
    metrics: Metrics, history: CounterHistory, *, interval: float = SAMPLE_INTERVAL
) -> Lifetime:
    """Every `interval`: this worker's own gauges published, the counter history sampled
    (for the admin console's "last minutes"). Nothing of it runs on the request path."""

    async def sample() -> None:
        while True:
            metrics.sample_worker()
            history.sample()
            await asyncio.sleep(interval)

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        async with background(sample()):
            yield

    return lifetime


def limits_lifetime(limiter: RouteLimiter) -> Lifetime:
    """The routes' rate limits: their sync with Redis in shared mode, their bounds kept."""

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        async with background(limiter.run()):
            yield

    return lifetime


@asynccontextmanager
async def background(*coroutines: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run tasks for the duration of the block, keeping references; cancel and await after.

    A cancellation can be lost inside a library (redis-py reading under `asyncio.timeout`
    when the timeout fires as the cancel arrives turns it into a TimeoutError): tasks still
    running are cancelled again until they end, so shutdown never waits on them forever.
    """
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield
    finally:
        pending = set(tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=CANCEL_RETRY_INTERVAL)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                log.error("background task failed", exc_info=task.exception())
