"""create_app: the one place that wires components, middleware order, routes and lifetimes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from gateway.auth import Authenticator
from gateway.config import Settings
from gateway.endpoints import auth, health, wellknown
from gateway.endpoints.proxy import PROXY, ProxyEndpoint, proxy
from gateway.errors import StoreUnavailable
from gateway.headers import HeaderPolicy
from gateway.keys import KeyRing, load_keyring
from gateway.login import LoginService
from gateway.middleware import EDGE, edge_middleware
from gateway.observability import METRICS, Metrics, RequestObserver, metrics_handler
from gateway.proxy import Forwarder, create_client_session
from gateway.revocation import RevocationSync, RevocationView
from gateway.routing import RouteTable
from gateway.sessions import Revoker, TokenService
from gateway.state import (
    AUDIT,
    AUTHENTICATOR,
    CLOCK,
    HTTP_CLIENT,
    KEYRING,
    LOGIN,
    REDIS,
    REVOCATION_STORE,
    REVOCATION_SYNC,
    REVOCATIONS,
    REVOKER,
    ROUTES,
    SETTINGS,
    TOKEN_SERVICE,
    VERIFIER,
)
from gateway.store import (
    AuditLog,
    RateLimiter,
    RevocationStore,
    SessionStore,
    connect_redis,
    is_memory_url,
)
from gateway.tokens import TokenIssuer, TokenVerifier
from gateway.upstream import UpstreamPool
from gateway.users import BackendLoginChecker, CredentialChecker, UserFileChecker

log = logging.getLogger("gateway")

CANCEL_RETRY_INTERVAL: Final = 0.5

Clock = Callable[[], float]


def create_app(
    settings: Settings,
    *,
    redis: Redis | None = None,
    http: aiohttp.ClientSession | None = None,
    clock: Clock = time.time,
    environ: Mapping[str, str] | None = None,
) -> web.Application:
    """The public gateway application. `redis`, `http` and `clock` are injectable for tests."""
    keyring = load_keyring(settings.keys, environ)
    verifier = TokenVerifier(
        keyring,
        issuer=settings.tokens.issuer,
        audience=settings.tokens.audience,
        leeway=settings.tokens.leeway,
        clock=clock,
        cache_size=settings.tokens.verified_cache_size,
    )
    revocations = RevocationView(clock=clock)
    metrics = Metrics()
    edge = edge_middleware(
        max_header_size=settings.proxy.max_header_size,
        observer=RequestObserver(metrics, json_logs=settings.logging.format == "json"),
    )
    app = web.Application(
        middlewares=[edge],
        client_max_size=64 * 1024,  # bodies the gateway itself parses (auth endpoints)
        handler_args=server_limits(settings),
    )
    app[SETTINGS] = settings
    app[EDGE] = edge
    app[METRICS] = metrics
    app[CLOCK] = clock
    app[KEYRING] = keyring
    app[REVOCATIONS] = revocations
    app[ROUTES] = RouteTable.from_settings(
        settings.routes, blocked=("/admin",) if settings.admin.block_public_path else ()
    )
    app[VERIFIER] = verifier
    app[AUTHENTICATOR] = Authenticator(verifier, revocations, realm=settings.proxy.realm)
    app.cleanup_ctx.append(_upstream_client(settings, http))
    users = (
        UserFileChecker.from_file(settings.auth.users_file) if settings.auth.users_file else None
    )
    app.cleanup_ctx.append(_store(settings, redis, keyring, clock, users))

    if keyring.active is not None:
        app.router.add_post("/auth/login", auth.login)
        app.router.add_post("/auth/refresh", auth.refresh)
        app.router.add_post("/refresh", auth.refresh)
        app.router.add_post("/auth/token", auth.token)
        app.router.add_post("/auth/revoke", auth.revoke)
        app.router.add_post("/auth/logout", auth.logout)
        app.router.add_get("/auth/sessions", auth.list_sessions)
        app.router.add_delete("/auth/sessions/{sid}", auth.delete_session)
        app.router.add_get("/.well-known/oauth-authorization-server", auth.metadata)
    app.router.add_get("/.well-known/jwks.json", wellknown.jwks)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def server_limits(settings: Settings) -> dict[str, Any]:
    """aiohttp parser limits: a backstop well above our own 431 check, so ours answers first."""
    backstop = max(128 * 1024, 4 * settings.proxy.max_header_size)
    return {
        "max_field_size": backstop,
        "max_line_size": backstop,
        "keepalive_timeout": settings.proxy.keepalive_timeout,
    }


def _upstream_client(
    settings: Settings, given: aiohttp.ClientSession | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        session = given or create_client_session(settings.proxy)
        app[HTTP_CLIENT] = session
        pool = UpstreamPool(
            connect_timeout=settings.proxy.connect_timeout,
            read_timeout=settings.proxy.read_timeout,
            keepalive_timeout=min(settings.proxy.keepalive_timeout, 30),
        )
        forwarder = Forwarder(pool, session, HeaderPolicy(settings.proxy), settings.proxy)
        app[PROXY] = ProxyEndpoint(app[ROUTES], app[AUTHENTICATOR], forwarder)
        yield
        pool.close()
        if given is None:
            await session.close()

    return context


def _store(
    settings: Settings,
    given: Redis | None,
    keyring: KeyRing,
    clock: Clock,
    users: UserFileChecker | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Redis client, stores and the token service, for the app's lifetime."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        r = settings.redis
        if given is None and is_memory_url(r.url):
            log.warning(
                "redis.url is memory://: in-process store, single instance, development only"
            )
        client = given or connect_redis(
            r.url,
            connect_timeout=r.connect_timeout,
            socket_timeout=r.socket_timeout,
            max_connections=r.max_connections,
        )
        app[REDIS] = client
        revocation_store = RevocationStore(client, clock=clock, prefix=r.prefix)
        app[REVOCATION_STORE] = revocation_store
        sync = RevocationSync(
            revocation_store,
            app[REVOCATIONS],
            clock=clock,
            check_interval=settings.revocation.check_interval,
            max_staleness=settings.revocation.max_staleness,
            fail_mode=settings.revocation.fail_mode,
        )
        app[REVOCATION_SYNC] = sync
        app[METRICS].watch_revocations(sync, app[REVOCATIONS])
        app[AUDIT] = AuditLog(client, clock=clock, prefix=r.prefix)
        t = settings.tokens
        revoker = Revoker(
            sessions=SessionStore(client, clock=clock, prefix=r.prefix),
            revocations=revocation_store,
            view=app[REVOCATIONS],
            settings=t,
            clock=clock,
        )
        app[REVOKER] = revoker
        if keyring.active is not None:
            service = TokenService(
                revoker=revoker,
                view=app[REVOCATIONS],
                issuer=TokenIssuer(
                    keyring,
                    issuer=t.issuer,
                    audience=t.audience,
                    access_ttl=t.access_ttl,
                    clock=clock,
                ),
                settings=t,
            )
            app[TOKEN_SERVICE] = service
            app[LOGIN] = LoginService(
                users or credential_checker(settings, app[HTTP_CLIENT]),
                service,
                RateLimiter(client, clock=clock, prefix=r.prefix),
                settings.auth.rate_limits,
            )
        try:
            await sync.reload()  # serve with revocations loaded whenever Redis is up
        except StoreUnavailable:
            log.error("Redis unavailable at start: revocations not loaded yet (retrying)")
        async with background(sync.run(), sync.watchdog()):
            yield
        if given is None:
            await client.aclose()

    return context


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


def credential_checker(settings: Settings, http: aiohttp.ClientSession) -> CredentialChecker:
    """The login backend when configured; otherwise nobody can log in (said at start)."""
    if settings.auth.backend is not None:
        return BackendLoginChecker(settings.auth.backend, http)
    log.warning("no auth.users_file or auth.backend configured: every login will fail")
    return UserFileChecker({})
