"""The cookies of a sign-in at an identity provider, sealed like the session cookies
(gateway.browser.seal) under purposes of their own:

* one cookie per login attempt, `<browser.login_cookie>_<attempt>`, named after a hash of
  the attempt's `state` (several tabs signing in at once each keep their own), holding the
  state, nonce, PKCE verifier, return_to and whether the attempt is silent; it lives ten
  minutes and is cleared by the callback;
* the provider cookie (`browser.provider_cookie`), naming the provider the browser last
  signed in at (silent re-login when the session has ended) and keeping its ID token for the
  provider's logout (`id_token_hint`).

Both are HttpOnly and SameSite=Lax whatever `browser.same_site` says: the provider sends the
browser back with a cross-site top-level GET, which Lax cookies accompany.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from gateway.browser.cookies import SEPARATORS
from gateway.browser.seal import MAX_SEALED, CookieSeal
from gateway.config import BrowserSettings

LOGIN: Final = b"gateway cookie v1: provider login attempt"
PROVIDER: Final = b"gateway cookie v1: provider"
ATTEMPT_TTL: Final = 600  # seconds a browser may spend at the provider
MAX_STATE: Final = 256


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    provider: str
    state: str
    nonce: str
    verifier: str
    return_to: str
    silent: bool
    started_at: float

    @classmethod
    def new(cls, provider: str, return_to: str, *, silent: bool, now: float) -> LoginAttempt:
        return cls(
            provider=provider,
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(48),  # 64 characters (RFC 7636 §4.1: 43 to 128)
            return_to=return_to,
            silent=silent,
            started_at=now,
        )

    @property
    def code_challenge(self) -> str:
        """S256 (RFC 7636 §4.2): base64url(SHA-256(verifier)), never the plain verifier."""
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class ProviderHint:
    provider: str
    id_token: str | None  # for the provider's logout; None when it did not fit a cookie


class SignInCookies:
    """Set-Cookie values and readers for the attempt cookies and the provider cookie."""

    def __init__(self, settings: BrowserSettings, seal: CookieSeal, *, hint_lifetime: float):
        self._prefix = settings.login_cookie + "_"
        self.provider_name = settings.provider_cookie
        self._seal = seal
        self._hint_lifetime = hint_lifetime
        self._attributes = "; Path=/; HttpOnly; SameSite=Lax" + (
            "; Secure" if settings.secure else ""
        )

    # -- one login attempt -------------------------------------------------------------------

    def attempt_name(self, state: str) -> str:
        digest = hashlib.sha256(state.encode()).digest()[:12]
        return self._prefix + base64.urlsafe_b64encode(digest).decode()

    def attempt_cookie(self, attempt: LoginAttempt) -> str:
        value = {
            "p": attempt.provider,
            "s": attempt.state,
            "n": attempt.nonce,
            "v": attempt.verifier,
            "r": attempt.return_to,
            "q": attempt.silent,
            "t": attempt.started_at,
        }
        sealed = self._seal.seal(json.dumps(value, separators=(",", ":")), LOGIN)
        return (
            f"{self.attempt_name(attempt.state)}={sealed}; Max-Age={ATTEMPT_TTL}{self._attributes}"
        )

    def attempt_cleared(self, state: str) -> str:
        return f"{self.attempt_name(state)}=; Max-Age=0{self._attributes}"

    def attempt(self, cookie_headers: Iterable[str], state: str) -> LoginAttempt | None:
        """The attempt this browser started with `state`; None when it holds no such cookie
        (or one that does not open, or two of that name)."""
        raw = named_cookie(cookie_headers, self.attempt_name(state))
        opened = self._seal.open(raw, LOGIN) if raw else None
        if opened is None:
            return None
        try:
            v: Any = json.loads(opened.value)
            return LoginAttempt(
                provider=str(v["p"]),
                state=str(v["s"]),
                nonce=str(v["n"]),
                verifier=str(v["v"]),
                return_to=str(v["r"]),
                silent=v["q"] is True,
                started_at=float(v["t"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    # -- the provider the browser signed in at ----------------------------------------------

    def provider_cookie(self, hint: ProviderHint) -> str:
        sealed = self._sealed_hint(hint)
        if len(sealed) > MAX_SEALED - 200:  # a huge ID token: keep the provider's name only
            sealed = self._sealed_hint(ProviderHint(hint.provider, None))
        max_age = max(0, math.ceil(self._hint_lifetime))
        return f"{self.provider_name}={sealed}; Max-Age={max_age}{self._attributes}"

    def provider_cleared(self) -> str:
        return f"{self.provider_name}=; Max-Age=0{self._attributes}"

    def provider_hint(self, cookie_headers: Iterable[str]) -> ProviderHint | None:
        raw = named_cookie(cookie_headers, self.provider_name)
        opened = self._seal.open(raw, PROVIDER) if raw else None
        if opened is None:
            return None
        try:
            v: Any = json.loads(opened.value)
            token = v.get("i")
            return ProviderHint(str(v["p"]), token if isinstance(token, str) and token else None)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def _sealed_hint(self, hint: ProviderHint) -> str:
        value = json.dumps({"p": hint.provider, "i": hint.id_token or ""}, separators=(",", ":"))
        return self._seal.seal(value, PROVIDER)


def named_cookie(cookie_headers: Iterable[str], name: str) -> str | None:
    """The value of the cookie named exactly `name`; None when absent or sent twice (never
    pick one of two: another path or a sibling domain may have tossed one in)."""
    found: str | None = None
    for header in cookie_headers:
        for pair in header.split(";"):
            key, eq, value = pair.partition("=")
            if eq and key.strip(SEPARATORS) == name:
                if found is not None:
                    return None
                found = value.strip(SEPARATORS).strip('"')
    return found or None
