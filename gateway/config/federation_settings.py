"""Settings of identity providers (OpenID Connect / JWT issuers the gateway trusts)."""

from __future__ import annotations

import re
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
