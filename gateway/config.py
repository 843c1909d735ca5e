"""Typed settings: `config.yaml`, then `GATEWAY_*` environment variables (`__` nests keys).

Build them once with `load_settings(path)` at the edge (CLI) and pass them down; tests
build `Settings(...)` directly.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from gateway.errors import ConfigError
from gateway.store.client import check_redis_url, is_memory_url
from gateway.typedefs import FailMode, PathParameters, RoutePolicy

ENV_PREFIX: Final = "GATEWAY_"
ASYMMETRIC_ALGORITHMS: Final = ("EdDSA", "ES256", "RS256")
SUPPORTED_ALGORITHMS: Final = (*ASYMMETRIC_ALGORITHMS, "HS256")
HEADER_NAME_RE: Final = re.compile(r"^[A-Za-z0-9-]+$")
COOKIE_NAME_RE: Final = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$"  # an RFC 6265 token
ORIGIN_RE: Final = re.compile(
    r"^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$"  # no path, no userinfo
)

PositiveSeconds = Annotated[float, Field(gt=0)]
NonNegativeSeconds = Annotated[float, Field(ge=0)]
Port = Annotated[int, Field(ge=0, le=65535)]
Algorithm = Literal["EdDSA", "ES256", "RS256", "HS256"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ListenSettings(_Section):
    host: str = "127.0.0.1"
    """address of the public listener (0.0.0.0 in containers)"""
    port: Port = 8080
    """port of the public listener: proxied routes, /auth/*, /.well-known/*, health, metrics"""
    workers: int = Field(
        default=0,
        ge=0,
        description="processes sharing the port (SO_REUSEPORT); 0 = one per usable CPU "
        "(1 with memory://); `gateway serve --workers N` overrides",
    )


class AdminKeySettings(_Section):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    """name of the key, recorded in the audit trail"""
    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256:<hex> of the key")


class ConsoleSettings(_Section):
    enabled: bool = True
    """serve the web console at /admin/console/ on the admin listener"""
    session_ttl: PositiveSeconds = Field(
        default=900, le=86400, description="seconds a console sign-in lasts (never extended)"
    )
    cookie_secure: bool = Field(
        default=False,
        description="mark the console cookie Secure on plain HTTP too (TLS terminated in "
        "front of the admin listener); over HTTPS it always is",
    )


class AdminSettings(_Section):
    host: str = "127.0.0.1"
    """address of the admin listener; keep it off public networks"""
    port: Port = 8081
    """port of the admin listener (/admin/*)"""
    keys: list[AdminKeySettings] = Field(default_factory=list)
    """admin API keys, as hashes (`gateway admin-key create`); empty = every admin call refused"""
    block_public_path: bool = Field(
        default=True, description="answer 404 for /admin/* on the public listener"
    )
    console: ConsoleSettings = ConsoleSettings()
    """the web console: sign-in with an admin key, sessions, revocations, audit trail"""


class RedisSettings(_Section):
    url: str = "memory://"
    """memory://, redis://, rediss://, unix://, redis+sentinel://, redis+cluster://"""
    connect_timeout: PositiveSeconds = 1.0
    """seconds to open a connection"""
    socket_timeout: PositiveSeconds = 1.0
    """seconds any Redis reply may take"""
    max_connections: int = Field(default=64, ge=1)
    """connection pool size per worker"""
    prefix: str = Field(default="gw", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    """first segment of every key and of the pub/sub channel"""
    min_replicas_ack: int = Field(
        default=0,
        ge=0,
        description="replicas that must hold each session, refresh, revocation and audit write "
        "(WAIT) before it is answered; 0 = the primary's answer is enough",
    )
    replica_ack_timeout: PositiveSeconds = Field(
        default=0.5,
        description="seconds to wait for those replicas, else 503 (safe to retry); "
        "below socket_timeout",
    )

    @field_validator("url")
    @classmethod
    def _url_is_supported(cls, value: str) -> str:
        check_redis_url(value)
        return value

    @model_validator(mode="after")
    def _acknowledgement_fits(self) -> RedisSettings:
        if self.min_replicas_ack and is_memory_url(self.url):
            raise ValueError("min_replicas_ack needs a Redis with replicas, not memory://")
        if self.min_replicas_ack and self.replica_ack_timeout >= self.socket_timeout:
            raise ValueError("replica_ack_timeout must be below socket_timeout")
        return self


class KeySettings(_Section):
    """One signing/verification key; material comes from a file or an environment variable."""

    kid: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    """key id, sent in the token header and published in the JWKS"""
    alg: Algorithm = "EdDSA"
    """EdDSA, ES256, RS256 or HS256; the key verifies tokens of this algorithm only"""
    private_key_file: Path | None = None
    """PEM private key (can sign and verify)"""
    private_key_env: str | None = None
    """environment variable holding a PEM private key"""
    public_key_file: Path | None = None
    """PEM public key (verifies only)"""
    public_key_env: str | None = None
    """environment variable holding a PEM public key"""
    secret_file: Path | None = None
    """HS256 secret file (at least 32 bytes); never published"""
    secret_env: str | None = None
    """environment variable holding an HS256 secret"""

    @model_validator(mode="after")
    def _one_source_of_material(self) -> KeySettings:
        sources = [
            name
            for name in (
                "private_key_file",
                "private_key_env",
                "public_key_file",
                "public_key_env",
                "secret_file",
                "secret_env",
            )
            if getattr(self, name) is not None
        ]
        if len(sources) != 1:
            raise ValueError(
                "exactly one of private_key_file, private_key_env, public_key_file, "
                f"public_key_env, secret_file, secret_env is required (got {sources or 'none'})"
            )
        is_secret = sources[0].startswith("secret")
        if (self.alg == "HS256") != is_secret:
            raise ValueError(
                "HS256 keys take secret_file/secret_env; asymmetric keys take PEM keys"
            )
        return self


def _default_algorithms() -> list[Algorithm]:
    return ["EdDSA", "ES256", "RS256"]


class KeysSettings(_Section):
    active: str | None = Field(default=None, description="kid of the signing key")
    algorithms: list[Algorithm] = Field(
        default_factory=_default_algorithms,
        description="verification allowlist; never 'none'",
    )
    items: list[KeySettings] = Field(default_factory=list)
    """every key that verifies; `active` also signs"""

    @model_validator(mode="after")
    def _consistent(self) -> KeysSettings:
        kids = [k.kid for k in self.items]
        if len(set(kids)) != len(kids):
            raise ValueError("duplicate kid in keys.items")
        if self.items and self.active is None:
            raise ValueError("keys.active must name the signing key")
        if self.active is not None and self.active not in kids:
            raise ValueError(f"keys.active {self.active!r} is not in keys.items")
        return self


class TokenSettings(_Section):
    issuer: str = "http://127.0.0.1:8080"
    """`iss` of issued tokens, required on verified ones"""
    audience: str = "gateway"
    """`aud` of issued tokens, required on verified ones"""
    access_ttl: PositiveSeconds = 900
    """access token lifetime, seconds"""
    refresh_ttl: PositiveSeconds = 30 * 86400
    """absolute session lifetime, seconds; rotation never extends it"""
    refresh_reuse_grace: NonNegativeSeconds = Field(
        default=10,
        description="seconds a spent refresh token still yields its successor once handed out "
        "(before: always); 0 = never",
    )
    leeway: NonNegativeSeconds = 30
    """clock skew allowed on exp, nbf and iat, seconds"""
    verified_cache_size: int = Field(default=100_000, ge=0)
    """verified tokens cached by their whole string (never past exp); 0 = off"""


class RateLimit(_Section):
    limit: int = Field(ge=1)
    """attempts allowed per window"""
    window: int = Field(ge=1, description="window length, seconds")


class LoginRateLimits(_Section):
    per_ip: RateLimit = RateLimit(limit=60, window=60)
    """login attempts per client IP"""
    failures_per_username: RateLimit = RateLimit(limit=10, window=900)
    """failed logins per username"""


class BackendLoginSettings(_Section):
    """Delegate credential checks to the legacy backend's own login endpoint (2xx = valid)."""

    url: str
    """the backend's login endpoint (POST, JSON body)"""
    username_field: str = "username"
    """JSON field the username is sent in"""
    password_field: str = "password"
    """JSON field the password is sent in"""
    subject_field: str | None = Field(default=None, description="dotted JSON path; else username")
    roles_field: str | None = None
    """dotted JSON path of a list of roles in the backend's answer"""
    timeout: PositiveSeconds = 5
    """seconds the backend may take"""


class AuthSettings(_Section):
    users_file: Path | None = None
    """YAML/JSON user file (`gateway users add`); argon2id or bcrypt hashes"""
    backend: BackendLoginSettings | None = None
    """delegate logins to the legacy backend instead of a user file"""
    rate_limits: LoginRateLimits = LoginRateLimits()
    """login rate limits, counted in Redis"""

    @model_validator(mode="after")
    def _one_checker(self) -> AuthSettings:
        if self.users_file is not None and self.backend is not None:
            raise ValueError("configure auth.users_file or auth.backend, not both")
        return self


class RevocationSettings(_Section):
    check_interval: PositiveSeconds = Field(
        default=1.0, description="seconds between store version checks (catch lost messages)"
    )
    max_staleness: PositiveSeconds = Field(
        default=30.0, description="how stale the view may become while Redis is unreachable"
    )
    fail_mode: FailMode = Field(
        default="closed", description="past max_staleness: closed = 503 on protected routes"
    )


class RouteSettings(_Section):
    prefix: str
    """path prefix, matched on whole segments of the normalized path"""
    upstream: str
    """http(s):// base URL requests are forwarded to"""
    policy: RoutePolicy = "required"
    """public, optional (identity when a valid token is sent) or required"""
    roles: list[str] = Field(default_factory=list, description="all of these roles are required")
    scopes: list[str] = Field(default_factory=list, description="all of these scopes are required")
    strip_prefix: bool = False
    """remove the prefix before forwarding"""
    preserve_host: bool = False
    """forward the client's Host instead of the upstream's"""
    websocket: bool = True
    """allow WebSocket upgrades (after the same checks)"""
    browser: bool | None = None
    """accept the browser cookies on this route (default: true when browser mode is on)"""
    csrf_header: bool = False
    """cookie-authenticated requests the CSRF check covers must also send `X-CSRF: 1`"""
    csrf_all_methods: bool = False
    """apply the CSRF check to GET, HEAD and OPTIONS too (apps that change state on GET)"""

    @field_validator("prefix")
    @classmethod
    def _prefix_is_absolute(cls, value: str) -> str:
        if (
            not value.startswith("/")
            or "//" in value
            or "/../" in value + "/"
            or "%" in value
            or ";" in value
        ):
            raise ValueError("must be an absolute, normalized path such as /api/")
        return value

    @field_validator("upstream")
    @classmethod
    def _upstream_is_http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
            raise ValueError("must be an http:// or https:// base URL without query")
        return value.rstrip("/")


def _default_stripped_headers() -> list[str]:
    return [
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-Override-URL",
        "X-Original-URI",
        "X-Forwarded-URI",
        "X-Forwarded-Path",
        "X-Forwarded-Prefix",
        "X-Envoy-Original-Path",
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ]


class ProxySettings(_Section):
    connect_timeout: PositiveSeconds = 5
    """seconds to connect to an upstream (else 504; refused or unreachable: 502)"""
    read_timeout: PositiveSeconds = 60
    """seconds an upstream may stay silent while the gateway waits on it (else 504)"""
    header_timeout: PositiveSeconds = 15
    """seconds a client has to send a whole request head, from the connection's opening or
    the first byte of a head on a kept-alive one (else 408 and the connection closes)"""
    keepalive_timeout: PositiveSeconds = 75
    """seconds an idle client connection is kept open (idle upstream connections: at most 30)"""
    body_timeout: PositiveSeconds = 60
    """seconds a request body may stall between two reads (else 408)"""
    min_body_rate: int = Field(default=256, ge=0)
    """bytes/s a request body must average while the gateway waits for it, once body_timeout
    has passed (else 408; 0 = off): a body trickled a byte at a time is cut"""
    send_timeout: PositiveSeconds = 60
    """seconds a client may leave a response unread before its connection is closed"""
    max_connections: int = Field(default=4096, ge=1)
    """open client connections per worker; past it new ones get 503 and are closed"""
    max_concurrency: int = Field(default=1024, ge=1)
    """requests in flight per worker before 503"""
    max_body_size: int = Field(default=1 << 30, ge=0, description="bytes; 0 = unlimited")
    max_header_size: int = Field(default=16 * 1024, ge=1024, description="bytes, all headers")
    drain_timeout: PositiveSeconds = Field(
        default=30, description="on SIGTERM: seconds in-flight requests may take to finish"
    )
    forward_authorization: bool = False
    """forward the client's Authorization header upstream"""
    trusted_proxies: list[str] = Field(default_factory=list)
    """networks whose X-Forwarded-* headers are kept (CIDR)"""
    identity_headers: dict[str, str] = Field(
        default_factory=lambda: {"sub": "X-User-Id", "roles": "X-User-Roles", "sid": "X-Session-Id"}
    )
    """claim → header set on forwarded requests (client copies removed)"""
    identity_header_prefixes: list[str] = Field(default_factory=lambda: ["X-User-", "X-Auth-"])
    """client headers with these prefixes are always removed"""
    realm: str = "gateway"
    """realm of the WWW-Authenticate challenge"""
    path_parameters: PathParameters = "match_without"
    """`;params` in path segments (servlet containers serve /a;x=1/b as /a/b): match routes on
    the path without them (the path is forwarded as received), or refuse such paths (400)"""
    strip_request_headers: list[str] = Field(default_factory=_default_stripped_headers)
    """client headers removed before forwarding: ones that make some frameworks serve another
    URL or method than the request line's (any case, `_` for `-`)"""

    @field_validator("strip_request_headers")
    @classmethod
    def _stripped_names(cls, value: list[str]) -> list[str]:
        for header in value:
            if not HEADER_NAME_RE.match(header):
                raise ValueError(f"{header!r} is not a valid header name")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @field_validator("identity_headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for header in value.values():
            if not HEADER_NAME_RE.match(header):
                raise ValueError(f"{header!r} is not a valid header name")
        return value


class SealKeySettings(_Section):
    """One cookie-sealing key: 32 random bytes, base64url (`gateway cookie-key generate`)."""

    id: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    """key id, written in front of each sealed cookie value"""
    secret_file: Path | None = None
    """file holding the key"""
    secret_env: str | None = None
    """environment variable holding the key"""

    @model_validator(mode="after")
    def _one_source(self) -> SealKeySettings:
        if (self.secret_file is None) == (self.secret_env is None):
            raise ValueError("exactly one of secret_file, secret_env is required")
        return self


class BrowserSettings(_Section):
    """Browser sessions: both tokens in HttpOnly cookies, refreshed by the gateway itself."""

    enabled: bool = False
    """accept the session cookies, serve /auth/browser/* (off: bearer tokens only)"""
    access_cookie: str = Field(default="__Host-gw_at", pattern=COOKIE_NAME_RE)
    """name of the access-token cookie (lives as long as the access token)"""
    refresh_cookie: str = Field(default="__Host-gw_rt", pattern=COOKIE_NAME_RE)
    """name of the refresh-token cookie (lives as long as the session)"""
    secure: bool = True
    """Secure cookies (HTTPS only); false is refused in environment production"""
    same_site: Literal["lax", "strict"] = "lax"
    """SameSite attribute of both cookies; none is refused"""
    allowed_origins: list[str] = Field(default_factory=list)
    """scheme://host[:port] origins trusted for unsafe cookie requests without Sec-Fetch-Site"""
    seal_cookies: bool = True
    """encrypt both cookie values (AES-256-GCM) so a copied cookie jar shows no claims"""
    seal_keys: list[SealKeySettings] = Field(default_factory=list)
    """sealing keys, newest first: the first seals, every one opens"""
    login_page: bool = True
    """serve the HTML login page at GET /auth/browser/login"""
    unauthenticated: Literal["redirect", "401"] = "redirect"
    """a top-level navigation without a session: redirect to the login page, or the JSON 401"""
    rotation_grace: PositiveSeconds = 60
    """seconds the previous refresh cookie still works once its successor is in use"""

    @field_validator("same_site", mode="before")
    @classmethod
    def _not_none(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() == "none":
            raise ValueError(
                "'none' is refused: the cookies would go along with cross-site requests"
            )
        return value.lower() if isinstance(value, str) else value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        origins = []
        for item in value:
            origin = item.lower()  # as browsers send it: lower case, no default port
            if not ORIGIN_RE.match(origin):
                raise ValueError(f"{item!r} is not an origin (scheme://host[:port], no path)")
            for scheme, port in (("http://", ":80"), ("https://", ":443")):
                if origin.startswith(scheme) and origin.endswith(port):
                    origin = origin[: -len(port)]
            origins.append(origin)
        return origins

    @model_validator(mode="after")
    def _names(self) -> BrowserSettings:
        if self.access_cookie == self.refresh_cookie:
            raise ValueError("access_cookie and refresh_cookie must differ")
        if self.enabled and not self.secure:
            for name in (self.access_cookie, self.refresh_cookie):
                if name.lower().startswith(("__host-", "__secure-")):
                    raise ValueError(
                        f"cookie {name!r}: the __Host-/__Secure- prefixes need secure: true"
                    )
        if self.enabled and self.seal_cookies and not self.seal_keys:
            raise ValueError("seal_cookies needs at least one key in seal_keys")
        if self.unauthenticated == "redirect" and not self.login_page:
            raise ValueError("unauthenticated: redirect needs login_page: true")
        return self


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """DEBUG, INFO, WARNING or ERROR"""
    format: Literal["json", "text"] = Field(
        default="json", description="access and event logs: one JSON object per line, or text"
    )
    access_log: bool = True
    """one line per request"""


# Claims our access tokens set themselves: a provider's claims never replace them.
OWN_CLAIMS: Final = frozenset(
    {"iss", "aud", "sub", "iat", "nbf", "exp", "jti", "sid", "roles", "scope", "auth_time"}
    | {"client_id", "typ"}
)
ProviderAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "[::1]"})


def _is_loopback_http(url: str) -> bool:
    match = re.match(r"^http://([^/:]+|\[[^\]]+\])(:\d+)?(/|$)", url)
    return match is not None and match.group(1) in LOOPBACK_HOSTS


def _provider_url(value: str) -> str:
    """https:// (http:// only on loopback, for development) without query or fragment."""
    if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
        raise ValueError("must be an https:// URL without query or fragment")
    if value.startswith("http://") and not _is_loopback_http(value):
        raise ValueError("must be https:// (http:// is accepted on loopback only)")
    return value


class ProviderRolesSettings(_Section):
    default: list[str] = Field(default_factory=list)
    """roles every user of this provider gets"""
    from_claim: str | None = None
    """claim holding the user's groups (a list or a space-separated string)"""
    map: dict[str, list[str]] = Field(default_factory=dict)
    """group → roles; when empty, the groups of `from_claim` are taken as roles as they are"""


class ProviderSettings(_Section):
    """One OIDC / JWT identity provider whose tokens are exchanged at /auth/token."""

    name: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")
    """our name for it; the session's `sub` is `<name>:<provider subject>`"""
    issuer: str
    """`iss` of its tokens, compared exactly (https://; http:// on loopback only)"""
    jwks_uri: str | None = None
    """where its keys are published; or `discovery: true`"""
    discovery: bool = False
    """read `jwks_uri` from `<issuer>/.well-known/openid-configuration` (its `issuer` must match)"""
    audiences: list[str] = Field(min_length=1)
    """client ids our users' apps have at the provider: `aud` must name one of them"""
    algorithms: list[ProviderAlgorithm] = Field(
        default_factory=lambda: list[ProviderAlgorithm](["RS256"]),
        min_length=1,
        description="signature algorithms accepted from this provider (asymmetric only)",
    )
    subject_claim: str = "sub"
    """claim that identifies the user at the provider"""
    required_claims: dict[str, str | bool | int] = Field(default_factory=dict)
    """claim → value the token must carry (`email_verified: true`, `token_use: id`, `hd: …`)"""
    max_token_age: PositiveSeconds = 3600
    """seconds since the token's `iat` after which it is refused even when unexpired"""
    roles: ProviderRolesSettings = ProviderRolesSettings()
    """roles of this provider's users (users linked in the user file keep their own)"""
    copy_claims: list[str] = Field(default_factory=list)
    """provider claims copied into our access tokens (`email`, `name`, …)"""

    @field_validator("issuer")
    @classmethod
    def _issuer_url(cls, value: str) -> str:
        return _provider_url(value)

    @field_validator("jwks_uri")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        return None if value is None else _provider_url(value)

    @field_validator("copy_claims")
    @classmethod
    def _not_our_claims(cls, value: list[str]) -> list[str]:
        clash = sorted(set(value) & OWN_CLAIMS)
        if clash:
            raise ValueError(f"{clash} are set by the gateway itself")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> ProviderSettings:
        if (self.jwks_uri is None) == (not self.discovery):
            raise ValueError("give jwks_uri or discovery: true (exactly one)")
        return self


class FederationSettings(_Section):
    providers: list[ProviderSettings] = Field(default_factory=list)
    """identity providers whose tokens are exchanged (RFC 8693) at /auth/token"""
    fetch_timeout: PositiveSeconds = 5
    """seconds a discovery or JWKS fetch may take in all (connect, headers, body)"""
    max_document_size: int = Field(default=256 * 1024, ge=1024)
    """bytes a discovery document or JWKS may have; larger is a failed fetch"""
    min_cache: PositiveSeconds = 300
    """shortest time a fetched key set is kept (a shorter Cache-Control max-age is raised)"""
    max_cache: PositiveSeconds = 86400
    """longest time a fetched key set is kept (a longer max-age is lowered)"""
    default_cache: PositiveSeconds = 3600
    """how long a key set without Cache-Control max-age is kept"""
    refetch_interval: PositiveSeconds = 30
    """at most one fetch per provider in this many seconds (unknown `kid`, failures)"""
    stale_if_error: NonNegativeSeconds = 86400
    """seconds past its expiry a key set still verifies while refetching fails"""

    @model_validator(mode="after")
    def _unique(self) -> FederationSettings:
        for attr in ("name", "issuer"):
            values = [getattr(p, attr) for p in self.providers]
            if len(set(values)) != len(values):
                raise ValueError(f"two providers share a {attr}")
        if self.min_cache > self.max_cache:
            raise ValueError("min_cache is above max_cache")
        return self


class IntrospectionClientSettings(_Section):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    """client id, sent as the HTTP Basic user name"""
    hash: str = Field(
        pattern=r"^sha256:[0-9a-f]{64}$", description="sha256:<hex> of the client secret"
    )


class IntrospectionSettings(_Section):
    clients: list[IntrospectionClientSettings] = Field(default_factory=list)
    """callers of /auth/introspect (`gateway introspection-client create`); empty = none"""
    rate_limit: RateLimit = RateLimit(limit=1200, window=60)
    """introspections per client and window, counted by each gateway process"""

    @field_validator("clients")
    @classmethod
    def _unique_ids(
        cls, value: list[IntrospectionClientSettings]
    ) -> list[IntrospectionClientSettings]:
        ids = [c.id for c in value]
        if len(set(ids)) != len(ids):
            raise ValueError("two introspection clients share an id")
        return value


class OpenTelemetrySettings(_Section):
    enabled: bool = False
    """export spans (request, upstream call, token endpoints' Redis work); needs the `otel` extra"""
    service_name: str = "token-gateway"
    """`service.name` of the exported spans"""
    endpoint: str | None = None
    """OTLP/HTTP traces URL; else the exporter's OTEL_EXPORTER_OTLP_* environment variables"""
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    """share of new traces recorded (a client's sampled flag is followed)"""


class TracingSettings(_Section):
    mode: Literal["passthrough", "participate", "restart"] = Field(
        default="passthrough",
        description="passthrough: traceparent/tracestate reach the upstream unchanged; "
        "participate: same trace id, the gateway's own parent id (invalid → new trace); "
        "restart: a new trace for every request (clients are not trusted)",
    )
    otel: OpenTelemetrySettings = OpenTelemetrySettings()
    """OpenTelemetry span export (off by default)"""


class Settings(BaseSettings):
    """The whole configuration; sections mirror `config.yaml`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )

    environment: Literal["production", "demo", "development"] = "production"
    """production, demo or development (the latter two are announced at start)"""
    listen: ListenSettings = ListenSettings()
    """the public listener"""
    admin: AdminSettings = AdminSettings()
    """the admin listener and its keys"""
    redis: RedisSettings = RedisSettings()
    """the shared store"""
    tokens: TokenSettings = TokenSettings()
    """issued and verified tokens"""
    keys: KeysSettings = KeysSettings()
    """signing and verification keys"""
    auth: AuthSettings = AuthSettings()
    """how logins are checked"""
    revocation: RevocationSettings = RevocationSettings()
    """the in-memory revocation view"""
    logging: LoggingSettings = LoggingSettings()
    """logs"""
    proxy: ProxySettings = ProxySettings()
    """forwarding"""
    routes: list[RouteSettings] = Field(default_factory=list)
    """longest prefix wins"""
    federation: FederationSettings = FederationSettings()
    """identity providers for the token exchange"""
    introspection: IntrospectionSettings = IntrospectionSettings()
    """token introspection (RFC 7662) for other services"""
    tracing: TracingSettings = TracingSettings()
    """trace context and OpenTelemetry"""
    browser: BrowserSettings = BrowserSettings()
    """browser sessions in cookies (off by default)"""

    @field_validator("routes")
    @classmethod
    def _unique_prefixes(cls, value: list[RouteSettings]) -> list[RouteSettings]:
        prefixes = [r.prefix.rstrip("/") or "/" for r in value]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError("two routes share a prefix")
        return value

    @model_validator(mode="after")
    def _providers_are_not_us(self) -> Settings:
        for provider in self.federation.providers:
            if provider.issuer.rstrip("/") == self.tokens.issuer.rstrip("/"):
                raise ValueError(
                    f"federation.providers[{provider.name}].issuer is the gateway's own issuer"
                )
        return self

    @model_validator(mode="after")
    def _browser_fits_the_environment(self) -> Settings:
        browser = self.browser
        if browser.enabled and not browser.secure and self.environment == "production":
            raise ValueError(
                "browser.secure: false is allowed only outside environment: production"
            )
        if browser.enabled and self.keys.active is None:
            raise ValueError("browser.enabled needs a signing key (keys.active)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = settings_cls.model_config.get("yaml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)


def load_settings(path: Path | str | None, **overrides: Any) -> Settings:
    """Read `path` (YAML) with env overrides; raise ConfigError naming each bad key."""
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"configuration file {str(path)!r} does not exist")
    config = SettingsConfigDict(**Settings.model_config)
    if path is not None:
        config["yaml_file"] = Path(path)
    from_file = type("FileSettings", (Settings,), {"model_config": config})
    try:
        return Settings.model_validate(from_file(**overrides).model_dump())
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except (OSError, ValueError, yaml.YAMLError) as exc:  # unreadable or unparsable YAML
        raise ConfigError(f"cannot read configuration {str(path)!r}: {exc}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the dotted key (`tokens.access_ttl: …`)."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(root)"
        lines.append(f"{key}: {error['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
