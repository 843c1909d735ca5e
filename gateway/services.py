"""Every long-lived component of one gateway process, built once from settings: the one place
that wires the planes together, plane by plane from the bottom up. `gateway serve`, the
operator CLI and the tests all build through here. Nothing is connected or started: the
lifetimes (gateway.runtime.lifetimes) do that when the public app starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypedDict, TypeVar, Unpack

from redis.asyncio import Redis

from gateway.admin.actions import AdminActions
from gateway.admin.api import AdminApi
from gateway.admin.apikeys import AdminKeys
from gateway.admin.console.console_app import Console
from gateway.admin.console.pages import Pages
from gateway.admin.console.signin import ConsoleSignIn
from gateway.admin.console.status import FAMILIES as CONSOLE_COUNTERS
from gateway.admin.console.status import StatusPanel
from gateway.admin.console.views import ConsoleViews
from gateway.authserver.credentials import (
    BackendLoginChecker,
    CredentialChecker,
    UserFileChecker,
    load_user_file,
)
from gateway.authserver.federation.exchange import FederatedLogin
from gateway.authserver.federation.grant import ExchangeGrant
from gateway.authserver.federation.providers import build_providers, identity_links
from gateway.authserver.introspection import Introspection
from gateway.authserver.login import LoginService
from gateway.authserver.revoker import Revoker
from gateway.authserver.session_endpoints import SessionEndpoints
from gateway.authserver.token_endpoints import TokenEndpoints
from gateway.authserver.token_service import TokenService
from gateway.authserver.wellknown import WellKnown
from gateway.browser.browser_endpoints import BrowserEndpoints
from gateway.browser.cookies import CookieFormat
from gateway.browser.cross_site import CrossSiteCheck
from gateway.browser.gate import CookieGate, cookie_routes
from gateway.browser.login_kinds import PasswordLogin, SubjectTokenLogin
from gateway.browser.refresh import BrowserSessions
from gateway.browser.seal import cookie_seal
from gateway.browser.upstream_cookies import CookieHeaderPolicy
from gateway.config import Settings
from gateway.config.redis_url import is_memory_url
from gateway.edge.bodies import BodyReader
from gateway.errors import ConfigError
from gateway.observability.counter_history import CounterHistory
from gateway.observability.metrics import Metrics
from gateway.observability.telemetry import Telemetry
from gateway.observability.tracecontext import TracePolicy
from gateway.outbound.http_client import SharedClientSession
from gateway.proxy.endpoint import ProxyEndpoint
from gateway.proxy.forwarder import Forwarder
from gateway.proxy.headers import HeaderPolicy
from gateway.proxy.routing import RouteTable
from gateway.proxy.upstream import UpstreamPool
from gateway.runtime.health import Health
from gateway.store import (
    AuditLog,
    ConsoleSessionStore,
    Durability,
    RateLimiter,
    RevocationStore,
    SessionStore,
    connect_redis,
)
from gateway.store.cookie_sessions import CookieSessionStore
from gateway.tokens.bearer import Authenticator
from gateway.tokens.issuer import TokenIssuer
from gateway.tokens.keys import KeyRing, load_keyring
from gateway.tokens.revocation_sync import RevocationSync
from gateway.tokens.revocation_view import RevocationView
from gateway.tokens.verifier import TokenVerifier
from gateway.typedefs import Clock

log = logging.getLogger("gateway")

T = TypeVar("T")
OPERATOR_POOL_SIZE = 4  # Redis connections of one operator CLI command


@dataclass(frozen=True)
class StoreServices:
    """Everything that talks to Redis (gateway.store)."""

    redis: Redis
    owned: bool  # made here from redis.url (closed on shutdown), not handed in
    durability: Durability
    sessions: SessionStore
    revocations: RevocationStore
    audit: AuditLog
    limiter: RateLimiter
    console_sessions: ConsoleSessionStore
    cookie_sessions: CookieSessionStore


@dataclass(frozen=True)
class TokenServices:
    """The gateway's own tokens: keys, verification, the revocation view, signing."""

    keyring: KeyRing
    verifier: TokenVerifier
    view: RevocationView
    sync: RevocationSync
    authenticator: Authenticator
    issuer: TokenIssuer | None  # None without a signing key: verification only


@dataclass(frozen=True)
class AuthServices:
    """The token service and its endpoints (/auth/*, /.well-known/*)."""

    revoker: Revoker
    token_service: TokenService | None  # None without a signing key
    login: LoginService | None
    federation: FederatedLogin | None  # None without a signing key or providers
    introspection: Introspection
    token_endpoints: TokenEndpoints | None
    session_endpoints: SessionEndpoints | None
    well_known: WellKnown


@dataclass(frozen=True)
class ProxyServices:
    """The request path: routes, the upstream client, the proxy endpoint."""

    routes: RouteTable
    upstream_pool: UpstreamPool
    endpoint: ProxyEndpoint


@dataclass(frozen=True)
class AdminServices:
    """The admin listener: operator actions, the API, the console."""

    actions: AdminActions
    api: AdminApi
    keys: AdminKeys
    console: Console | None


@dataclass(frozen=True)
class Services:
    """Every long-lived component of one gateway process, by plane."""

    settings: Settings
    clock: Clock
    metrics: Metrics
    telemetry: Telemetry
    history: CounterHistory  # the counters over the last minutes (admin console)
    http: SharedClientSession
    bodies: BodyReader
    store: StoreServices
    tokens: TokenServices
    auth: AuthServices
    proxy: ProxyServices
    browser: BrowserEndpoints | None  # browser sessions (cookie mode), when enabled
    admin: AdminServices
    health: Health


class Injected(TypedDict, total=False):
    """What tests (and embedders) may hand in instead of what settings would make."""

    redis: Redis  # instead of a client made from redis.url
    clock: Clock  # instead of time.time
    environ: Mapping[str, str]  # where `*_env` settings are read, instead of os.environ
    telemetry: Telemetry  # instead of one made from tracing.otel


def build_services(settings: Settings, **injected: Unpack[Injected]) -> Services:
    """Every component, connected to nothing yet."""
    redis = injected.get("redis")
    clock = injected.get("clock", time.time)
    environ = injected.get("environ")
    telemetry = injected.get("telemetry") or Telemetry.from_settings(settings.tracing)
    metrics = Metrics()
    http = SharedClientSession(settings.proxy)
    bodies = BodyReader.from_settings(settings.proxy)
    store = build_store(settings, redis=redis, clock=clock, telemetry=telemetry)
    tokens = build_tokens(settings, store, clock=clock, environ=environ)
    auth = _auth(settings, store, tokens, http, bodies, metrics, clock, telemetry)
    gate = _cookie_gate(settings, store, tokens, auth, metrics, clock, environ)
    proxy = _proxy(settings, tokens, http, bodies, gate, telemetry)
    browser = None
    if gate is not None:
        browser = _browser_endpoints(settings, gate, tokens, auth, bodies, metrics, clock)
    history = CounterHistory(lambda: metrics.counter_totals(CONSOLE_COUNTERS))
    admin = _admin(settings, store, tokens, auth, bodies, history, clock)
    metrics.watch_revocations(tokens.sync, tokens.view)
    health = Health(
        store=store.revocations,
        sync=tokens.sync,
        view=tokens.view,
        settings=settings.revocation,
        federation=auth.federation,
        metrics=metrics,
    )
    return Services(
        settings=settings,
        clock=clock,
        metrics=metrics,
        telemetry=telemetry,
        history=history,
        http=http,
        bodies=bodies,
        store=store,
        tokens=tokens,
        auth=auth,
        proxy=proxy,
        browser=browser,
        admin=admin,
        health=health,
    )


def build_store(
    settings: Settings,
    *,
    redis: Redis | None = None,
    clock: Clock = time.time,
    telemetry: Telemetry | None = None,
    max_connections: int | None = None,
) -> StoreServices:
    """The stores over one Redis client: `redis` when given, else one made from redis.url."""
    r = settings.redis
    if redis is None and is_memory_url(r.url):
        log.warning("redis.url is memory://: in-process store, single instance, development only")
    client = redis or connect_redis(
        r.url,
        connect_timeout=r.connect_timeout,
        socket_timeout=r.socket_timeout,
        max_connections=max_connections or r.max_connections,
    )
    traced = telemetry.traced if telemetry is not None else _untraced
    durability = Durability(r.min_replicas_ack, r.replica_ack_timeout)
    prefix = r.prefix
    return StoreServices(
        redis=client,
        owned=redis is None,
        durability=durability,
        sessions=traced(
            SessionStore(client, clock=clock, prefix=prefix, durability=durability), "sessions"
        ),
        revocations=RevocationStore(client, clock=clock, prefix=prefix, durability=durability),
        audit=AuditLog(client, clock=clock, prefix=prefix, durability=durability),
        limiter=traced(RateLimiter(client, clock=clock, prefix=prefix), "ratelimit"),
        console_sessions=ConsoleSessionStore(client, clock=clock, prefix=prefix),
        cookie_sessions=CookieSessionStore(
            client, clock=clock, prefix=prefix, durability=durability
        ),
    )


def build_tokens(
    settings: Settings,
    store: StoreServices,
    *,
    clock: Clock = time.time,
    environ: Mapping[str, str] | None = None,
    verified_cache_size: int | None = None,
) -> TokenServices:
    """Keys, the verifier, the revocation view and its sync, and the issuer when a signing
    key is configured."""
    keyring = load_keyring(settings.keys, environ)
    verifier = TokenVerifier.from_settings(
        keyring, settings.tokens, clock=clock, cache_size=verified_cache_size
    )
    view = RevocationView(clock=clock)
    sync = RevocationSync(
        store.revocations,
        view,
        clock=clock,
        check_interval=settings.revocation.check_interval,
        max_staleness=settings.revocation.max_staleness,
        fail_mode=settings.revocation.fail_mode,
    )
    return TokenServices(
        keyring=keyring,
        verifier=verifier,
        view=view,
        sync=sync,
        authenticator=Authenticator(verifier, view),
        issuer=build_issuer(settings, keyring, clock=clock),
    )


def build_issuer(
    settings: Settings, keyring: KeyRing, *, clock: Clock = time.time
) -> TokenIssuer | None:
    """The signer of the gateway's access tokens; None without an active signing key."""
    if keyring.active is None:
        return None
    t = settings.tokens
    return TokenIssuer(
        keyring, issuer=t.issuer, audience=t.audience, access_ttl=t.access_ttl, clock=clock
    )


def build_revoker(
    settings: Settings,
    store: StoreServices,
    tokens: TokenServices,
    *,
    clock: Clock = time.time,
    telemetry: Telemetry | None = None,
) -> Revoker:
    traced = telemetry.traced if telemetry is not None else _untraced
    return Revoker(
        sessions=store.sessions,
        revocations=traced(store.revocations, "revocations"),
        view=tokens.view,
        settings=settings.tokens,
        clock=clock,
    )


@asynccontextmanager
async def operator_actions(settings: Settings) -> AsyncIterator[AdminActions]:
    """The operator actions on the configured (shared) Redis, for one CLI command: the same
    stores, keys and revoker a gateway builds, over a small connection pool."""
    if is_memory_url(settings.redis.url):
        raise ConfigError(
            "redis.url is memory://: the operator CLI needs the Redis the gateways share "
            "(set redis.url or GATEWAY_REDIS__URL)"
        )
    store = build_store(settings, max_connections=OPERATOR_POOL_SIZE)
    try:
        tokens = build_tokens(settings, store, verified_cache_size=0)
        revoker = build_revoker(settings, store, tokens)
        yield AdminActions(revoker, store.audit, tokens.verifier, time.time)
    finally:
        await store.redis.aclose()


def _untraced(component: T, _name: str) -> T:
    return component


def _auth(
    settings: Settings,
    store: StoreServices,
    tokens: TokenServices,
    http: SharedClientSession,
    bodies: BodyReader,
    metrics: Metrics,
    clock: Clock,
    telemetry: Telemetry,
) -> AuthServices:
    revoker = build_revoker(settings, store, tokens, clock=clock, telemetry=telemetry)
    service = login = federation = endpoints = sessions = None
    if tokens.issuer is not None:
        service = TokenService(
            revoker=revoker, view=tokens.view, issuer=tokens.issuer, settings=settings.tokens
        )
        login = LoginService(
            _credential_checker(settings, http),
            service,
            store.limiter,
            settings.auth.rate_limits,
        )
        federation = _federation(settings, service, store, http, metrics, clock)
        endpoints = TokenEndpoints(
            tokens=service,
            login=login,
            revoker=revoker,
            authenticator=tokens.authenticator,
            exchange=None if federation is None else ExchangeGrant(federation, clock=clock),
            bodies=bodies,
            metrics=metrics,
            clock=clock,
        )
        sessions = SessionEndpoints(revoker=revoker, authenticator=tokens.authenticator)
    t = settings.tokens
    introspection = Introspection(
        settings.introspection.clients,
        authenticator=tokens.authenticator,
        sessions=revoker.sessions,
        view=tokens.view,
        issuer=t.issuer,
        audience=t.audience,
        rate_limit=settings.introspection.rate_limit,
        realm=settings.proxy.realm,
        bodies=bodies,
        clock=clock,
    )
    return AuthServices(
        revoker=revoker,
        token_service=service,
        login=login,
        federation=federation,
        introspection=introspection,
        token_endpoints=endpoints,
        session_endpoints=sessions,
        well_known=WellKnown(tokens.keyring, settings, exchange=federation is not None),
    )


def _credential_checker(settings: Settings, http: SharedClientSession) -> CredentialChecker:
    """The user file or the login backend; otherwise nobody can log in (said at start)."""
    if settings.auth.users_file is not None:
        return UserFileChecker.from_file(settings.auth.users_file)
    if settings.auth.backend is not None:
        return BackendLoginChecker(settings.auth.backend, http)
    log.warning("no auth.users_file or auth.backend configured: every login will fail")
    return UserFileChecker({})


def _federation(
    settings: Settings,
    tokens: TokenService,
    store: StoreServices,
    http: SharedClientSession,
    metrics: Metrics,
    clock: Clock,
) -> FederatedLogin | None:
    """Token exchange with the configured identity providers, when there are any."""
    f = settings.federation
    if not f.providers:
        return None
    providers = build_providers(
        f, http, leeway=settings.tokens.leeway, clock=clock, record_fetch=metrics.record_jwks_fetch
    )
    users = settings.auth.users_file
    federation = FederatedLogin(
        providers,
        tokens,
        own_issuer=settings.tokens.issuer,
        limiter=store.limiter,
        per_ip=settings.auth.rate_limits.per_ip,
        links=identity_links(load_user_file(users)) if users is not None else {},
        record=metrics.record_federated_login,
    )
    metrics.watch_provider_keys(lambda: [(p.name, p.keys.state()) for p in providers])
    return federation


def _cookie_gate(
    settings: Settings,
    store: StoreServices,
    tokens: TokenServices,
    auth: AuthServices,
    metrics: Metrics,
    clock: Clock,
    environ: Mapping[str, str] | None,
) -> CookieGate | None:
    """The proxy's cookie branch (browser sessions), when browser mode is on."""
    b = settings.browser
    if not b.enabled or tokens.issuer is None:  # settings refuse browser mode without a key
        return None
    if not b.secure:
        log.warning("browser.secure is false: cookies without Secure, for plain-http demos only")
    sessions = BrowserSessions(
        store=store.cookie_sessions,
        issuer=tokens.issuer,
        revoker=auth.revoker,
        view=tokens.view,
        metrics=metrics,
        rotation_grace=b.rotation_grace,
    )
    return CookieGate(
        b,
        routes=cookie_routes(settings.routes, enabled=True),
        seal=cookie_seal(b, environ),
        cookie_format=CookieFormat(b),
        authenticator=tokens.authenticator,
        sessions=sessions,
        cross_site=CrossSiteCheck(b.allowed_origins, metrics),
        metrics=metrics,
        clock=clock,
    )


def _browser_endpoints(
    settings: Settings,
    gate: CookieGate,
    tokens: TokenServices,
    auth: AuthServices,
    bodies: BodyReader,
    metrics: Metrics,
    clock: Clock,
) -> BrowserEndpoints:
    """/auth/browser/*: password sign-in, and provider tokens (SPEC §10) when configured."""
    assert auth.login is not None  # the gate exists only with a signing key
    exchange = auth.federation.exchange if auth.federation is not None else None
    return BrowserEndpoints(
        gate=gate,
        kinds=(SubjectTokenLogin(exchange), PasswordLogin(auth.login)),
        revoker=auth.revoker,
        verifier=tokens.verifier,
        bodies=bodies,
        metrics=metrics,
        clock=clock,
        login_page=settings.browser.login_page,
    )


def _proxy(
    settings: Settings,
    tokens: TokenServices,
    http: SharedClientSession,
    bodies: BodyReader,
    gate: CookieGate | None,
    telemetry: Telemetry,
) -> ProxyServices:
    p = settings.proxy
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
    trace = None
    if settings.tracing.mode != "passthrough":
        current_span = telemetry.current_span if telemetry.enabled else None
        trace = TracePolicy(settings.tracing.mode, current_span=current_span)
    policy = (
        HeaderPolicy(p, trace=trace)
        if gate is None
        else CookieHeaderPolicy(p, settings.browser, trace=trace)
    )
    forwarder = Forwarder(pool, http, policy, bodies, p)
    endpoint = ProxyEndpoint(routes, tokens.authenticator, forwarder, gate)
    return ProxyServices(routes=routes, upstream_pool=pool, endpoint=endpoint)


def _admin(
    settings: Settings,
    store: StoreServices,
    tokens: TokenServices,
    auth: AuthServices,
    bodies: BodyReader,
    history: CounterHistory,
    clock: Clock,
) -> AdminServices:
    actions = AdminActions(auth.revoker, store.audit, tokens.verifier, clock)
    keys = AdminKeys(settings.admin.keys)
    console = None
    if settings.admin.console.enabled:
        pages = Pages()
        status = StatusPanel(
            view=tokens.view,
            sync=tokens.sync,
            store=store.revocations,
            history=history,
            settings=settings.revocation,
        )
        console = Console(
            signin=ConsoleSignIn(
                keys=keys,
                sessions=store.console_sessions,
                actions=actions,
                settings=settings.admin.console,
                pages=pages,
            ),
            views=ConsoleViews(
                actions=actions, view=tokens.view, status=status, pages=pages, clock=clock
            ),
            sessions=store.console_sessions,
            key_ids=keys.ids,
            pages=pages,
            bodies=bodies,
        )
    return AdminServices(
        actions=actions,
        api=AdminApi(actions=actions, view=tokens.view, bodies=bodies),
        keys=keys,
        console=console,
    )
