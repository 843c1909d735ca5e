"""Typed settings, one module per plane's sections; `Settings` is the whole configuration
(gateway.config.settings). Everything public is importable from here."""

from gateway.config.browser_settings import (
    BrowserSettings,
    SealKeySettings,
)
from gateway.config.federation_settings import (
    OWN_AUTHORIZATION_PARAMS,
    OWN_CLAIMS,
    FederationSettings,
    ProviderAlgorithm,
    ProviderLoginSettings,
    ProviderRolesSettings,
    ProviderSettings,
    TokenAuthMethod,
)
from gateway.config.fields import (
    ASYMMETRIC_ALGORITHMS,
    COOKIE_NAME_RE,
    HEADER_NAME_RE,
    LOOPBACK_HOSTS,
    ORIGIN_RE,
    SUPPORTED_ALGORITHMS,
    Algorithm,
    NonNegativeSeconds,
    Port,
    PositiveSeconds,
    RateLimit,
    Section,
    is_loopback_http,
)
from gateway.config.limit_settings import (
    LimitMode,
    RateLimitingSettings,
    RouteLimitSettings,
)
from gateway.config.policy_settings import (
    ClaimCondition,
    RuleSettings,
    RuleTree,
    Scalar,
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
    "OWN_AUTHORIZATION_PARAMS",
    "OWN_CLAIMS",
    "SUPPORTED_ALGORITHMS",
    "AdminKeySettings",
    "AdminSettings",
    "Algorithm",
    "AuthSettings",
    "BackendLoginSettings",
    "BrowserSettings",
    "ClaimCondition",
    "ConsoleSettings",
    "FederationSettings",
    "IntrospectionClientSettings",
    "IntrospectionSettings",
    "KeySettings",
    "KeysSettings",
    "LimitMode",
    "ListenSettings",
    "LoggingSettings",
    "LoginRateLimits",
    "NonNegativeSeconds",
    "OpenTelemetrySettings",
    "Port",
    "PositiveSeconds",
    "ProviderAlgorithm",
    "ProviderLoginSettings",
    "ProviderRolesSettings",
    "ProviderSettings",
    "ProxySettings",
    "RateLimit",
    "RateLimitingSettings",
    "RedisSettings",
    "RevocationSettings",
    "RouteLimitSettings",
    "RouteSettings",
    "RuleSettings",
    "RuleTree",
    "Scalar",
    "SealKeySettings",
    "Section",
    "Settings",
    "TokenAuthMethod",
    "TokenSettings",
    "TracingSettings",
    "describe_validation_error",
    "is_loopback_http",
    "load_settings",
]
