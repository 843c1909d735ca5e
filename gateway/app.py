"""Wiring: the services built from settings, the two applications (middleware order, routes)
and which lifetimes they run. Nothing here connects or starts anything; the lifetimes in
gateway.runtime.lifetimes do, when the public app starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from redis.asyncio import Redis

from gateway.admin import api as admin_api
from gateway.admin.actions import AdminActions
from gateway.admin.apikeys import AdminKeys, admin_auth_middleware
from gateway.admin.console.guard import console_middleware
from gateway.admin.console.pages import STATIC_DIR, Pages, see_other
from gateway.admin.console.signin import ConsoleSignIn
from gateway.admin.console.status import FAMILIES as CONSOLE_COUNTERS
from gateway.admin.console.status import StatusPanel
from gateway.admin.console.views import ConsoleViews
from gateway.appkeys import (
    ADMIN_ACTIONS,
    AUDIT,
    AUTHENTICATOR,
    BODIES,
    CLOCK,
    EDGE,
    FEDERATION,
    INTROSPECTION,
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
from gateway.authserver import introspection, session_endpoints, token_endpoints, wellknown
from gateway.authserver.credentials import (
    BackendLoginChecker,
    CredentialChecker,
    UserFileChecker,
    load_user_file,
)
from gateway.authserver.federation.exchange import FederatedLogin
from gateway.authserver.federation.providers import build_providers, identity_links
from gateway.authserver.introspection import Introspection
from gateway.authserver.login import LoginService
from gateway.authserver.revoker import Revoker
from gateway.authserver.token_service import TokenService
from gateway.browser.browser_endpoints import BrowserEndpoints
from gateway.browser.cookies import CookieFormat
from gateway.browser.cross_site import CrossSiteCheck
from gateway.browser.gate import CookieGate, cookie_routes
from gateway.browser.html_pages import stylesheet_handler
from gateway.browser.login_kinds import PasswordLogin, SubjectTokenLogin
from gateway.browser.refresh import BrowserSessions
from gateway.browser.seal import cookie_seal
from gateway.browser.upstream_cookies import CookieHeaderPolicy
from gateway.config import Settings
from gateway.edge import edge_middleware
from gateway.edge.bodies import OWN_BODY_LIMIT, BodyReader, defer_expectation
from gateway.errors import MethodNotAllowed, NotFound
from gateway.proxy.bearer import Authenticator
from gateway.proxy.endpoint import ProxyEndpoint, proxy
from gateway.proxy.forwarder import Forwarder
from gateway.proxy.headers import HeaderPolicy
from gateway.proxy.routing import RouteTable
from gateway.proxy.tracecontext import TracePolicy
from gateway.proxy.upstream import UpstreamPool
from gateway.runtime import health
from gateway.runtime.counter_history import CounterHistory
from gateway.runtime.http_client import SharedClientSession
from gateway.runtime.lifetimes import (
    clients_lifetime,
    federation_lifetime,
    sampling_lifetime,
    store_lifetime,
    telemetry_lifetime,
)
from gateway.runtime.metrics import Metrics, metrics_handler
from gateway.runtime.observer import RequestObserver
from gateway.runtime.telemetry import Telemetry
from gateway.store import (
    AuditLog,
    ConsoleSessionStore,
    Durability,
    RateLimiter,
    RevocationStore,
    SessionStore,
    connect_redis,
    is_memory_url,
)
from gateway.store.cookie_sessions import CookieSessionStore
from gateway.tokens.issuer import TokenIssuer
from gateway.tokens.keys import KeyRing, load_keyring
from gateway.tokens.revocation_sync import RevocationSync
from gateway.tokens.revocation_view import RevocationView
from gateway.tokens.verifier import TokenVerifier
from gateway.typedefs import Clock

log = logging.getLogger("gateway")

ADMIN_REALM: Final = "admin"  # the admin listener's challenge realm


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
    federation: FederatedLogin | None  # None without a signing key or providers
    introspection: Introspection
    authenticator: Authenticator
    routes: RouteTable
    http: SharedClientSession
    upstream_pool: UpstreamPool
    bodies: BodyReader
    proxy: ProxyEndpoint
    admin_actions: AdminActions
    telemetry: Telemetry
    history: CounterHistory  # the counters over the last minutes (admin console)
    console_sessions: ConsoleSessionStore
    browser: BrowserEndpoints | None = None  # browser sessions (cookie mode), when enabled


def build_services(
    settings: Settings,
    *,
    redis: Redis | None = None,
    clock: Clock = time.time,
    environ: Mapping[str, str] | None = None,
    telemetry: Telemetry | None = None,
) -> Services:
    """Every component, connected to nothing yet. `redis`, `clock` and `telemetry` are
    injectable."""
    r, t, p = settings.redis, settings.tokens, settings.proxy
    telemetry = telemetry or Telemetry.from_settings(settings.tracing)
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
        sessions=telemetry.traced(
            SessionStore(client, clock=clock, prefix=r.prefix, durability=durability), "sessions"
        ),
        revocations=telemetry.traced(revocation_store, "revocations"),
        view=view,
        settings=t,
        clock=clock,
    )
    http = SharedClientSession(p)
    metrics = Metrics()
    limiter = telemetry.traced(RateLimiter(client, clock=clock, prefix=r.prefix), "ratelimit")
    token_service, login = _token_service(settings, keyring, revoker, view, limiter, http, clock)
    federation = _federation(settings, token_service, limiter, http, clock, metrics)
    authenticator = Authenticator(verifier, view)
    routes = RouteTable.from_settings(
        settings.routes,
        blocked=("/admin",) if settings.admin.block_public_path else (),
        path_parameters=p.path_parameters,
    )
    pool = UpstreamPool(
        connect_timeout=p.connect_timeout,
        read_timeout=p.read_timeout,
        keepalive_timeout=min(p.keepalive_timeout, 30),
    )
    mode = settings.tracing.mode
    trace = None
    if mode != "passthrough":
        trace = TracePolicy(
            mode, current_span=telemetry.current_span if telemetry.enabled else None
        )
    bodies = BodyReader.from_settings(p)
    browser = _browser(
        settings,
        keyring,
        verifier,
        authenticator,
        revoker,
        view,
        client,
        login,
        federation,
        metrics,
        clock,
        environ,
    )
    policy = (
        HeaderPolicy(p, trace=trace)
        if browser is None
        else CookieHeaderPolicy(p, settings.browser, trace=trace)
    )
    forwarder = Forwarder(pool, http, policy, bodies, p)
    metrics.watch_revocations(sync, view)
    history = CounterHistory(lambda: metrics.counter_totals(CONSOLE_COUNTERS))
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
        federation=federation,
        introspection=Introspection(
            settings.introspection.clients,
            authenticator=authenticator,
            sessions=revoker.sessions,
            view=view,
            issuer=t.issuer,
            audience=t.audience,
            rate_limit=settings.introspection.rate_limit,
            realm=p.realm,
            clock=clock,
        ),
        authenticator=authenticator,
        routes=routes,
        http=http,
        upstream_pool=pool,
        bodies=bodies,
        proxy=ProxyEndpoint(routes, authenticator, forwarder, browser[0] if browser else None),
        admin_actions=AdminActions(revoker, audit, verifier, clock),
        telemetry=telemetry,
        browser=browser[1] if browser else None,
        history=history,
        console_sessions=ConsoleSessionStore(client, clock=clock, prefix=r.prefix),
    )


def _token_service(
    settings: Settings,
    keyring: KeyRing,
    revoker: Revoker,
    view: RevocationView,
    limiter: RateLimiter,
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
    login = LoginService(
        _credential_checker(settings, http), service, limiter, settings.auth.rate_limits
    )
    return service, login


def _federation(
    settings: Settings,
    tokens: TokenService | None,
    limiter: RateLimiter,
    http: SharedClientSession,
    clock: Clock,
    metrics: Metrics,
) -> FederatedLogin | None:
    """Token exchange with the configured identity providers, when there are any."""
    f = settings.federation
    if tokens is None or not f.providers:
        return None
    providers = build_providers(
        f, http, leeway=settings.tokens.leeway, clock=clock, record_fetch=metrics.record_jwks_fetch
    )
    users = settings.auth.users_file
    federation = FederatedLogin(
        providers,
        tokens,
        own_issuer=settings.tokens.issuer,
        limiter=limiter,
        per_ip=settings.auth.rate_limits.per_ip,
        links=identity_links(load_user_file(users)) if users is not None else {},
        record=metrics.record_federated_login,
    )
    metrics.watch_provider_keys(lambda: [(p.name, p.keys.state()) for p in providers])
    return federation


def _browser(
    settings: Settings,
    keyring: KeyRing,
    verifier: TokenVerifier,
    authenticator: Authenticator,
    revoker: Revoker,
    view: RevocationView,
    redis: Redis,
    login: LoginService | None,
    federation: FederatedLogin | None,
    metrics: Metrics,
    clock: Clock,
    environ: Mapping[str, str] | None,
) -> tuple[CookieGate, BrowserEndpoints] | None:
    """Browser sessions (cookie mode): the proxy's cookie branch and /auth/browser/*."""
    b, t = settings.browser, settings.tokens
    if not b.enabled or login is None:  # settings refuse browser mode without a signing key
        return None
    if not b.secure:
        log.warning("browser.secure is false: cookies without Secure, for plain-http demos only")
    issuer = TokenIssuer(
        keyring, issuer=t.issuer, audience=t.audience, access_ttl=t.access_ttl, clock=clock
    )
    sessions = BrowserSessions(
        store=CookieSessionStore(
            redis,
            clock=clock,
            prefix=settings.redis.prefix,
            durability=Durability(
                settings.redis.min_replicas_ack, settings.redis.replica_ack_timeout
            ),
        ),
        issuer=issuer,
        revoker=revoker,
        view=view,
        metrics=metrics,
        rotation_grace=b.rotation_grace,
    )
    gate = CookieGate(
        b,
        routes=cookie_routes(settings.routes, enabled=True),
        seal=cookie_seal(b, environ),
        cookie_format=CookieFormat(b),
        authenticator=authenticator,
        sessions=sessions,
        cross_site=CrossSiteCheck(b.allowed_origins, metrics),
        metrics=metrics,
        clock=clock,
    )
    # Identity-provider tokens (SPEC §10) sign in through the token exchange, when configured.
    exchange = federation.exchange if federation is not None else None
    kinds = (SubjectTokenLogin(exchange), PasswordLogin(login))
    endpoints = BrowserEndpoints(
        gate=gate, kinds=kinds, revoker=revoker, verifier=verifier, metrics=metrics, clock=clock
    )
    return gate, endpoints


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
    edge = s.telemetry.wrap_edge(edge)  # itself unless OpenTelemetry export is on
    app = web.Application(middlewares=[edge], client_max_size=OWN_BODY_LIMIT)
    _share(app, s)
    app[EDGE] = edge
    app[PROXY] = s.proxy
    app[AUTHENTICATOR] = s.authenticator
    app.cleanup_ctx.append(clients_lifetime(s.http, s.upstream_pool))
    app.cleanup_ctx.append(store_lifetime(s.redis, s.revocation_sync, owned=s.owns_redis))
    app.cleanup_ctx.append(telemetry_lifetime(s.telemetry))
    app.cleanup_ctx.append(sampling_lifetime(s.metrics, s.history))
    if s.token_service is not None and s.login is not None:
        app[TOKEN_SERVICE] = s.token_service
        app[LOGIN] = s.login
        _token_routes(app.router, s.browser)
    if s.browser is not None:
        _browser_routes(app.router, s.browser, login_page=settings.browser.login_page)
    if s.federation is not None:
        app[FEDERATION] = s.federation
        app.cleanup_ctx.append(federation_lifetime(s.federation))
    app[INTROSPECTION] = s.introspection
    _add_routes(
        app.router,
        ("POST", "/auth/introspect", introspection.introspect),
        ("GET", "/.well-known/jwks.json", wellknown.jwks),
        ("GET", "/healthz", health.healthz),
        ("GET", "/readyz", health.readyz),
        ("GET", "/metrics", metrics_handler),
        ("*", "/{tail:.*}", proxy),  # everything else is proxied
    )
    return app


def _token_routes(router: web.UrlDispatcher, browser: BrowserEndpoints | None) -> None:
    refresh: Handler = token_endpoints.refresh
    list_sessions: Handler = session_endpoints.list_sessions
    delete_session: Handler = session_endpoints.delete_session
    if browser is not None:  # these also take a browser's cookies
        refresh = browser.refresh_by_cookie(refresh)
        list_sessions = browser.accepting_cookies(list_sessions)
        delete_session = browser.accepting_cookies(delete_session)
    _add_routes(
        router,
        ("POST", "/auth/login", token_endpoints.login),
        ("POST", "/auth/refresh", refresh),
        ("POST", "/refresh", refresh),
        ("POST", "/auth/token", token_endpoints.token),
        ("POST", "/auth/revoke", token_endpoints.revoke),
        ("POST", "/auth/logout", token_endpoints.logout),
        ("GET", "/auth/sessions", list_sessions),
        ("DELETE", "/auth/sessions/{sid}", delete_session),
        ("GET", "/.well-known/oauth-authorization-server", wellknown.metadata),
    )


def _browser_routes(
    router: web.UrlDispatcher, browser: BrowserEndpoints, *, login_page: bool
) -> None:
    """/auth/browser/* (SPEC §9) and the sign-out forms of the devices page."""
    _add_routes(
        router,
        ("GET", "/auth/browser/login", browser.login_page if login_page else _not_served),
        ("POST", "/auth/browser/login", browser.login),
        ("GET", "/auth/browser/session", browser.session),
        ("GET", "/auth/browser/devices", browser.devices),
        ("GET", "/auth/browser/assets/browser.css", stylesheet_handler),
    )
    for path, handler in (
        ("/auth/browser/logout", browser.logout),
        ("/auth/browser/refresh", browser.refresh),
        ("/auth/browser/devices/signout", browser.sign_out_device),
        ("/auth/browser/devices/signout-all", browser.sign_out_everywhere),
    ):
        # any other method: 405, never the catch-all proxy route
        _add_routes(router, ("POST", path, handler), ("*", path, _post_only))


async def _not_served(_request: web.Request) -> web.Response:
    raise NotFound("the login page is not served here (browser.login_page: false)")


async def _post_only(_request: web.Request) -> web.Response:
    raise MethodNotAllowed("use POST", headers={"Allow": "POST"})


def _add_routes(router: web.UrlDispatcher, *routes: tuple[str, str, Any]) -> None:
    """Register (method, path, handler) routes. `Expect: 100-continue` is left to the body
    reader (gateway.edge.bodies): aiohttp's default answers it before any check runs."""
    for method, path, handler in routes:
        router.add_route(method, path, handler, expect_handler=defer_expectation)
        if method == "GET":
            router.add_route("HEAD", path, handler, expect_handler=defer_expectation)


def create_admin_app(services: Services) -> web.Application:
    """The admin API and the console, on their own listener, over the public app's services
    (which the public app starts and stops)."""
    console = create_console_app(services) if services.settings.admin.console.enabled else None
    middlewares: list[Middleware] = [
        edge_middleware(realm=ADMIN_REALM),
        admin_auth_middleware(
            services.settings.admin.keys,
            exempt=None if console is None else _in_console(console),
        ),
    ]
    app = web.Application(middlewares=middlewares, client_max_size=OWN_BODY_LIMIT)
    _share(app, services)
    app[ADMIN_ACTIONS] = services.admin_actions
    _add_routes(
        app.router,
        ("POST", "/admin/revoke/token", admin_api.revoke_token),
        ("DELETE", "/admin/sessions/{sid}", admin_api.revoke_session),
        ("POST", "/admin/users/{sub}/revoke", admin_api.revoke_user),
        ("GET", "/admin/users/{sub}/sessions", admin_api.user_sessions),
        ("GET", "/admin/revocations", admin_api.revocations),
        ("GET", "/admin/audit", admin_api.audit),
    )
    if console is not None:
        app.router.add_get(CONSOLE_PATH, _to_console, name="console-root")
        app.add_subapp(CONSOLE_PATH, console)
    return app


CONSOLE_PATH: Final = "/admin/console"


def create_console_app(s: Services) -> web.Application:
    """The admin console (mounted at /admin/console/): its own sign-in and CSRF layer
    (gateway.admin.console.guard) instead of the API's bearer keys; every action through
    AdminActions, audited under the admin key's id as on the API."""
    pages = Pages()
    keys = AdminKeys(s.settings.admin.keys)
    signin = ConsoleSignIn(
        keys=keys,
        sessions=s.console_sessions,
        actions=s.admin_actions,
        settings=s.settings.admin.console,
        pages=pages,
    )
    status = StatusPanel(
        view=s.revocations,
        sync=s.revocation_sync,
        store=s.revocation_store,
        history=s.history,
        settings=s.settings.revocation,
    )
    views = ConsoleViews(
        actions=s.admin_actions, view=s.revocations, status=status, pages=pages, clock=s.clock
    )
    guard = console_middleware(s.console_sessions, keys.ids, pages, s.bodies)
    console = web.Application(middlewares=[guard], client_max_size=OWN_BODY_LIMIT)
    router = console.router
    sign_in = router.add_resource("/signin", name="console-signin")
    sign_in.add_route("GET", signin.form)
    sign_in.add_route("POST", signin.sign_in, expect_handler=defer_expectation)
    _add_routes(
        router,
        ("POST", "/signout", signin.sign_out),
        ("GET", "/", views.home),
        ("GET", "/users", views.user),
        ("GET", "/users/revoke", views.confirm_revoke_user),
        ("POST", "/users/revoke", views.revoke_user),
        ("GET", "/sessions/revoke", views.confirm_revoke_session),
        ("POST", "/sessions/revoke", views.revoke_session),
        ("GET", "/token", views.token_form),
        ("POST", "/token/inspect", views.inspect_token),
        ("POST", "/token/revoke", views.revoke_token),
        ("GET", "/revocations", views.revocations),
        ("GET", "/audit", views.audit),
    )
    router.add_static("/static/", STATIC_DIR, name="console-static")
    return console


def _in_console(console: web.Application) -> Callable[[web.Request], bool]:
    """Requests the console answers itself (the admin API's bearer check skips them)."""

    def exempt(request: web.Request) -> bool:
        match = request.match_info
        return console in match.apps or match.route.name == "console-root"

    return exempt


async def _to_console(_request: web.Request) -> web.Response:
    return see_other(CONSOLE_PATH + "/")


def _share(app: web.Application, s: Services) -> None:
    """The state both applications' handlers read."""
    app[SETTINGS] = s.settings
    app[CLOCK] = s.clock
    app[BODIES] = s.bodies
    app[METRICS] = s.metrics
    app[KEYRING] = s.keyring
    app[VERIFIER] = s.verifier
    app[REVOCATIONS] = s.revocations
    app[REVOCATION_SYNC] = s.revocation_sync
    app[REVOCATION_STORE] = s.revocation_store
    app[AUDIT] = s.audit
    app[REVOKER] = s.revoker
