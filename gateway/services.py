"""Every long-lived component of one gateway process, built once from settings: the one place
that wires the planes together, plane by plane from the bottom up. `gateway serve`, the
operator CLI and the tests all build through here. Nothing is connected or started: the
lifetimes (gateway.runtime.lifetimes) do that when the gateway starts: those of the Resources
once per process, those of a configuration with its applications (a reload builds another
configuration over the same Resources).
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
from gateway.authserver.federation.identities import identity_links
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
from gateway.config.redis_url import MEMORY_SCHEME, is_memory_url
from gateway.edge.bodies import BodyReader
from gateway.errors import ConfigError
from gateway.observability.counter_history import CounterHistory
from gateway.observability.metrics import Metrics
from gateway.observability.telemetry import Telemetry
from gateway.observability.tracecontext import TracePolicy
from gateway.outbound.http_client import SharedClientSession
from gateway.proxy.admission import Admission
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
    OneTimeIds,
    RateLimiter,
    RevocationStore,
    SessionStore,
    connect_redis,
)
from gateway.store.cookie_sessions import CookieSessionStore
from gateway.tokens.bearer import Authenticator
from gateway.tokens.issuer import TokenIssuer
from gateway.tokens.keys import KeyRing, load_keyring
from gateway.tokens.providers import build_providers
from gateway.tokens.revocation_sync import RevocationSync
from gateway.tokens.revocation_view import RevocationView
from gateway.tokens.verifier import TokenVerifier
from gateway.typedefs import Clock

log = logging.getLogger("gateway")

T = TypeVar("T")
OPERATOR_POOL_SIZE = 4  # Redis connections of one operator CLI command
MEMORY_URL = f"{MEMORY_SCHEME}://"  # an in-process store: what a configuration check runs on


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
    one_time_ids: OneTimeIds  # replay guards: a token's jti used once within its lifetime


@dataclass(frozen=True)
class Resources:
    """What one gateway process holds for its whole life, whatever its configuration says
    later: connections (Redis, the upstream pool, the shared HTTP client), the revocation
    view and its sync, metrics and traces. A reloaded configuration is built over the same
    Resources; settings that change them (listeners, workers, Redis) need a restart."""

    clock: Clock
    metrics: Metrics
    telemetry: Telemetry
    history: CounterHistory  # the counters over the last minutes (admin console)
    http: SharedClientSession
    store: StoreServices
    view: RevocationView
    sync: RevocationSync
    upstream_pool: UpstreamPool
    # Counts that must outlive a reloaded configuration: introspections per client in the
    # current window (introspection.rate_limit, counted in this process)
    introspection_windows: dict[str, tuple[int, int]]


@dataclass(frozen=True)
class TokenServices:
    """The gateway's own tokens: keys, verification, bearer credentials, signing."""

    keyring: KeyRing
    verifier: TokenVerifier
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
    """The request path: routes, the decision, the proxy endpoint."""

    routes: RouteTable
    admission: Admission  # the decision, shared by everything that must decide alike
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
    """Every component of one gateway process for one configuration, by plane, over the
    process's Resources."""

    settings: Settings
    resources: Resources
    bodies: BodyReader
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
    resources = build_resources(settings, **injected)
    return configure(settings, resources, environ=injected.get("environ"))


def check_configuration(settings: Settings, *, environ: Mapping[str, str] | None = None) -> None:
    """Everything `configure` checks, over throwaway resources that connect to nothing: the
    files the settings name (keys, users, seal keys, …) are read and judged. ConfigError
    says what is wrong, in the words `gateway check-config` prints and a reload refuses with.
    """
    r = settings.redis
    throwaway = connect_redis(
        MEMORY_URL,
        connect_timeout=r.connect_timeout,
        socket_timeout=r.socket_timeout,
        max_connections=1,
    )
    resources = build_resources(settings, redis=throwaway, telemetry=Telemetry())
    configure(settings, resources, environ=environ)


def build_resources(settings: Settings, **injected: Unpack[Injected]) -> Resources:
    """The process's long-lived resources, connected to nothing yet."""
    clock = injected.get("clock", time.time)
    telemetry = injected.get("telemetry") or Telemetry.from_settings(settings.tracing)
    metrics = Metrics()
    store = build_store(settings, redis=injected.get("redis"), clock=clock, telemetry=telemetry)
    view = RevocationView(clock=clock)
    sync = RevocationSync(
        store.revocations,
        view,
        clock=clock,
        check_interval=settings.revocation.check_interval,
        max_staleness=settings.revocation.max_staleness,
        fail_mode=settings.revocation.fail_mode,
    )
    metrics.watch_revocations(sync, view)
    p = settings.proxy
    return Resources(
        clock=clock,
        metrics=metrics,
        telemetry=telemetry,
        history=CounterHistory(lambda: metrics.counter_totals(CONSOLE_COUNTERS)),
        http=SharedClientSession(p),
        store=store,
        view=view,
        sync=sync,
        upstream_pool=UpstreamPool(
            connect_timeout=p.connect_timeout,
            read_timeout=p.read_timeout,
            keepalive_timeout=min(p.keepalive_timeout, 30),
        ),
        introspection_windows={},
    )


def configure(
    settings: Settings, resources: Resources, *, environ: Mapping[str, str] | None = None
) -> Services:
    """Everything a configuration decides, over the process's resources: keys, routes,
    logins, providers, pages. Files the settings name (keys, users) are read here; nothing
    is connected. `environ` is where `*_env` settings are read (os.environ by default)."""
    r = resources
    bodies = BodyReader.from_settings(settings.proxy)
    tokens = build_tokens(settings, r.view, clock=r.clock, environ=environ)
    auth = _auth(settings, r, tokens, bodies)
    gate = _cookie_gate(settings, r, tokens, auth, environ)
    browser = None
    if gate is not None:
        browser = _browser_endpoints(settings, r, gate, tokens, auth, bodies)
    health = Health(
        store=r.store.revocations,
        sync=r.sync,
        view=r.view,
        settings=settings.revocation,
        federation=auth.federation,
        metrics=r.metrics,
    )
    return Services(
        settings=settings,
        resources=r,
        bodies=bodies,
        tokens=tokens,
        auth=auth,
        proxy=_proxy(settings, r, tokens, bodies, gate),
        browser=browser,
        admin=_admin(settings, r, tokens, auth, bodies),
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
        one_time_ids=OneTimeIds(client, clock=clock, prefix=prefix, durability=durability),
    )


def build_tokens(
    settings: Settings,
    revocations: RevocationView,
    *,
    clock: Clock = time.time,
    environ: Mapping[str, str] | None = None,
    verified_cache_size: int | None = None,
) -> TokenServices:
    """Keys, the verifier, bearer credentials (checked against `revocations`), and the
    issuer when a signing key is configured."""
    keyring = load_keyring(settings.keys, environ)
    verifier = TokenVerifier.from_settings(
        keyring, settings.tokens, clock=clock, cache_size=verified_cache_size
    )
    return TokenServices(
        keyring=keyring,
        verifier=verifier,
        authenticator=Authenticator(verifier, revocations),
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
    view: RevocationView,
    *,
    clock: Clock = time.time,
    telemetry: Telemetry | None = None,
) -> Revoker:
    traced = telemetry.traced if telemetry is not None else _untraced
    return Revoker(
        sessions=store.sessions,
        revocations=traced(store.revocations, "revocations"),
        view=view,
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
        view = RevocationView(clock=time.time)  # a command has no view to keep current
        tokens = build_tokens(settings, view, verified_cache_size=0)
        revoker = build_revoker(settings, store, view)
        yield AdminActions(revoker, store.audit, tokens.verifier, time.time)
    finally:
        await store.redis.aclose()


def _untraced(component: T, _name: str) -> T:
    return component


def _auth(
    settings: Settings, r: Resources, tokens: TokenServices, bodies: BodyReader
) -> AuthServices:
    revoker = build_revoker(settings, r.store, r.view, clock=r.clock, telemetry=r.telemetry)
    service = login = federation = endpoints = sessions = None
    if tokens.issuer is not None:
        service = TokenService(
            revoker=revoker, view=r.view, issuer=tokens.issuer, settings=settings.tokens
        )
        login = LoginService(
            _credential_checker(settings, r.http),
            service,
            r.store.limiter,
            settings.auth.rate_limits,
        )
        federation = _federation(settings, service, r)
        endpoints = TokenEndpoints(
            tokens=service,
            login=login,
            revoker=revoker,
            authenticator=tokens.authenticator,
            exchange=None if federation is None else ExchangeGrant(federation, clock=r.clock),
            bodies=bodies,
            metrics=r.metrics,
            clock=r.clock,
        )
        sessions = SessionEndpoints(revoker=revoker, authenticator=tokens.authenticator)
    t = settings.tokens
    introspection = Introspection(
        settings.introspection.clients,
        authenticator=tokens.authenticator,
        sessions=revoker.sessions,
        view=r.view,
        issuer=t.issuer,
        audience=t.audience,
        rate_limit=settings.introspection.rate_limit,
        realm=settings.proxy.realm,
        bodies=bodies,
        clock=r.clock,
        windows=r.introspection_windows,
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


def _federation(settings: Settings, tokens: TokenService, r: Resources) -> FederatedLogin | None:
    """Token exchange with the configured identity providers, when there are any."""
    f = settings.federation
    if not f.providers:
        return None
    providers = build_providers(
        f,
        r.http,
        leeway=settings.tokens.leeway,
        clock=r.clock,
        record_fetch=r.metrics.record_jwks_fetch,
    )
    users = settings.auth.users_file
    federation = FederatedLogin(
        providers,
        tokens,
        own_issuer=settings.tokens.issuer,
        limiter=r.store.limiter,
        per_ip=settings.auth.rate_limits.per_ip,
        links=identity_links(load_user_file(users)) if users is not None else {},
        record=r.metrics.record_federated_login,
    )
    return federation  # its key state is exported while it serves (runtime.lifetimes)


def _cookie_gate(
    settings: Settings,
    r: Resources,
    tokens: TokenServices,
    auth: AuthServices,
    environ: Mapping[str, str] | None,
) -> CookieGate | None:
    """The proxy's cookie branch (browser sessions), when browser mode is on."""
    b = settings.browser
    if not b.enabled or tokens.issuer is None:  # settings refuse browser mode without a key
        return None
    if not b.secure:
        log.warning("browser.secure is false: cookies without Secure, for plain-http demos only")
    sessions = BrowserSessions(
        store=r.store.cookie_sessions,
        issuer=tokens.issuer,
        revoker=auth.revoker,
        view=r.view,
        metrics=r.metrics,
        rotation_grace=b.rotation_grace,
    )
    return CookieGate(
        b,
        routes=cookie_routes(settings.routes, enabled=True),
        seal=cookie_seal(b, environ),
        cookie_format=CookieFormat(b),
        authenticator=tokens.authenticator,
        sessions=sessions,
        cross_site=CrossSiteCheck(b.allowed_origins, r.metrics),
        metrics=r.metrics,
        clock=r.clock,
    )


def _browser_endpoints(
    settings: Settings,
    r: Resources,
    gate: CookieGate,
    tokens: TokenServices,
    auth: AuthServices,
    bodies: BodyReader,
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
        metrics=r.metrics,
        clock=r.clock,
        login_page=settings.browser.login_page,
    )


def _proxy(
    settings: Settings,
    r: Resources,
    tokens: TokenServices,
    bodies: BodyReader,
    gate: CookieGate | None,
) -> ProxyServices:
    p = settings.proxy
    routes = RouteTable.from_settings(
        settings.routes,
        blocked=("/admin",) if settings.admin.block_public_path else (),
        path_parameters=p.path_parameters,
    )
    trace = None
    if settings.tracing.mode != "passthrough":
        telemetry = r.telemetry
        current_span = telemetry.current_span if telemetry.enabled else None
        trace = TracePolicy(settings.tracing.mode, current_span=current_span)
    policy = (
        HeaderPolicy(p, trace=trace)
        if gate is None
        else CookieHeaderPolicy(p, settings.browser, trace=trace)
    )
    forwarder = Forwarder(r.upstream_pool, r.http, policy, bodies, p)
    admission = Admission(routes, tokens.authenticator, gate)
    return ProxyServices(
        routes=routes, admission=admission, endpoint=ProxyEndpoint(admission, forwarder)
    )


def _admin(
    settings: Settings,
    r: Resources,
    tokens: TokenServices,
    auth: AuthServices,
    bodies: BodyReader,
) -> AdminServices:
    actions = AdminActions(auth.revoker, r.store.audit, tokens.verifier, r.clock)
    keys = AdminKeys(settings.admin.keys)
    console = None
    if settings.admin.console.enabled:
        pages = Pages()
        status = StatusPanel(
            view=r.view,
            sync=r.sync,
            store=r.store.revocations,
            history=r.history,
            settings=settings.revocation,
        )
        console = Console(
            signin=ConsoleSignIn(
                keys=keys,
                sessions=r.store.console_sessions,
                actions=actions,
                settings=settings.admin.console,
                pages=pages,
            ),
            views=ConsoleViews(
                actions=actions, view=r.view, status=status, pages=pages, clock=r.clock
            ),
            sessions=r.store.console_sessions,
            key_ids=keys.ids,
            pages=pages,
            bodies=bodies,
        )
    return AdminServices(
        actions=actions,
        api=AdminApi(actions=actions, view=r.view, bodies=bodies),
        keys=keys,
        console=console,
    )
