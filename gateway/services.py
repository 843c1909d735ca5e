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
from dataclasses import dataclass, field, replace
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
from gateway.authserver.authorization_requests import CodeIssuer
from gateway.authserver.client_auth import ClientAuthenticator
from gateway.authserver.client_credentials_grant import ClientCredentialsGrant
from gateway.authserver.client_registry import ClientRegistry, build_registry
from gateway.authserver.code_grant import AuthorizationCodeGrant
from gateway.authserver.credentials import (
    BackendLoginChecker,
    CredentialChecker,
    UserFileChecker,
    load_user_file,
)
from gateway.authserver.federation.backchannel_logout import BackchannelLogout
from gateway.authserver.federation.code_flow import CodeFlowLogin, ProviderLogin
from gateway.authserver.federation.code_redemption import ClientAuthentication, CodeRedemption
from gateway.authserver.federation.exchange import FederatedLogin
from gateway.authserver.federation.grant import ExchangeGrant
from gateway.authserver.federation.identities import identity_links
from gateway.authserver.guessing import GuessThrottle, LocalCounts
from gateway.authserver.introspection import Introspection
from gateway.authserver.login import LoginService
from gateway.authserver.revoker import Revoker
from gateway.authserver.session_endpoints import SessionEndpoints
from gateway.authserver.token_endpoints import TokenEndpoints
from gateway.authserver.token_service import TokenService
from gateway.authserver.wellknown import WellKnown
from gateway.browser.authorize_endpoint import AuthorizeEndpoint
from gateway.browser.browser_endpoints import BrowserEndpoints
from gateway.browser.cookies import CookieFormat
from gateway.browser.cross_site import CrossSiteCheck
from gateway.browser.gate import CookieGate, cookie_routes
from gateway.browser.login_attempts import SignInCookies
from gateway.browser.login_kinds import PasswordLogin, SubjectTokenLogin
from gateway.browser.provider_login import ProviderSignIn
from gateway.browser.refresh import BrowserSessions
from gateway.browser.seal import AesGcmSeal, cookie_seal, load_seal_keys
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
from gateway.proxy.decision_endpoint import DecisionEndpoint
from gateway.proxy.endpoint import ProxyEndpoint
from gateway.proxy.forwarder import Forwarder
from gateway.proxy.headers import HeaderPolicy, ProxyTrust
from gateway.proxy.original_request import DECISION_PATH
from gateway.proxy.route_limits import RouteLimiter
from gateway.proxy.routing import RouteTable
from gateway.proxy.upstream import UpstreamPool
from gateway.proxy.upstream_group import UpstreamGroup, upstream_groups
from gateway.runtime.health import Health
from gateway.store import (
    AuditLog,
    AuthorizationCodeStore,
    ConsoleSessionStore,
    Durability,
    OneTimeIds,
    RateLimiter,
    RevocationStore,
    SessionStore,
    SharedBuckets,
    connect_redis,
)
from gateway.store.cookie_sessions import CookieSessionStore
from gateway.store.provider_sessions import ProviderSessionIndex
from gateway.tokens.bearer import Authenticator
from gateway.tokens.client_assertions import ClientAssertions
from gateway.tokens.issuer import TokenIssuer
from gateway.tokens.keys import KeyRing, load_keyring
from gateway.tokens.provider_access import ProviderAccessVerifier
from gateway.tokens.providers import Provider, build_providers
from gateway.tokens.revocation_sync import RevocationSync
from gateway.tokens.revocation_view import RevocationView
from gateway.tokens.route_issuers import RouteIssuers
from gateway.tokens.verifier import TokenVerifier
from gateway.typedefs import Clock

log = logging.getLogger("gateway")

T = TypeVar("T")
OPERATOR_POOL_SIZE = 4  # Redis connections of one operator CLI command
ASSERTION_MAX_LIFETIME = (
    3600  # seconds a private_key_jwt assertion may live (authlib signs for 1 h)
)
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
    provider_sessions: ProviderSessionIndex  # provider sid/sub → gateway sessions (logout)
    codes: AuthorizationCodeStore  # authorization codes, single use


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
    limiter: RouteLimiter  # the routes' rate-limit buckets: a reload keeps their counts
    guesses: LocalCounts  # wrong secrets counted by the process itself while Redis is away
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
    clients: ClientAuthenticator  # the client registry and client authentication
    codes: CodeIssuer | None  # authorization codes, when a client uses the code flow
    code_flow: CodeFlowLogin | None = None  # browser sign-in at providers with a login block
    backchannel_logout: BackchannelLogout | None = None  # their back-channel logouts
    providers: tuple[Provider, ...] = ()  # identity providers (token exchange, routes)


@dataclass(frozen=True)
class ProxyServices:
    """The request path: routes, the decision, the proxy endpoint."""

    routes: RouteTable
    admission: Admission  # the decision, shared by everything that must decide alike
    endpoint: ProxyEndpoint
    issuers: RouteIssuers | None = None  # routes that take providers' tokens
    decisions: DecisionEndpoint | None = None  # forward-auth decisions, when enabled
    upstreams: Mapping[str, UpstreamGroup] = field(default_factory=dict)  # named pools


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
    authorize: AuthorizeEndpoint | None = None  # GET /auth/authorize (code flow)


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
        limiter=RouteLimiter(
            settings.rate_limiting,
            metrics=metrics,
            clock=clock,
            shared=SharedBuckets(store.redis, prefix=settings.redis.prefix),
        ),
        guesses=LocalCounts(clock),
        introspection_windows={},
    )


def configure(
    settings: Settings, resources: Resources, *, environ: Mapping[str, str] | None = None
) -> Services:
    """Everything a configuration decides, over the process's resources: keys, routes,
    logins, providers, pages. Files the settings name (keys, users) are read here; nothing
    is connected. `environ` is where `*_env` settings are read (os.environ by default)."""
    r = resources
    t = settings.tokens
    # How long an unreadable revocation record without an expiry stays enforced: the longest
    # a token of this configuration lives (a reload that lengthens the lifetimes moves it).
    r.sync.horizon = t.refresh_ttl + t.access_ttl + t.leeway
    bodies = BodyReader.from_settings(settings.proxy)
    tokens = build_tokens(settings, r.view, clock=r.clock, environ=environ)
    auth = _provider_logins(settings, r, _auth(settings, r, tokens, bodies), bodies, environ)
    sign_in = _provider_sign_in(settings, r, auth, environ)
    gate = _cookie_gate(settings, r, tokens, auth, environ, sign_in)
    browser = authorize = None
    if gate is not None:
        browser = _browser_endpoints(settings, r, gate, tokens, auth, bodies, sign_in)
        if auth.codes is not None:
            authorize = AuthorizeEndpoint(
                gate=gate,
                registry=auth.clients.registry,
                codes=auth.codes,
                revoker=auth.revoker,
                issuer=settings.tokens.issuer,
                bodies=bodies,
            )
    proxy = _proxy(settings, r, tokens, bodies, gate, auth.providers)
    health = Health(
        store=r.store.revocations,
        sync=r.sync,
        view=r.view,
        settings=settings.revocation,
        providers=auth.providers,
        metrics=r.metrics,
        upstreams=proxy.upstreams,
    )
    return Services(
        settings=settings,
        resources=r,
        bodies=bodies,
        tokens=tokens,
        auth=auth,
        proxy=proxy,
        browser=browser,
        admin=_admin(settings, r, tokens, auth, bodies, proxy.upstreams),
        health=health,
        authorize=authorize,
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
        provider_sessions=ProviderSessionIndex(
            client, clock=clock, prefix=prefix, durability=durability
        ),
        codes=AuthorizationCodeStore(client, clock=clock, prefix=prefix, durability=durability),
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
    providers = _providers(settings, r)
    clients = _client_authenticator(settings, r)
    service = login = federation = endpoints = sessions = codes = None
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
        federation = _federation(settings, service, r, providers)
        code_grant = None
        if any(c.allows("authorization_code") for c in clients.registry):
            codes = CodeIssuer(r.store.codes, ttl=settings.auth.code_ttl)
            code_grant = AuthorizationCodeGrant(
                codes=r.store.codes,
                tokens=service,
                issuer=tokens.issuer,
                revoker=revoker,
                clock=r.clock,
            )
        endpoints = TokenEndpoints(
            tokens=service,
            login=login,
            revoker=revoker,
            authenticator=tokens.authenticator,
            exchange=None if federation is None else ExchangeGrant(federation, clock=r.clock),
            clients=clients,
            code_grant=code_grant,
            machine_grant=ClientCredentialsGrant(issuer=tokens.issuer, clock=r.clock),
            password_grant=settings.auth.password_grant,
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
        throttle=GuessThrottle(
            r.store.limiter,
            r.guesses,
            scope="introspect-fail-ip",
            limit=settings.introspection.failures_per_ip,
            what="client secrets",
        ),
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
        well_known=WellKnown(
            tokens.keyring,
            settings,
            exchange=federation is not None,
            grants=None if endpoints is None else endpoints.grants,
            authorization=codes is not None,
            client_methods=sorted(clients.registry.methods()),
            scopes=[s for c in clients.registry for s in c.scopes],
        ),
        clients=clients,
        codes=codes,
        providers=tuple(providers),
    )


def _client_authenticator(settings: Settings, r: Resources) -> ClientAuthenticator:
    """The registered clients (`clients`, `auth.clients_file`) and how they authenticate."""
    base = settings.tokens.issuer.rstrip("/")
    registry = (
        build_registry(settings, r.http, clock=r.clock)
        if settings.clients or settings.auth.clients_file is not None
        else ClientRegistry()
    )
    return ClientAuthenticator(
        registry,
        assertions=ClientAssertions(
            audiences=(f"{base}/auth/token", settings.tokens.issuer),
            leeway=settings.tokens.leeway,
            max_lifetime=ASSERTION_MAX_LIFETIME,
            clock=r.clock,
        ),
        one_time_ids=r.store.one_time_ids,
        limiter=r.store.limiter,
        failures=settings.auth.rate_limits.failures_per_username,
        leeway=settings.tokens.leeway,
        realm=settings.proxy.realm,
    )


def _providers(settings: Settings, r: Resources) -> list[Provider]:
    """The configured identity providers (keys, token verification), built once for the
    token exchange and the routes that take their access tokens."""
    f = settings.federation
    if not f.providers:
        return []
    providers = build_providers(
        f,
        r.http,
        leeway=settings.tokens.leeway,
        clock=r.clock,
        record_fetch=r.metrics.record_jwks_fetch,
    )
    return providers  # their key state is exported while they serve (runtime.lifetimes)


def _credential_checker(settings: Settings, http: SharedClientSession) -> CredentialChecker:
    """The user file or the login backend; otherwise nobody can log in (said at start)."""
    if settings.auth.users_file is not None:
        return UserFileChecker.from_file(settings.auth.users_file)
    if settings.auth.backend is not None:
        return BackendLoginChecker(settings.auth.backend, http)
    log.warning("no auth.users_file or auth.backend configured: every login will fail")
    return UserFileChecker({})


def _federation(
    settings: Settings, tokens: TokenService, r: Resources, providers: list[Provider]
) -> FederatedLogin | None:
    """Token exchange with the configured identity providers, when there are any."""
    if not providers:
        return None
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


def _provider_logins(
    settings: Settings,
    r: Resources,
    auth: AuthServices,
    bodies: BodyReader,
    environ: Mapping[str, str] | None,
) -> AuthServices:
    """Browser sign-in at the providers with a `login` block (SPEC §12), and their
    back-channel logouts; secrets and keys read now."""
    federation, tokens = auth.federation, auth.token_service
    if federation is None or tokens is None or not settings.browser.enabled:
        return auth
    logins = []
    for index, provider in enumerate(federation.providers):
        login = provider.settings.login
        if login is None:
            continue
        client = ClientAuthentication.from_settings(
            login, where=f"federation.providers[{index}].login", clock=r.clock, environ=environ
        )
        max_age = login.max_session_age or settings.browser.max_session_age
        logins.append(ProviderLogin(provider, login, client, max_age))
    if not logins:
        return auth
    f = settings.federation
    code_flow = CodeFlowLogin(
        federation=federation,
        logins=logins,
        redemption=CodeRedemption(r.http, timeout=f.fetch_timeout, max_size=f.max_document_size),
        tokens=tokens,
        index=r.store.provider_sessions,
        revoker=auth.revoker,
        clock=r.clock,
        leeway=settings.tokens.leeway,
    )
    backchannel = BackchannelLogout(
        federation=federation,
        logins=code_flow.logins,
        index=r.store.provider_sessions,
        revoker=auth.revoker,
        one_time=r.store.one_time_ids,
        audit=r.store.audit,
        bodies=bodies,
        clock=r.clock,
        leeway=settings.tokens.leeway,
        record=r.metrics.record_backchannel_logout,
    )
    return replace(auth, code_flow=code_flow, backchannel_logout=backchannel)


def _provider_sign_in(
    settings: Settings, r: Resources, auth: AuthServices, environ: Mapping[str, str] | None
) -> ProviderSignIn | None:
    """The browser's side of provider sign-in: its cookies, silent re-login, logout."""
    b = settings.browser
    if auth.code_flow is None or b.public_url is None:
        return None
    cookies = SignInCookies(
        b, AesGcmSeal(load_seal_keys(b, environ)), hint_lifetime=settings.tokens.refresh_ttl
    )
    return ProviderSignIn(
        code_flow=auth.code_flow,
        cookies=cookies,
        one_time=r.store.one_time_ids,
        public_url=b.public_url,
        clock=r.clock,
        record=r.metrics.record_provider_login,
    )


def _cookie_gate(
    settings: Settings,
    r: Resources,
    tokens: TokenServices,
    auth: AuthServices,
    environ: Mapping[str, str] | None,
    sign_in: ProviderSignIn | None = None,
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
        **({} if sign_in is None else {"login_locator": sign_in.login_location}),
    )


def _browser_endpoints(
    settings: Settings,
    r: Resources,
    gate: CookieGate,
    tokens: TokenServices,
    auth: AuthServices,
    bodies: BodyReader,
    sign_in: ProviderSignIn | None = None,
) -> BrowserEndpoints:
    """/auth/browser/*: password sign-in, provider tokens (SPEC §10) and sign-in at
    providers (SPEC §12) when configured."""
    assert auth.login is not None  # the gate exists only with a signing key
    exchange = auth.federation.exchange if auth.federation is not None else None
    b = settings.browser
    password = PasswordLogin(auth.login, enabled=b.password_login)
    return BrowserEndpoints(
        gate=gate,
        kinds=(SubjectTokenLogin(exchange), password),
        revoker=auth.revoker,
        verifier=tokens.verifier,
        bodies=bodies,
        metrics=r.metrics,
        clock=r.clock,
        login_page=b.login_page,
        providers=sign_in,
        password_login=b.password_login,
        strict_same_site=b.same_site == "strict",
    )


def _proxy(
    settings: Settings,
    r: Resources,
    tokens: TokenServices,
    bodies: BodyReader,
    gate: CookieGate | None,
    providers: tuple[Provider, ...] = (),
) -> ProxyServices:
    p = settings.proxy
    r.limiter.trust(ProxyTrust(p.trusted_proxies))  # `ip` keys: the client behind them
    upstreams = upstream_groups(settings.upstreams, p)  # reads their TLS files
    routes = RouteTable.from_settings(
        settings.routes,
        # the decision path is the gateway's, never a proxied route's (nor decided on)
        blocked=(DECISION_PATH, *(("/admin",) if settings.admin.block_public_path else ())),
        path_parameters=p.path_parameters,
        path_folding=p.path_folding,
        clock=r.clock,
        limiter=r.limiter,
        upstreams=upstreams,
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
    issuers = _route_issuers(settings, r, tokens, providers)
    admission = Admission(routes, tokens.authenticator, gate, issuers)
    decisions = None
    if settings.forward_auth.enabled:
        decisions = DecisionEndpoint(
            settings.forward_auth,
            admission=admission,
            routes=routes,
            headers=policy,
            metrics=r.metrics,
        )
    return ProxyServices(
        routes=routes,
        admission=admission,
        endpoint=ProxyEndpoint(admission, forwarder),
        issuers=issuers,
        decisions=decisions,
        upstreams=upstreams,
    )


def _route_issuers(
    settings: Settings, r: Resources, tokens: TokenServices, providers: tuple[Provider, ...]
) -> RouteIssuers | None:
    """Providers' access tokens on the routes that accept them (`routes[].accept`)."""
    accepted = {name for route in settings.routes for name in route.accept} - {"gateway"}
    if not accepted:
        return None
    verifiers = [
        ProviderAccessVerifier(
            p.settings,
            p.keys,
            leeway=settings.tokens.leeway,
            clock=r.clock,
            cache_size=settings.tokens.verified_cache_size,
        )
        for p in providers
        if p.name in accepted
    ]
    return RouteIssuers(
        tokens.authenticator,
        r.view,
        own_issuer=settings.tokens.issuer,
        providers=verifiers,
        record_rejection=r.metrics.record_provider_rejection,
    )


def _admin(
    settings: Settings,
    r: Resources,
    tokens: TokenServices,
    auth: AuthServices,
    bodies: BodyReader,
    upstreams: Mapping[str, UpstreamGroup],
) -> AdminServices:
    actions = AdminActions(auth.revoker, r.store.audit, tokens.verifier, r.clock)
    keys = AdminKeys(
        settings.admin.keys,
        throttle=GuessThrottle(
            r.store.limiter,
            r.guesses,
            scope="admin-key-fail-ip",
            limit=settings.admin.key_failures_per_ip,
            what="admin keys",
        ),
    )
    console = None
    if settings.admin.console.enabled:
        pages = Pages()
        status = StatusPanel(
            view=r.view,
            sync=r.sync,
            store=r.store.revocations,
            history=r.history,
            settings=settings.revocation,
            upstreams=upstreams,
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
                actions=actions,
                view=r.view,
                status=status,
                pages=pages,
                clock=r.clock,
                clients=auth.clients.registry,
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
