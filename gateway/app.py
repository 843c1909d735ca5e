"""Wiring: the services built from settings, the two applications (middleware order, routes)
and which lifetimes they run. Nothing here connects or starts anything; the lifetimes in
gateway.runtime.lifetimes do, when the public app starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Middleware
from redis.asyncio import Redis

from gateway.admin import api as admin_api
from gateway.admin.actions import AdminActions
from gateway.admin.apikeys import admin_auth_middleware
from gateway.appkeys import (
    ADMIN_ACTIONS,
    AUDIT,
    AUTHENTICATOR,
    CLOCK,
    EDGE,
    KEYRING,
    LOGIN,
    METRICS,
    PROXY,
    REVOCATION_STORE,
    REVOCATION_SYNC,
    REVOCATIONS,
    REVOKER,
    SETTINGS,
    TOKEN_SERVICE,
    VERIFIER,
)
from gateway.authserver import session_endpoints, token_endpoints, wellknown
from gateway.authserver.credentials import BackendLoginChecker, CredentialChecker, UserFileChecker
from gateway.authserver.login import LoginService
from gateway.authserver.revoker import Revoker
from gateway.authserver.token_service import TokenService
from gateway.config import Settings
from gateway.edge import edge_middleware
from gateway.proxy.bearer import Authenticator
from gateway.proxy.endpoint import ProxyEndpoint, proxy
from gateway.proxy.forwarder import Forwarder
from gateway.proxy.headers import HeaderPolicy
from gateway.proxy.routing import RouteTable
from gateway.proxy.upstream import UpstreamPool
from gateway.runtime import health
from gateway.runtime.http_client import SharedClientSession
from gateway.runtime.lifetimes import clients_lifetime, store_lifetime
from gateway.runtime.metrics import Metrics, metrics_handler
from gateway.runtime.observer import RequestObserver
from gateway.store import (
    AuditLog,
    Durability,
    RateLimiter,
    RevocationStore,
    SessionStore,
    connect_redis,
    is_memory_url,
)
from gateway.tokens.issuer import TokenIssuer
from gateway.tokens.keys import KeyRing, load_keyring
from gateway.tokens.revocation_sync import RevocationSync
from gateway.tokens.revocation_view import RevocationView
from gateway.tokens.verifier import TokenVerifier
from gateway.typedefs import Clock

log = logging.getLogger("gateway")

ADMIN_REALM: Final = "admin"  # the admin listener's challenge realm
OWN_BODY_LIMIT: Final = 64 * 1024  # bodies the gateway itself parses (auth and admin endpoints)


@dataclass(frozen=True)
class Services:
    """Every long-lived component of one gateway process, built once from settings."""

    settings: Settings
    clock: Clock
    metrics: Metrics
    keyring: KeyRing
    verifier: TokenVerifier
    revocations: RevocationView
    redis: Redis
    owns_redis: bool  # made here from redis.url (closed on shutdown), not handed in
    revocation_store: RevocationStore
    revocation_sync: RevocationSync
    audit: AuditLog
    revoker: Revoker
    token_service: TokenService | None  # None without a signing key: verification only
    login: LoginService | None
    authenticator: Authenticator
    routes: RouteTable
    http: SharedClientSession
    upstream_pool: UpstreamPool
    proxy: ProxyEndpoint
    admin_actions: AdminActions


def build_services(
    settings: Settings,
    *,
    redis: Redis | None = None,
    clock: Clock = time.time,
    environ: Mapping[str, str] | None = None,
) -> Services:
    """Every component, connected to nothing yet. `redis` and `clock` are injectable."""
    r, t, p = settings.redis, settings.tokens, settings.proxy
    keyring = load_keyring(settings.keys, environ)
    verifier = TokenVerifier.from_settings(keyring, t, clock=clock)
    view = RevocationView(clock=clock)
    if redis is None and is_memory_url(r.url):
        log.warning("redis.url is memory://: in-process store, single instance, development only")
    client = redis or connect_redis(
        r.url,
        connect_timeout=r.connect_timeout,
        socket_timeout=r.socket_timeout,
        max_connections=r.max_connections,
    )
    durability = Durability(r.min_replicas_ack, r.replica_ack_timeout)
    revocation_store = RevocationStore(client, clock=clock, prefix=r.prefix, durability=durability)
    sync = RevocationSync(
        revocation_store,
        view,
        clock=clock,
        check_interval=settings.revocation.check_interval,
        max_staleness=settings.revocation.max_staleness,
        fail_mode=settings.revocation.fail_mode,
    )
    audit = AuditLog(client, clock=clock, prefix=r.prefix, durability=durability)
    revoker = Revoker(
        sessions=SessionStore(client, clock=clock, prefix=r.prefix, durability=durability),
        revocations=revocation_store,
        view=view,
        settings=t,
        clock=clock,
    )
    http = SharedClientSession(p)
    token_service, login = _token_service(settings, keyring, revoker, view, client, http, clock)
    authenticator = Authenticator(verifier, view)
    routes = RouteTable.from_settings(
        settings.routes, blocked=("/admin",) if settings.admin.block_public_path else ()
    )
    pool = UpstreamPool(
        connect_timeout=p.connect_timeout,
        read_timeout=p.read_timeout,
        keepalive_timeout=min(p.keepalive_timeout, 30),
    )
    forwarder = Forwarder(pool, http, HeaderPolicy(p), p)
    metrics = Metrics()
    metrics.watch_revocations(sync, view)
    return Services(
        settings=settings,
        clock=clock,
        metrics=metrics,
        keyring=keyring,
        verifier=verifier,
        revocations=view,
        redis=client,
        owns_redis=redis is None,
        revocation_store=revocation_store,
        revocation_sync=sync,
        audit=audit,
        revoker=revoker,
        token_service=token_service,
        login=login,
        authenticator=authenticator,
        routes=routes,
        http=http,
        upstream_pool=pool,
        proxy=ProxyEndpoint(routes, authenticator, forwarder),
        admin_actions=AdminActions(revoker, audit, verifier, clock),
    )


def _token_service(
    settings: Settings,
    keyring: KeyRing,
    revoker: Revoker,
    view: RevocationView,
    redis: Redis,
    http: SharedClientSession,
    clock: Clock,
) -> tuple[TokenService | None, LoginService | None]:
    """The token service and logins, when a signing key is configured."""
    if keyring.active is None:
        return None, None
    t = settings.tokens
    issuer = TokenIssuer(
        keyring, issuer=t.issuer, audience=t.audience, access_ttl=t.access_ttl, clock=clock
    )
    service = TokenService(revoker=revoker, view=view, issuer=issuer, settings=t)
    limiter = RateLimiter(redis, clock=clock, prefix=settings.redis.prefix)
    login = LoginService(
        _credential_checker(settings, http), service, limiter, settings.auth.rate_limits
    )
    return service, login


def _credential_checker(settings: Settings, http: SharedClientSession) -> CredentialChecker:
    """The user file or the login backend; otherwise nobody can log in (said at start)."""
    if settings.auth.users_file is not None:
        return UserFileChecker.from_file(settings.auth.users_file)
    if settings.auth.backend is not None:
        return BackendLoginChecker(settings.auth.backend, http)
    log.warning("no auth.users_file or auth.backend configured: every login will fail")
    return UserFileChecker({})


def create_apps(settings: Settings, **injected: Any) -> tuple[web.Application, web.Application]:
    """(public app, admin app) sharing one set of services; the public app runs their
    lifetimes, so start it first and stop it last."""
    services = build_services(settings, **injected)
    return create_app(settings, services=services), create_admin_app(services)


def create_app(
    settings: Settings, *, services: Services | None = None, **injected: Any
) -> web.Application:
    """The public gateway application; `injected` (redis, clock, environ) goes to
    `build_services` when no services are given."""
    s = services or build_services(settings, **injected)
    edge = edge_middleware(
        realm=settings.proxy.realm,
        max_header_size=settings.proxy.max_header_size,
        observer=RequestObserver(s.metrics, json_logs=settings.logging.format == "json"),
    )
    app = web.Application(
        middlewares=[edge], client_max_size=OWN_BODY_LIMIT, handler_args=server_limits(settings)
    )
    _share(app, s)
    app[EDGE] = edge
    app[PROXY] = s.proxy
    app[AUTHENTICATOR] = s.authenticator
    app.cleanup_ctx.append(clients_lifetime(s.http, s.upstream_pool))
    app.cleanup_ctx.append(store_lifetime(s.redis, s.revocation_sync, owned=s.owns_redis))
    if s.token_service is not None and s.login is not None:
        app[TOKEN_SERVICE] = s.token_service
        app[LOGIN] = s.login
        _token_routes(app.router)
    app.router.add_get("/.well-known/jwks.json", wellknown.jwks)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_route("*", "/{tail:.*}", proxy)  # everything else is proxied
    return app


def _token_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/auth/login", token_endpoints.login)
    router.add_post("/auth/refresh", token_endpoints.refresh)
    router.add_post("/refresh", token_endpoints.refresh)
    router.add_post("/auth/token", token_endpoints.token)
    router.add_post("/auth/revoke", token_endpoints.revoke)
    router.add_post("/auth/logout", token_endpoints.logout)
    router.add_get("/auth/sessions", session_endpoints.list_sessions)
    router.add_delete("/auth/sessions/{sid}", session_endpoints.delete_session)
    router.add_get("/.well-known/oauth-authorization-server", wellknown.metadata)


def create_admin_app(services: Services) -> web.Application:
    """The admin API, on its own listener, over the public app's services (which the public
    app starts and stops)."""
    middlewares: list[Middleware] = [
        edge_middleware(realm=ADMIN_REALM),
        admin_auth_middleware(services.settings.admin.keys),
    ]
    app = web.Application(middlewares=middlewares, client_max_size=OWN_BODY_LIMIT)
    _share(app, services)
    app[ADMIN_ACTIONS] = services.admin_actions
    app.router.add_post("/admin/revoke/token", admin_api.revoke_token)
    app.router.add_delete("/admin/sessions/{sid}", admin_api.revoke_session)
    app.router.add_post("/admin/users/{sub}/revoke", admin_api.revoke_user)
    app.router.add_get("/admin/users/{sub}/sessions", admin_api.user_sessions)
    app.router.add_get("/admin/revocations", admin_api.revocations)
    app.router.add_get("/admin/audit", admin_api.audit)
    return app


def _share(app: web.Application, s: Services) -> None:
    """The state both applications' handlers read."""
    app[SETTINGS] = s.settings
    app[CLOCK] = s.clock
    app[METRICS] = s.metrics
    app[KEYRING] = s.keyring
    app[VERIFIER] = s.verifier
    app[REVOCATIONS] = s.revocations
    app[REVOCATION_SYNC] = s.revocation_sync
    app[REVOCATION_STORE] = s.revocation_store
    app[AUDIT] = s.audit
    app[REVOKER] = s.revoker


def server_limits(settings: Settings) -> dict[str, Any]:
    """aiohttp parser limits: a backstop well above our own 431 check, so ours answers first."""
    backstop = max(128 * 1024, 4 * settings.proxy.max_header_size)
    return {
        "max_field_size": backstop,
        "max_line_size": backstop,
        "keepalive_timeout": settings.proxy.keepalive_timeout,
    }
