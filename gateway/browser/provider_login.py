"""Signing browsers in at an organization's identity provider (OpenID Connect authorization
code flow with PKCE), the browser's side of it:

* `GET /auth/browser/login/{provider}?return_to=…` sends the browser to the provider's
  authorization endpoint with `state`, `nonce` and an S256 `code_challenge` (always), the
  attempt kept in a sealed cookie of its own (gateway.browser.login_attempts);
* `GET /auth/browser/callback/{provider}` checks the state against that cookie (constant
  time, once: a replayed callback is refused before anything else happens), shows the
  provider's `error=` answers as a page, and hands the code to the token service
  (gateway.authserver.federation.code_flow); BrowserEndpoints then sets the session cookies;
* silent re-login: a navigation without a usable session, from a browser that signed in at
  a provider before (the provider cookie), goes to that provider with `prompt=none` first;
  when the provider needs the user (`login_required`, …) the login page is shown;
* the provider's logout: /auth/browser/logout sends the browser to its
  `end_session_endpoint` with `id_token_hint` and `post_logout_redirect_uri`.

Nothing here logs a code, a token, the state, the nonce or the verifier.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlencode

from aiohttp import hdrs, web

from gateway.authserver.federation.code_flow import (
    CodeFlowLogin,
    CodeGrant,
    ProviderLogin,
    SignedIn,
)
from gateway.authserver.token_service import Device
from gateway.browser.login_attempts import (
    ATTEMPT_TTL,
    MAX_STATE,
    LoginAttempt,
    ProviderHint,
    SignInCookies,
)
from gateway.browser.login_kinds import device_name_from
from gateway.browser.navigation import LOGIN_PATH, login_location, safe_return_to
from gateway.edge import NO_STORE, add_cookies
from gateway.edge.own_routes import own_routes
from gateway.edge.request_view import RequestView
from gateway.errors import (
    GatewayError,
    NotFound,
    ProviderUnavailable,
    ServiceFault,
    SignInDenied,
    SignInFailed,
)
from gateway.store import OneTimeIds
from gateway.typedefs import Clock

log = logging.getLogger("gateway.browser")

START_PATH: Final = "/auth/browser/login/{provider}"
CALLBACK_PATH: Final = "/auth/browser/callback/{provider}"
PAGE_PREFIXES: Final = ("/auth/browser/login/", "/auth/browser/callback/")
# What a provider answers a `prompt=none` request that needs the user (Core §3.1.2.6): the
# silent attempt falls back to the login page.
NEEDS_THE_USER: Final = frozenset(
    {"login_required", "interaction_required", "consent_required", "account_selection_required"}
)
# The error codes of authorization responses (RFC 6749 §4.1.2.1, Core §3.1.2.6): counted by
# name; anything else a provider (or a forged callback) says is counted as "other".
KNOWN_ERRORS: Final = NEEDS_THE_USER | {
    "access_denied",
    "invalid_request",
    "unauthorized_client",
    "unsupported_response_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
    "invalid_request_uri",
    "invalid_request_object",
    "request_not_supported",
    "request_uri_not_supported",
    "registration_not_supported",
}
MAX_DESCRIPTION: Final = 300
STATE_SCOPE: Final = "login-state"
Recorder = Callable[[str, str, str], None]  # (provider, event, reason)


def _no_record(_provider: str, _event: str, _reason: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Callback:
    """Where a callback leaves the browser: signed in (then the session's cookies go with
    it), or, for a silent attempt the provider could not answer alone, at the login page."""

    location: str
    cookies: tuple[str, ...]
    signed_in: SignedIn | None


class ProviderSignIn:
    """The start and callback of provider sign-ins, silent re-login and provider logout."""

    def __init__(
        self,
        *,
        code_flow: CodeFlowLogin,
        cookies: SignInCookies,
        one_time: OneTimeIds,
        public_url: str,
        clock: Clock,
        record: Recorder = _no_record,
    ):
        self._flow = code_flow
        self._cookies = cookies
        self._one_time = one_time
        self._public_url = public_url.rstrip("/")
        self._clock = clock
        self._record = record

    def routes(self) -> list[web.RouteDef]:
        """The start of a sign-in; the callback is BrowserEndpoints' (it opens the session)."""
        return own_routes(("GET", START_PATH, self.start))

    def buttons(self) -> list[tuple[str, str]]:
        """(provider name, what the button says) for the login page, in configured order."""
        return [
            (name, login.settings.display_name or name) for name, login in self._flow.logins.items()
        ]

    def redirect_uri(self, provider: str) -> str:
        return f"{self._public_url}/auth/browser/callback/{provider}"

    # -- the start ---------------------------------------------------------------------------

    async def start(self, request: web.Request) -> web.Response:
        """GET /auth/browser/login/{provider}: 302 to the provider, the attempt in a cookie."""
        login = self._login(request)
        return_to = safe_return_to(request.query.get("return_to"))
        silent = request.query.get("prompt") == "none"
        metadata = await self._flow.metadata(login)
        if metadata.authorization_endpoint is None:
            raise ProviderUnavailable("the identity provider's discovery names no sign-in page")
        if metadata.code_challenge_methods is not None and "S256" not in (
            metadata.code_challenge_methods
        ):
            log.warning("provider %s does not announce S256 PKCE; sent anyway", login.name)
        attempt = LoginAttempt.new(login.name, return_to, silent=silent, now=self._clock())
        params = {
            "response_type": "code",
            "client_id": login.settings.client_id,
            "redirect_uri": self.redirect_uri(login.name),
            "scope": " ".join(login.settings.scopes),
            "state": attempt.state,
            "nonce": attempt.nonce,
            # SECURITY: PKCE always, whether or not the provider asks: a code intercepted on
            # its way back (a log, a referrer, a rogue app) is worthless without the
            # verifier, which never leaves the sealed cookie and the token request.
            "code_challenge": attempt.code_challenge,
            "code_challenge_method": "S256",
            **login.settings.extra_params,
        }
        if silent:
            params["prompt"] = "none"
        endpoint = metadata.authorization_endpoint
        location = endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)
        self._record(login.name, "silent_started" if silent else "started", "")
        headers = {"Location": location, **NO_STORE, "Referrer-Policy": "no-referrer"}
        response = web.Response(status=302, headers=headers)
        add_cookies(response.headers, (self._cookies.attempt_cookie(attempt),))
        return response

    # -- the callback ------------------------------------------------------------------------

    async def callback(self, request: web.Request) -> Callback:
        """The browser is back from the provider: a session, the login page (a silent
        attempt that needs the user) or an error (raised, with the attempt cookie cleared)."""
        login = self._login(request)
        state = request.query.get("state")
        cleared: tuple[str, ...] = ()
        try:
            if not state or len(state) > MAX_STATE:
                raise SignInFailed(
                    "the identity provider's answer carries no sign-in state", reason="no_state"
                )
            cleared = (self._cookies.attempt_cleared(state),)
            attempt = self._attempt(request, login, state)
            await self.claim_state(state, attempt.started_at)
            silent_fallback = self._provider_error(request, login, attempt)
            if silent_fallback is not None:
                return silent_fallback
            code = request.query.get("code")
            if not code or len(code) > 2048:
                raise SignInFailed("the identity provider sent no code", reason="no_code")
            signed_in = await self._flow.complete(
                CodeGrant(
                    provider=login.name,
                    code=code,
                    verifier=attempt.verifier,
                    nonce=attempt.nonce,
                    redirect_uri=self.redirect_uri(login.name),
                ),
                self._device(request),
            )
        except GatewayError as exc:
            self._record(login.name, "failed", getattr(exc, "reason", exc.code))
            exc.cookies = (*exc.cookies, *cleared)  # the attempt is over; the session stays
            raise
        self._record(login.name, "silent_completed" if attempt.silent else "completed", "")
        hint = ProviderHint(login.name, signed_in.id_token)
        cookies = (*cleared, self._cookies.provider_cookie(hint))
        return Callback(attempt.return_to, cookies, signed_in)

    def _attempt(self, request: web.Request, login: ProviderLogin, state: str) -> LoginAttempt:
        attempt = self._cookies.attempt(request.headers.getall(hdrs.COOKIE, ()), state)
        # SECURITY: the state must be the one this browser's own attempt holds (login CSRF:
        # an attacker's code, sent to a victim's browser, signs nobody in), compared in
        # constant time; the cookie is named after the state, so a forged or another
        # browser's state finds nothing here.
        if attempt is None:
            raise SignInFailed(
                "this sign-in was not started in this browser, or it was finished already",
                reason="no_login_cookie",
            )
        if not hmac.compare_digest(attempt.state.encode(), state.encode()) or (
            attempt.provider != login.name
        ):
            raise SignInFailed("the sign-in state does not match", reason="state_mismatch")
        if self._clock() - attempt.started_at > ATTEMPT_TTL:
            raise SignInFailed("the sign-in took too long; try again", reason="expired")
        return attempt

    async def claim_state(self, state: str, attempt_started: float) -> None:
        """The callback of one attempt is served once (a replay is refused untouched)."""
        until = attempt_started + ATTEMPT_TTL + 60
        if not await self._one_time.claim(STATE_SCOPE, state, until=until):
            raise SignInFailed("this sign-in link was used already", reason="state_reused")

    def _provider_error(
        self, request: web.Request, login: ProviderLogin, attempt: LoginAttempt
    ) -> Callback | None:
        error = request.query.get("error")
        if error is None:
            return None
        error = error if error.isascii() and error.isprintable() and len(error) <= 64 else "error"
        if attempt.silent and error in NEEDS_THE_USER:
            self._record(login.name, "silent_needs_user", error)
            location = f"{LOGIN_PATH}?return_to={quote(attempt.return_to, safe='')}"
            cookies = (
                self._cookies.attempt_cleared(attempt.state),
                self._cookies.provider_cleared(),
            )
            return Callback(location, cookies, None)
        description = request.query.get("error_description", "")
        shown = description[:MAX_DESCRIPTION] if description.isprintable() else ""
        name = login.settings.display_name or login.name
        message = f"{name} did not sign you in ({error})" + (f": {shown}" if shown else ".")
        counted = error if error in KNOWN_ERRORS else "other"
        raise SignInDenied(message, reason=f"provider_{counted}")

    # -- silent re-login and the provider's logout -----------------------------------------

    def login_location(self, request: RequestView) -> str:
        """Where a navigation without a session goes: the provider this browser signed in at
        (silently), or the login page."""
        hint = self._cookies.provider_hint(request.headers.getall(hdrs.COOKIE, ()))
        if hint is None or hint.provider not in self._flow.logins:
            return login_location(request)
        return_to = quote(safe_return_to(request.rel_url.raw_path_qs), safe="")
        return f"/auth/browser/login/{hint.provider}?return_to={return_to}&prompt=none"

    async def logout_location(self, request: web.Request) -> str | None:
        """The provider's end-session page for the provider this browser signed in at (RP-
        initiated logout), or None (no provider session, or the provider offers none)."""
        hint = self._cookies.provider_hint(request.headers.getall(hdrs.COOKIE, ()))
        login = self._flow.logins.get(hint.provider) if hint is not None else None
        if hint is None or login is None:
            return None
        try:
            metadata = await self._flow.metadata(login)
        except ServiceFault:
            return None  # signed out here all the same; the provider's page is a courtesy
        endpoint = metadata.end_session_endpoint
        if endpoint is None:
            return None
        params = {
            "client_id": login.settings.client_id,
            "post_logout_redirect_uri": f"{self._public_url}{LOGIN_PATH}",
        }
        if hint.id_token is not None:
            params["id_token_hint"] = hint.id_token
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    def cleared(self) -> tuple[str, ...]:
        """Signed out on purpose: no silent re-login from this browser."""
        return (self._cookies.provider_cleared(),)

    # -- helpers -----------------------------------------------------------------------------

    def _login(self, request: web.Request) -> ProviderLogin:
        login = self._flow.logins.get(request.match_info.get("provider", ""))
        if login is None:
            raise NotFound("no identity provider of that name signs browsers in here")
        return login

    @staticmethod
    def _device(request: web.Request) -> Device:
        return Device.from_request(
            request, device_name=device_name_from(request.headers.get(hdrs.USER_AGENT))
        )


def serves_pages(path: str, prefixes: Sequence[str] = PAGE_PREFIXES) -> bool:
    """Whether errors on this path are answered as pages (a browser is looking)."""
    return path.startswith(tuple(prefixes))
