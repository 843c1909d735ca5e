"""Lifetimes of the services: what connects and starts when the gateway starts, and closes
when it stops. Those of the process's Resources (clients, the store and the revocation view's
sync, telemetry, sampling) run once per process; those of a configuration (its identity
providers) start with its applications and end when a reload retires them. Background tasks
keep a reference and are cancelled and awaited on the way out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Protocol

from aiohttp import web
from redis.asyncio import Redis

from gateway.authserver.federation.exchange import FederatedLogin
from gateway.errors import StoreUnavailable
from gateway.observability.counter_history import CounterHistory
from gateway.observability.metrics import Metrics, TargetSample
from gateway.observability.telemetry import Telemetry
from gateway.outbound.http_client import SharedClientSession
from gateway.proxy.health_checks import HealthChecks
from gateway.proxy.route_limits import RouteLimiter
from gateway.proxy.upstream import UpstreamPool
from gateway.proxy.upstream_group import UpstreamGroup
from gateway.tokens.provider_keys import ProviderKeys
from gateway.tokens.providers import Provider
from gateway.tokens.revocation_sync import RevocationSync

if TYPE_CHECKING:
    from gateway.config import Settings
    from gateway.services import Resources, Services

log = logging.getLogger("gateway")

CANCEL_RETRY_INTERVAL: Final = 0.05
SAMPLE_INTERVAL: Final = 5.0
Lifetime = Callable[[], AbstractAsyncContextManager[None]]
CleanupContext = Callable[[web.Application], AbstractAsyncContextManager[None]]


def resource_lifetimes(r: Resources) -> list[Lifetime]:
    """The process's Resources, in the order they start (they stop in reverse)."""
    return [
        clients_lifetime(r.http, r.upstream_pool),
        store_lifetime(r.store.redis, r.sync, owned=r.store.owned),
        telemetry_lifetime(r.telemetry),
        sampling_lifetime(r.metrics, r.history),
        limits_lifetime(r.limiter),
    ]


def configuration_lifetimes(s: Services) -> list[Lifetime]:
    """What one configuration starts and stops besides the process's Resources."""
    # providers' keys for routes, on a gateway without the token exchange (whose providers
    # the federation lifetime closes)
    providers = s.auth.providers
    route_only = () if s.auth.federation is not None else providers
    return [
        provider_state_lifetime(providers, s.resources.metrics),
        federation_lifetime(s.auth.federation),
        keys_lifetime(s.auth.clients.registry, [p.keys for p in route_only]),
        upstreams_lifetime(s.proxy.upstreams, s.settings, s.resources),
    ]


@asynccontextmanager
async def running(lifetimes: Sequence[Lifetime]) -> AsyncIterator[None]:
    """The lifetimes entered in order and left in reverse, outside any application (a
    gateway that reloads runs its Resources' lifetimes once, under every configuration)."""
    async with AsyncExitStack() as stack:
        for lifetime in lifetimes:
            await stack.enter_async_context(lifetime())
        yield


def cleanup_context(lifetime: Lifetime) -> CleanupContext:
    """A lifetime as an aiohttp cleanup context (an app runs it as it starts and stops)."""
    return lambda _app: lifetime()


def clients_lifetime(http: SharedClientSession, pool: UpstreamPool) -> Lifetime:
    """The outgoing HTTP clients: the upstream pool and the shared aiohttp session."""

    @asynccontextmanager
    async def lifetime() -> AsyncIterator[None]:
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

    @asynccontextmanager
    async def lifetime() -> AsyncIterator[None]:
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


def provider_state_lifetime(providers: Sequence[Provider], metrics: Metrics) -> Lifetime:
    """A configuration's identity providers (token exchange, sign-in, routes): their key
    state exported while the configuration serves, in place of an earlier one's."""

    @asynccontextmanager
    async def lifetime() -> AsyncIterator[None]:
        if providers:
            metrics.watch_provider_keys(lambda: [(p.name, p.keys.state()) for p in providers])
        else:
            metrics.watch_provider_keys(None)
        yield

    return lifetime


def upstreams_lifetime(
    groups: Mapping[str, UpstreamGroup], settings: Settings, r: Resources
) -> Lifetime:
    """A configuration's upstream pools: their targets exported in metrics (in place of an
    earlier configuration's) and their active health checks run while it serves; the checks
    stop when a reload retires it or the gateway stops."""
    health = {name: u.health for name, u in settings.upstreams.items()}

    @asynccontextmanager
    async def lifetime() -> AsyncIterator[None]:
        r.metrics.watch_upstreams(lambda: _target_states(groups) if groups else ())
        async with background(*HealthChecks(r.upstream_pool, groups, health).loops()):
            yield

    return lifetime


def _target_states(groups: Mapping[str, UpstreamGroup]) -> list[TargetSample]:
    now = time.monotonic()
    return [
        TargetSample(g.name, t.url, t.state(now), t.in_flight, t.failures)
        for g in groups.values()
        for t in g.targets
    ]


def federation_lifetime(federation: FederatedLogin | None) -> Lifetime:
    """The token exchange's identity providers: their keys fetched in the background at
    start (the first exchange need not wait for them), fetches still in flight cancelled on
    the way out."""

    @asynccontextmanager
    async def lifetime() -> AsyncIterator[None]:
        if federation is None:
            yield
            return
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

    @asynccontextmanager
    async def lifetime() -> AsyncIterator[None]:
        try:
            yield
        finally:
            await registry.close()
            for keys in provider_keys:
                await keys.close()

    return lifetime


def telemetry_lifetime(telemetry: Telemetry) -> Lifetime:
    """Spans still queued for export are flushed when the app stops."""

    @asynccontextmanager
    async def lifetime() -> AsyncIterator[None]:
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

    @asynccontextmanager
    async def lifetime() -> AsyncIterator[None]:
        async with background(sample()):
            yield

    return lifetime


def limits_lifetime(limiter: RouteLimiter) -> Lifetime:
    """The routes' rate limits: their sync with Redis in shared mode, their bounds kept."""

    @asynccontextmanager
    async def lifetime() -> AsyncIterator[None]:
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
