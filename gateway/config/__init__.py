"""Typed settings, one module per plane's sections; `Settings` is the whole configuration
(gateway.config.settings). Everything public is importable from here."""

from gateway.config.browser_settings import (
    BrowserSettings,
    SealKeySettings,
)
from gateway.config.federation_settings import (
    OWN_CLAIMS,
    FederationSettings,
    ProviderAlgorithm,
    ProviderRolesSettings,
    ProviderSettings,
)
from gateway.config.fields import (
    ASYMMETRIC_ALGORITHMS,
    COOKIE_NAME_RE,
    HEADER_NAME_RE,
    LOOPBACK_HOSTS,
    ORIGIN_RE,
    RESTART,
    SUPPORTED_ALGORITHMS,
    Algorithm,
    NonNegativeSeconds,
    Port,
    PositiveSeconds,
    RateLimit,
    Section,
    is_loopback_http,
)
from gateway.config.route_settings import (
    ProxySettings,
    RouteSettings,
)
from gateway.config.server_settings import (
    AdminKeySettings,
    AdminSettings,
    ConsoleSettings,
    ListenSettings,
    LoggingSettings,
    OpenTelemetrySettings,
    TracingSettings,
)
from gateway.config.settings import (
    ENV_PREFIX,
    Settings,
    describe_validation_error,
    load_settings,
)
from gateway.config.store_settings import (
    RedisSettings,
    RevocationSettings,
)
from gateway.config.token_settings import (
    AuthSettings,
    BackendLoginSettings,
    IntrospectionClientSettings,
    IntrospectionSettings,
    KeySettings,
    KeysSettings,
    LoginRateLimits,
    TokenSettings,
)

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "COOKIE_NAME_RE",
    "ENV_PREFIX",
    "HEADER_NAME_RE",
    "LOOPBACK_HOSTS",
    "ORIGIN_RE",
    "OWN_CLAIMS",
    "RESTART",
    "SUPPORTED_ALGORITHMS",
    "AdminKeySettings",
    "AdminSettings",
    "Algorithm",
    "AuthSettings",
    "BackendLoginSettings",
    "BrowserSettings",
    "ConsoleSettings",
    "FederationSettings",
    "IntrospectionClientSettings",
    "IntrospectionSettings",
    "KeySettings",
    "KeysSettings",
    "ListenSettings",
    "LoggingSettings",
    "LoginRateLimits",
    "NonNegativeSeconds",
    "OpenTelemetrySettings",
    "Port",
    "PositiveSeconds",
    "ProviderAlgorithm",
    "ProviderRolesSettings",
    "ProviderSettings",
    "ProxySettings",
    "RateLimit",
    "RedisSettings",
    "RevocationSettings",
    "RouteSettings",
    "SealKeySettings",
    "Section",
    "Settings",
    "TokenSettings",
    "TracingSettings",
    "describe_validation_error",
    "is_loopback_http",
    "load_settings",
]
