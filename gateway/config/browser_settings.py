"""Settings of browser sessions (cookie mode) and the keys that seal their cookies."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.fields import COOKIE_NAME_RE, ORIGIN_RE, PositiveSeconds, Section

_FALSE = frozenset({"false", "0", "no", "off"})  # `secure` as YAML or an environment variable


class SealKeySettings(Section):
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


class BrowserSettings(Section):
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
    password_login: bool = True
    """the login page shows the password form (false: identity providers' buttons only)"""
    max_session_age: PositiveSeconds | None = None
    """seconds a session started at an identity provider lasts before a new sign-in there
    (silent when the provider allows); per provider: `login.max_session_age`"""
    public_url: str | None = Field(default=None, pattern=ORIGIN_RE.pattern)
    """scheme://host[:port] browsers reach the gateway at: identity providers redirect to
    <public_url>/auth/browser/callback/<provider> (needed with a provider's `login`)"""
    login_cookie: str = Field(default="__Host-gw_login", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    """name prefix of the sealed cookie of one sign-in at a provider (`<name>_<attempt>`);
    `gw_login` by default with secure: false"""
    provider_cookie: str = Field(default="__Host-gw_idp", pattern=COOKIE_NAME_RE)
    """name of the sealed cookie naming the provider a browser signed in at (silent re-login,
    the ID token for the provider's logout); `gw_idp` by default with secure: false"""

    @model_validator(mode="before")
    @classmethod
    def _plain_names_without_secure(cls, data: Any) -> Any:
        """Without Secure the __Host- prefix is impossible: the defaults drop it."""
        if isinstance(data, dict) and str(data.get("secure")).lower() in _FALSE:
            data = {"login_cookie": "gw_login", "provider_cookie": "gw_idp", **data}
        return data

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
        names = (self.access_cookie, self.refresh_cookie, self.provider_cookie)
        if len({n.lower() for n in names}) != len(names):
            raise ValueError("access_cookie, refresh_cookie and provider_cookie must differ")
        if any(n.lower().startswith(self.login_cookie.lower() + "_") for n in names):
            raise ValueError("login_cookie must not be a prefix of another cookie's name")
        if self.enabled and not self.secure:
            for name in (*names, self.login_cookie):
                if name.lower().startswith(("__host-", "__secure-")):
                    raise ValueError(
                        f"cookie {name!r}: the __Host-/__Secure- prefixes need secure: true"
                    )
        if self.enabled and self.seal_cookies and not self.seal_keys:
            raise ValueError("seal_cookies needs at least one key in seal_keys")
        if self.unauthenticated == "redirect" and not self.login_page:
            raise ValueError("unauthenticated: redirect needs login_page: true")
        return self
