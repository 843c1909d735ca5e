"""The whole configuration: `config.yaml`, then `GATEWAY_*` environment variables (`__` nests
keys). Build it once with `load_settings(path)` at the edge (CLI) and pass it down; tests
build `Settings(...)` directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from gateway.config.browser_settings import BrowserSettings
from gateway.config.client_settings import ClientSettings
from gateway.config.federation_settings import FederationSettings
from gateway.config.fields import RESTART
from gateway.config.forward_auth_settings import ForwardAuthSettings
from gateway.config.limit_settings import RateLimitingSettings
from gateway.config.route_settings import ProxySettings, RouteSettings
from gateway.config.server_settings import (
    AdminSettings,
    ListenSettings,
    LoggingSettings,
    TracingSettings,
)
from gateway.config.store_settings import RedisSettings, RevocationSettings
from gateway.config.token_settings import (
    AuthSettings,
    IntrospectionSettings,
    KeysSettings,
    TokenSettings,
)
from gateway.config.upstream_settings import UPSTREAM_NAME_RE, UpstreamSettings
from gateway.errors import ConfigError

ENV_PREFIX: Final = "GATEWAY_"


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
    listen: Annotated[ListenSettings, RESTART] = ListenSettings()
    """the public listener"""
    admin: AdminSettings = AdminSettings()
    """the admin listener and its keys"""
    redis: Annotated[RedisSettings, RESTART] = RedisSettings()
    """the shared store"""
    tokens: TokenSettings = TokenSettings()
    """issued and verified tokens"""
    keys: KeysSettings = KeysSettings()
    """signing and verification keys"""
    auth: AuthSettings = AuthSettings()
    """how logins are checked"""
    revocation: Annotated[RevocationSettings, RESTART] = RevocationSettings()
    """the in-memory revocation view"""
    logging: Annotated[LoggingSettings, RESTART] = LoggingSettings()
    """logs"""
    proxy: ProxySettings = ProxySettings()
    """forwarding"""
    upstreams: dict[str, UpstreamSettings] = Field(default_factory=dict)
    """named pools of targets that routes forward to (`routes[].upstream: <name>`); see
    docs/upstreams.md"""
    routes: list[RouteSettings] = Field(default_factory=list)
    """host first (exact, then wildcard, then none), then the longest prefix, then the
    routes that list the method"""
    rate_limiting: Annotated[RateLimitingSettings, RESTART] = RateLimitingSettings()
    """how the routes' rate limits are counted"""
    federation: FederationSettings = FederationSettings()
    """identity providers for the token exchange"""
    introspection: IntrospectionSettings = IntrospectionSettings()
    """token introspection (RFC 7662) for other services"""
    tracing: Annotated[TracingSettings, RESTART] = TracingSettings()
    """trace context and OpenTelemetry"""
    browser: BrowserSettings = BrowserSettings()
    """browser sessions in cookies (off by default)"""
    clients: list[ClientSettings] = Field(default_factory=list)
    """registered OAuth clients: apps (authorization code) and machines (client credentials)"""
    forward_auth: ForwardAuthSettings = ForwardAuthSettings()
    """decisions for an ingress (nginx auth_request, Traefik ForwardAuth, Envoy ext_authz)"""

    @field_validator("routes")
    @classmethod
    def _unique_prefixes(cls, value: list[RouteSettings]) -> list[RouteSettings]:
        matched = [
            (r.prefix.rstrip("/") or "/", frozenset(r.hosts), frozenset(r.methods)) for r in value
        ]
        if len(set(matched)) != len(matched):
            raise ValueError("two routes share a prefix (with the same hosts and methods)")
        names = [r.route_name for r in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two routes are named {twice[0]!r}: give each its own `name`")
        return value

    @field_validator("upstreams")
    @classmethod
    def _upstream_names(cls, value: dict[str, UpstreamSettings]) -> dict[str, UpstreamSettings]:
        for name in value:
            if not UPSTREAM_NAME_RE.match(name):
                raise ValueError(
                    f"{name!r} is not an upstream name (letters, digits, '_', '.', '-')"
                )
        return value

    @model_validator(mode="after")
    def _route_upstreams(self) -> Settings:
        for route in self.routes:
            name = route.upstream_name
            if name is not None and name not in self.upstreams:
                raise ValueError(
                    f"routes[{route.prefix}].upstream: {name!r} is neither an http(s):// URL "
                    "nor an upstream of `upstreams`"
                )
        return self

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

    @model_validator(mode="after")
    def _provider_logins_fit_the_browser(self) -> Settings:
        logins = [p.name for p in self.federation.providers if p.login is not None]
        browser = self.browser
        if logins and browser.enabled:
            if browser.public_url is None:
                raise ValueError(
                    f"federation.providers[{logins[0]}].login needs browser.public_url "
                    "(the origin identity providers send browsers back to)"
                )
            if not browser.seal_cookies:
                raise ValueError("provider sign-in needs browser.seal_cookies: true")
        if browser.enabled and browser.login_page and not browser.password_login and not logins:
            raise ValueError(
                "browser.password_login: false needs a provider with a login block "
                "(the login page would offer nothing)"
            )
        return self

    @model_validator(mode="after")
    def _route_issuers(self) -> Settings:
        providers = {p.name: p for p in self.federation.providers}
        for route in self.routes:
            for name in route.accept:
                if name == "gateway":
                    continue
                provider = providers.get(name)
                if provider is None:
                    raise ValueError(
                        f"routes[{route.prefix}].accept: {name!r} is neither gateway nor a "
                        "provider of federation.providers"
                    )
                if provider.access_tokens is None:
                    raise ValueError(
                        f"routes[{route.prefix}].accept: provider {name!r} has no "
                        "access_tokens policy (audiences, algorithms, roles)"
                    )
        return self

    @model_validator(mode="after")
    def _clients_fit(self) -> Settings:
        check_clients(self, self.clients)
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


def check_clients(settings: Settings, clients: list[ClientSettings]) -> None:
    """What registered clients need of the rest of the configuration (also applied to the
    clients file when it is loaded): unique ids, browser sign-in for the authorization code
    flow, a signing key for any grant."""
    ids = [c.id for c in clients]
    if len(set(ids)) != len(ids):
        raise ValueError("two clients share an id")
    if clients and settings.keys.active is None:
        raise ValueError("clients need a signing key (keys.active)")
    for client in clients:
        if "authorization_code" in client.grants and not (
            settings.browser.enabled and settings.browser.login_page
        ):
            raise ValueError(
                f"clients[{client.id}]: authorization_code needs browser.enabled and "
                "browser.login_page (users sign in on the gateway's login page)"
            )


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
