"""Settings of tokens and keys, logins (user file or backend) and introspection clients."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from gateway.config.fields import Algorithm, NonNegativeSeconds, PositiveSeconds, RateLimit, Section


class KeySettings(Section):
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


class KeysSettings(Section):
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


class TokenSettings(Section):
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


class LoginRateLimits(Section):
    per_ip: RateLimit = RateLimit(limit=60, window=60)
    """login attempts per client IP"""
    failures_per_username: RateLimit = RateLimit(limit=10, window=900)
    """failed logins per username"""


class BackendLoginSettings(Section):
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


class AuthSettings(Section):
    users_file: Path | None = None
    """YAML/JSON user file (`gateway users add`); argon2id or bcrypt hashes"""
    backend: BackendLoginSettings | None = None
    """delegate logins to the legacy backend instead of a user file"""
    rate_limits: LoginRateLimits = LoginRateLimits()
    """login rate limits, counted in Redis"""
    password_grant: bool = True
    """serve `grant_type=password` and POST /auth/login (OAuth 2.1 drops the password grant:
    apps should sign users in with the authorization code flow)"""
    clients_file: Path | None = None
    """YAML file of registered clients (`gateway clients add`), beside the `clients` list"""
    code_ttl: PositiveSeconds = Field(default=60, le=600)
    """seconds an authorization code may wait for its redemption (single use)"""

    @model_validator(mode="after")
    def _one_checker(self) -> AuthSettings:
        if self.users_file is not None and self.backend is not None:
            raise ValueError("configure auth.users_file or auth.backend, not both")
        return self


class IntrospectionClientSettings(Section):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    """client id, sent as the HTTP Basic user name"""
    hash: str = Field(
        pattern=r"^sha256:[0-9a-f]{64}$", description="sha256:<hex> of the client secret"
    )


class IntrospectionSettings(Section):
    clients: list[IntrospectionClientSettings] = Field(default_factory=list)
    """callers of /auth/introspect (`gateway introspection-client create`); empty = none"""
    rate_limit: RateLimit = RateLimit(limit=1200, window=60)
    """introspections per client and window, counted by each gateway process"""
    failures_per_ip: RateLimit = RateLimit(limit=10, window=300)
    """wrong client secrets per client address (counted in Redis); past it every attempt from
    the address is 429 until the window ends, a right secret too"""

    @field_validator("clients")
    @classmethod
    def _unique_ids(
        cls, value: list[IntrospectionClientSettings]
    ) -> list[IntrospectionClientSettings]:
        ids = [c.id for c in value]
        if len(set(ids)) != len(ids):
            raise ValueError("two introspection clients share an id")
        return value
