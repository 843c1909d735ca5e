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
from gateway.typedefs import FailMode, RoutePolicy

ENV_PREFIX: Final = "GATEWAY_"
ASYMMETRIC_ALGORITHMS: Final = ("EdDSA", "ES256", "RS256")
SUPPORTED_ALGORITHMS: Final = (*ASYMMETRIC_ALGORITHMS, "HS256")
HEADER_NAME_RE: Final = re.compile(r"^[A-Za-z0-9-]+$")

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

    @field_validator("prefix")
    @classmethod
    def _prefix_is_absolute(cls, value: str) -> str:
        if not value.startswith("/") or "//" in value or "/../" in value + "/" or "%" in value:
            raise ValueError("must be an absolute, normalized path such as /api/")
        return value

    @field_validator("upstream")
    @classmethod
    def _upstream_is_http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
            raise ValueError("must be an http:// or https:// base URL without query")
        return value.rstrip("/")


class ProxySettings(_Section):
    connect_timeout: PositiveSeconds = 5
    """seconds to connect to an upstream (else 502)"""
    read_timeout: PositiveSeconds = 60
    """seconds an upstream may stay silent while the gateway waits on it (else 504)"""
    keepalive_timeout: PositiveSeconds = 75
    """seconds an idle client connection is kept open (idle upstream connections: at most 30)"""
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


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """DEBUG, INFO, WARNING or ERROR"""
    format: Literal["json", "text"] = Field(
        default="json", description="access and event logs: one JSON object per line, or text"
    )
    access_log: bool = True
    """one line per request"""


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

    @field_validator("routes")
    @classmethod
    def _unique_prefixes(cls, value: list[RouteSettings]) -> list[RouteSettings]:
        prefixes = [r.prefix.rstrip("/") or "/" for r in value]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError("two routes share a prefix")
        return value

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
