"""Settings of identity providers (OpenID Connect / JWT issuers the gateway trusts)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.fields import NonNegativeSeconds, PositiveSeconds, Section, is_loopback_http

# Claims our access tokens set themselves: a provider's claims never replace them.
OWN_CLAIMS: Final = frozenset(
    {"iss", "aud", "sub", "iat", "nbf", "exp", "jti", "sid", "roles", "scope", "auth_time"}
    | {"client_id", "typ"}
)


ProviderAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]


def _provider_url(value: str) -> str:
    """https:// (http:// only on loopback, for development) without query or fragment."""
    if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
        raise ValueError("must be an https:// URL without query or fragment")
    if value.startswith("http://") and not is_loopback_http(value):
        raise ValueError("must be https:// (http:// is accepted on loopback only)")
    return value


class ProviderRolesSettings(Section):
    default: list[str] = Field(default_factory=list)
    """roles every user of this provider gets"""
    from_claim: str | None = None
    """claim holding the user's groups (a list or a space-separated string)"""
    map: dict[str, list[str]] = Field(default_factory=dict)
    """group → roles; when empty, the groups of `from_claim` are taken as roles as they are"""


# Authorization request parameters the gateway sets itself: `extra_params` cannot replace them.
OWN_AUTHORIZATION_PARAMS: Final = frozenset(
    {"response_type", "client_id", "redirect_uri", "scope", "state", "nonce"}
    | {"code_challenge", "code_challenge_method", "response_mode", "request", "request_uri"}
)
TokenAuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


class ProviderLoginSettings(Section):
    """Browser sign-in at this provider: OpenID Connect authorization code flow with PKCE."""

    client_id: str = Field(min_length=1, max_length=256)
    """the gateway's client id at the provider (one of the provider's `audiences`)"""
    client_secret_file: Path | None = None
    """file holding the client secret (client_secret_basic, or client_secret_post)"""
    client_secret_env: str | None = None
    """environment variable holding the client secret"""
    private_key_file: Path | None = None
    """PEM private key (RSA, EC P-256 or Ed25519) that signs client assertions (private_key_jwt)"""
    private_key_id: str | None = Field(default=None, max_length=256)
    """`kid` of that key as registered at the provider (sent in the assertion's header)"""
    token_auth_method: TokenAuthMethod | None = None
    """how the gateway authenticates at the token endpoint; default: client_secret_basic with
    a secret, private_key_jwt with a key, none (a public client, PKCE only) without either"""
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    """scopes asked for (must include openid)"""
    extra_params: dict[str, str] = Field(default_factory=dict)
    """more authorization request parameters (`prompt`, `domain_hint`, `hd`, `max_age`, …);
    with `max_age` the ID token's `auth_time` is checked against it"""
    display_name: str | None = Field(default=None, min_length=1, max_length=64)
    """the login page's button says "Sign in with <display_name>" (default: the name)"""
    max_session_age: PositiveSeconds | None = None
    """seconds a session started here lasts before a new sign-in at the provider (silent when
    it allows); overrides browser.max_session_age"""

    @field_validator("scopes")
    @classmethod
    def _openid(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("must include openid")
        if not all(re.fullmatch(r"[\x21\x23-\x5b\x5d-\x7e]+", scope) for scope in value):
            raise ValueError("a scope is a non-empty token without spaces or quotes")
        return value

    @field_validator("extra_params")
    @classmethod
    def _not_ours(cls, value: dict[str, str]) -> dict[str, str]:
        clash = sorted(set(value) & OWN_AUTHORIZATION_PARAMS)
        if clash:
            raise ValueError(f"{clash} are set by the gateway itself")
        max_age = value.get("max_age")
        if max_age is not None and not re.fullmatch(r"[0-9]{1,9}", max_age):
            raise ValueError("max_age is a number of seconds")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> ProviderLoginSettings:
        given = [
            name
            for name in ("client_secret_file", "client_secret_env", "private_key_file")
            if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give at most one of {given}")
        method = self.token_auth_method
        secret = bool(given) and given[0] != "private_key_file"
        if method is None:
            return self
        if method in ("client_secret_basic", "client_secret_post") and not secret:
            raise ValueError(f"{method} needs client_secret_file or client_secret_env")
        if method == "private_key_jwt" and self.private_key_file is None:
            raise ValueError("private_key_jwt needs private_key_file")
        if method == "none" and given:
            raise ValueError("token_auth_method none takes no secret or key")
        return self

    @property
    def auth_method(self) -> TokenAuthMethod:
        """The token endpoint authentication in effect."""
        if self.token_auth_method is not None:
            return self.token_auth_method
        if self.private_key_file is not None:
            return "private_key_jwt"
        if self.client_secret_file is not None or self.client_secret_env is not None:
            return "client_secret_basic"
        return "none"


class ProviderAccessTokenSettings(Section):
    """How a provider's own access tokens are judged on routes that accept them
    (`routes[].accept`): their audience, algorithms and claims mapping."""

    audiences: list[str] = Field(min_length=1)
    """`aud` of the provider's access tokens for our APIs: it must name one of these"""
    algorithms: list[ProviderAlgorithm] = Field(
        default_factory=lambda: list[ProviderAlgorithm](["RS256"]),
        min_length=1,
        description="signature algorithms accepted for its access tokens (asymmetric only)",
    )
    subject_claim: str = "sub"
    """claim that identifies the caller; the upstream sees `<provider>:<value>`"""
    required_claims: dict[str, str | bool | int] = Field(default_factory=dict)
    """claim → value its access tokens must carry (`token_use: access`, `tid: …`)"""
    scope_claim: str = "scope"
    """claim holding the granted scopes (a space-separated string or a list, e.g. `scp`)"""
    roles: ProviderRolesSettings = ProviderRolesSettings()
    """roles of the callers (default roles, groups claim and map, as for sign-ins)"""
    copy_claims: list[str] = Field(default_factory=list)
    """claims kept on the caller's identity for the identity headers (`email`, …)"""
    max_lifetime: PositiveSeconds = 86400
    """seconds between `iat` (when present) and `exp` beyond which a token is refused"""

    @field_validator("copy_claims")
    @classmethod
    def _not_our_claims(cls, value: list[str]) -> list[str]:
        clash = sorted(set(value) & OWN_CLAIMS)
        if clash:
            raise ValueError(f"{clash} are set by the gateway itself")
        return value


class ProviderSettings(Section):
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
    login: ProviderLoginSettings | None = None
    """offer browser sign-in at this provider on the login page (needs `discovery: true`)"""
    access_tokens: ProviderAccessTokenSettings | None = None
    """accept this provider's own access tokens on routes that list it in `accept`"""

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
        access = self.access_tokens
        if access is not None and not set(access.algorithms) <= set(self.algorithms):
            raise ValueError(
                "access_tokens.algorithms must be among the provider's algorithms (its keys "
                "are fetched once, for both)"
            )
        return self

    @model_validator(mode="after")
    def _login_fits(self) -> ProviderSettings:
        if self.login is None:
            return self
        if not self.discovery:
            raise ValueError("login needs discovery: true (its endpoints come from there)")
        if self.login.client_id not in self.audiences:
            raise ValueError("login.client_id must be one of audiences")
        return self


class FederationSettings(Section):
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
