"""Settings of the client registry: the applications and machines that obtain tokens from the
gateway (OAuth 2.1 clients), each with its type, grants, redirect URIs and authentication."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.fields import Section, is_loopback_http

ClientType = Literal["public", "confidential"]
ClientAuthMethod = Literal["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]
TOKEN_EXCHANGE_GRANT: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
ClientGrant = Literal[
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
    "urn:ietf:params:oauth:grant-type:token-exchange",
]
CLIENT_ID_PATTERN: Final = r"^[A-Za-z0-9._-]{1,64}$"
SCOPE_TOKEN: Final = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")  # RFC 6749 §3.3
SECRET_HASH: Final = re.compile(r"^(sha256:[0-9a-f]{64}|\$argon2id\$\S+)$")
# A private-use URI scheme of a native app (RFC 8252 §7.1): reverse domain name notation.
PRIVATE_USE_SCHEME: Final = re.compile(r"^[a-z][a-z0-9+.-]*\.[a-z0-9+.-]+:/")


def check_redirect_uri(value: str) -> str:
    """An absolute redirect URI without fragment: https, http on loopback (native apps, RFC
    8252 §7.3), or a private-use scheme in reverse domain notation (RFC 8252 §7.1)."""
    if "#" in value or any(c.isspace() for c in value) or len(value) > 512:
        raise ValueError(f"{value!r}: a redirect URI has no fragment, no spaces, ≤ 512 chars")
    if value.startswith("https://"):
        if not re.match(r"^https://[^/?#@]+(/|\?|$)", value):
            raise ValueError(f"{value!r} is not an absolute https:// URI")
        return value
    if value.startswith("http://"):
        if not is_loopback_http(value):
            raise ValueError(f"{value!r}: http:// is accepted for loopback addresses only")
        return value
    if PRIVATE_USE_SCHEME.match(value) and not value.lower().startswith(("javascript:", "data:")):
        return value
    raise ValueError(
        f"{value!r}: use https://, http:// on loopback, or a private-use scheme "
        "(com.example.app:/callback)"
    )


class ClientSettings(Section):
    """One registered client: an app that signs users in, or a machine with its own identity."""

    id: str = Field(pattern=CLIENT_ID_PATTERN)
    """client_id, as the client sends it; machine tokens have `sub` client:<id>"""
    name: str | None = Field(default=None, max_length=80)
    """shown to users on the consent page (default: the id)"""
    type: ClientType = "confidential"
    """public (native and browser apps: no secret) or confidential (holds a secret or key)"""
    grants: list[ClientGrant] = Field(
        default_factory=lambda: list[ClientGrant](["authorization_code", "refresh_token"])
    )
    """grants it may use at /auth/token (authorization_code, refresh_token,
    client_credentials, password, the token-exchange URN)"""
    redirect_uris: list[str] = Field(default_factory=list)
    """where /auth/authorize may send the user back, compared exactly; a loopback http URI of
    a public client matches any port (RFC 8252 §7.3)"""
    scopes: list[str] = Field(default_factory=list)
    """scopes it may ask for (and what it gets when it asks for none); `openid` is always
    allowed in the authorization code flow"""
    roles: list[str] = Field(default_factory=list)
    """roles of its own tokens (client_credentials)"""
    auth_method: ClientAuthMethod | None = None
    """how it authenticates at /auth/token: none (public clients; the default for them),
    client_secret_basic (the default for confidential ones), client_secret_post,
    private_key_jwt"""
    secret_hash: str | None = None
    """hash of its secret: sha256:<hex> or an argon2id hash (`gateway clients add`)"""
    secret_file: Path | None = None
    """file holding the secret itself (hashed when loaded), instead of secret_hash"""
    jwks_file: Path | None = None
    """private_key_jwt: the client's public keys (JWKS) in a file"""
    jwks_uri: str | None = None
    """private_key_jwt: where the client publishes its public keys (https://; http:// on
    loopback only)"""
    consent: bool = False
    """third-party client: users confirm the scopes it asks for on a consent page"""

    @field_validator("redirect_uris")
    @classmethod
    def _redirects(cls, value: list[str]) -> list[str]:
        return [check_redirect_uri(uri) for uri in value]

    @field_validator("scopes")
    @classmethod
    def _scope_tokens(cls, value: list[str]) -> list[str]:
        for scope in value:
            if not SCOPE_TOKEN.match(scope):
                raise ValueError(f"{scope!r} is not a scope token (RFC 6749 §3.3)")
        return value

    @field_validator("secret_hash")
    @classmethod
    def _hash_form(cls, value: str | None) -> str | None:
        if value is not None and not SECRET_HASH.match(value):
            raise ValueError("must be sha256:<64 hex digits> or an argon2id hash ($argon2id$…)")
        return value

    @field_validator("jwks_uri")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/?#\s]+(/[^#\s]*)?$", value):
            raise ValueError("must be an http(s):// URL without fragment")
        if value.startswith("http://") and not is_loopback_http(value):
            raise ValueError("must be https:// (http:// is accepted on loopback only)")
        return value

    @property
    def method(self) -> ClientAuthMethod:
        """The authentication method in force (the type's default when none is set)."""
        if self.auth_method is not None:
            return self.auth_method
        return "none" if self.type == "public" else "client_secret_basic"

    @model_validator(mode="after")
    def _consistent(self) -> ClientSettings:
        method = self.method
        secrets = [n for n in ("secret_hash", "secret_file") if getattr(self, n) is not None]
        keys = [n for n in ("jwks_file", "jwks_uri") if getattr(self, n) is not None]
        if self.type == "public":
            if method != "none" or secrets or keys:
                raise ValueError("a public client has no secret and no keys (auth_method: none)")
            if "client_credentials" in self.grants:
                raise ValueError("client_credentials is for confidential clients only")
        elif method == "none":
            raise ValueError("a confidential client authenticates (auth_method is not none)")
        elif method == "private_key_jwt":
            if len(keys) != 1 or secrets:
                raise ValueError("private_key_jwt takes exactly one of jwks_file, jwks_uri")
        elif len(secrets) != 1 or keys:
            raise ValueError(f"{method} takes exactly one of secret_hash, secret_file")
        if "authorization_code" in self.grants and not self.redirect_uris:
            raise ValueError("authorization_code needs at least one redirect_uri")
        if len(set(self.grants)) != len(self.grants):
            raise ValueError("a grant is listed twice")
        return self
