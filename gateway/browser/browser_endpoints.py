"""/auth/browser/*: sign in and out with cookies, the session, explicit refresh, your devices.

No answer ever carries a token in its body: the tokens travel only in the HttpOnly cookies.
Every state-changing request passes the CSRF check first (the login form too: login CSRF
would sign a victim into the attacker's account). Redis unavailable is 503 with Retry-After
and leaves the cookies as they were.
"""

from __future__ import annotations

import contextlib
import functools
import html
import logging
from collections.abc import Sequence
from typing import Any, Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from gateway.appkeys import COOKIE_PRINCIPAL, EXCHANGE
from gateway.authserver.revoker import Revoker
from gateway.authserver.token_service import Device, TokenPair
from gateway.browser.gate import CookieGate, Resolved
from gateway.browser.html_pages import (
    devices_page,
    login_page,
    page,
    sign_in_failed_page,
    stylesheet_handler,
)
from gateway.browser.login_kinds import LoginKind, choose, device_name_from
from gateway.browser.navigation import LOGIN_PATH, safe_return_to
from gateway.browser.provider_login import CALLBACK_PATH, ProviderSignIn, serves_pages
from gateway.browser.seal import ACCESS, REFRESH
from gateway.edge import NO_STORE, add_cookies
from gateway.edge.bodies import BodyReader
from gateway.edge.own_routes import own_routes, post_only
from gateway.edge.params import FORM, read_params
from gateway.errors import (
    AuthenticationRequired,
    BadCredentials,
    GatewayError,
    InvalidRequest,
    InvalidToken,
    NotFound,
    RateLimited,
    ServiceFault,
)
from gateway.observability.metrics import Metrics
from gateway.store import parse_refresh_token
from gateway.tokens.verifier import Principal, TokenVerifier
from gateway.typedefs import Clock

log = logging.getLogger("gateway.browser")

DEVICES_PATH: Final = "/auth/browser/devices"
_FORM_MESSAGES: Final[dict[type[GatewayError], str]] = {
    BadCredentials: "Invalid username or password.",
    RateLimited: "Too many sign-in attempts. Wait a moment and try again.",
    InvalidRequest: "Enter your username and password.",
}


async def _login_page_not_served(_request: web.Request) -> web.Response:
    raise NotFound("the login page is not served here (browser.login_page: false)")


def _is_form(request: web.Request) -> bool:
    """A form submitted by a page (answered with a redirect), not a script's JSON call."""
    return request.content_type == FORM or request.headers.get("Sec-Fetch-Mode") == "navigate"


def _onward_page(location: str) -> str:
    escaped = html.escape(location, quote=True)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0;url={escaped}"><title>Signed in</title></head>'
        f'<body><p><a href="{escaped}">Continue</a></p></body></html>'
    )


def _see_other(location: str, cookies: Sequence[str]) -> web.Response:
    response = web.Response(status=303, headers={"Location": location, **NO_STORE})
    add_cookies(response.headers, cookies)
    return response


def _identity(
    principal_sub: str, roles: Sequence[str], sid: str, session_end: float, access_exp: float
) -> dict[str, Any]:
    return {
        "sub": principal_sub,
        "roles": list(roles),
        "session_id": sid,
        "session_expires_at": int(session_end),
        "access_expires_at": int(access_exp),
    }


class BrowserEndpoints:
    """The handlers of /auth/browser/*, over the cookie gate and the token service."""

    def __init__(
        self,
        *,
        gate: CookieGate,
        kinds: Sequence[LoginKind],
        revoker: Revoker,
        verifier: TokenVerifier,
        bodies: BodyReader,
        metrics: Metrics,
        clock: Clock,
        login_page: bool = True,
        providers: ProviderSignIn | None = None,
        password_login: bool = True,
        strict_same_site: bool = False,
    ):
        self._gate = gate
        self._providers = providers
        self._password_login = password_login
        self._strict = strict_same_site
        self._kinds = kinds
        self._revoker = revoker
        self._verifier = verifier
        self._logins = metrics.logins
        self._bodies = bodies
        self._clock = clock
        self._serves_login_page = login_page

    def routes(self) -> list[web.RouteDef]:
        """/auth/browser/* (SPEC §9) and the sign-out forms of the devices page."""
        table = own_routes(
            ("POST", "/auth/browser/login", self.login),
            ("GET", "/auth/browser/session", self.session),
            ("GET", DEVICES_PATH, self.devices),
            ("GET", "/auth/browser/assets/browser.css", stylesheet_handler),
        )
        login_page = self.login_page if self._serves_login_page else _login_page_not_served
        table += own_routes(("GET", LOGIN_PATH, login_page))  # never the proxy's catch-all
        if self._providers is not None:  # sign-in at identity providers (SPEC §12)
            table += self._providers.routes()
            table += own_routes(("GET", CALLBACK_PATH, self.provider_callback))
        return table + post_only(
            ("/auth/browser/logout", self.logout),
            ("/auth/browser/refresh", self.refresh),
            (DEVICES_PATH + "/signout", self.sign_out_device),
            (DEVICES_PATH + "/signout-all", self.sign_out_everywhere),
        )

    def with_cookies(self, routes: list[web.RouteDef]) -> list[web.RouteDef]:
        """The token service's routes, where they also take a browser's cookies: refresh by
        the refresh cookie, the sessions endpoints by the session's cookies."""
        wrapped = []
        for route in routes:
            handler = route.handler
            if route.path in ("/auth/refresh", "/refresh") and route.method == "POST":
                handler = self.refresh_by_cookie(handler)
            elif route.path.startswith("/auth/sessions"):
                handler = self.accepting_cookies(handler)
            wrapped.append(web.RouteDef(route.method, route.path, handler, route.kwargs))
        return wrapped

    # -- signing in and out ----------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.Response:
        """GET /auth/browser/login: the sign-in form (return_to kept, if it is ours)."""
        return page(self._login_page(safe_return_to(request.query.get("return_to"))))

    async def login(self, request: web.Request) -> web.StreamResponse:
        """POST /auth/browser/login: form → 303 to return_to; JSON → 200 with the identity."""
        self._gate.cross_site.check(request)  # login CSRF
        form = _is_form(request)
        params = await read_params(self._bodies, request)
        raw_return = params.get("return_to")
        return_to = safe_return_to(raw_return if isinstance(raw_return, str) else None)
        name = params.get("device_name")
        device = Device.from_request(
            request,
            device_name=name[:128]
            if isinstance(name, str) and name.isprintable() and name
            else device_name_from(request.headers.get(hdrs.USER_AGENT)),
        )
        try:
            pair = await choose(self._kinds, params).open_session(params, device)
        except GatewayError as exc:
            self._logins.labels(getattr(exc, "reason", exc.code)).inc()
            message = _FORM_MESSAGES.get(type(exc))
            if not form or message is None:
                raise
            username = params.get("username")
            shown = username if isinstance(username, str) and len(username) <= 256 else ""
            response = page(
                self._login_page(return_to, username=shown, message=message), status=exc.status
            )
            response.headers.update(exc.headers())
            return response
        self._logins.labels("success").inc()
        await self._end_previous(request, pair)
        cookies = self._session_cookies(pair)
        if form:
            return _see_other(return_to, cookies)
        session = pair.session
        body = _identity(
            session.sub, session.roles, session.sid, session.expires_at, pair.access.exp
        )
        response = web.json_response(body, headers=NO_STORE)
        add_cookies(response.headers, cookies)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """POST /auth/browser/logout: the session ends everywhere; both cookies cleared. A
        form post of a session from an identity provider goes on to the provider's logout."""
        self._gate.cross_site.check(request)
        for sid in await self._sessions_named(request):
            await self._revoker.end_session(sid)
        cleared = self._cleared()
        if _is_form(request):
            provider_logout = None
            if self._providers is not None:
                provider_logout = await self._providers.logout_location(request)
            return _see_other(provider_logout or LOGIN_PATH, cleared)
        response = web.Response(status=204, headers=NO_STORE)
        add_cookies(response.headers, cleared)
        return response

    # -- the session -----------------------------------------------------------------------

    async def session(self, request: web.Request) -> web.StreamResponse:
        """GET /auth/browser/session: who the cookies speak for (refreshing when needed)."""
        resolved = await self._signed_in(request, pages=False)
        principal = resolved.principal
        session = await self._revoker.get_session(principal.sid)
        if session is None:
            raise self._gate.ended(request, InvalidToken("the session has ended", reason="ended"))
        body = _identity(
            principal.sub, principal.roles, principal.sid, session.expires_at, principal.exp
        )
        response = web.json_response(body, headers=NO_STORE)
        if resolved.cookies:
            add_cookies(response.headers, resolved.cookies)
        return response

    async def refresh(self, request: web.Request) -> web.StreamResponse:
        """POST /auth/browser/refresh: rotate the refresh cookie, new access cookie; 204."""
        self._gate.cross_site.check(request)
        presented = self._gate.presented(request)
        if presented.duplicated or presented.refresh is None:
            if not presented.any:
                raise AuthenticationRequired("no browser session")
            error = InvalidToken("the session has ended; sign in again", reason="no_refresh_cookie")
            raise self._gate.ended(request, error)
        opened = self._gate.seal.open(presented.refresh, REFRESH)
        try:
            if opened is None:
                raise InvalidToken(
                    "the session has ended; sign in again", reason="refresh_unreadable"
                )
            refreshed = await self._gate.sessions.rotate(opened.value)
        except InvalidToken as exc:
            raise self._gate.ended(request, exc) from None
        assert refreshed.refresh_token is not None
        self._record(request, None)
        response = web.Response(status=204, headers=NO_STORE)
        add_cookies(
            response.headers,
            (
                self._gate.access_cookie(refreshed),
                self._gate.refresh_cookie(refreshed.refresh_token, refreshed),
            ),
        )
        return response

    # -- your devices ----------------------------------------------------------------------

    async def devices(self, request: web.Request) -> web.StreamResponse:
        """GET /auth/browser/devices: the user's sessions, each with a sign-out button."""
        resolved = await self._signed_in(request, pages=True)
        principal = resolved.principal
        sessions = await self._revoker.sessions_of(principal.sub)
        response = page(devices_page(principal.sub, sessions, principal.sid))
        if resolved.cookies:
            add_cookies(response.headers, resolved.cookies)
        return response

    async def sign_out_device(self, request: web.Request) -> web.StreamResponse:
        """POST /auth/browser/devices/signout (form `sid`): end one of the user's sessions."""
        self._gate.cross_site.check(request)
        resolved = await self._signed_in(request, pages=True)
        principal = resolved.principal
        params = await read_params(self._bodies, request)
        sid = params.get("sid")
        session = await self._revoker.get_session(sid) if isinstance(sid, str) else None
        if session is None or session.sub != principal.sub:
            raise NotFound("no such session")
        await self._revoker.end_session(session.sid)
        if session.sid == principal.sid:
            return _see_other(LOGIN_PATH, self._cleared())
        return _see_other(DEVICES_PATH, resolved.cookies)

    async def sign_out_everywhere(self, request: web.Request) -> web.StreamResponse:
        """POST /auth/browser/devices/signout-all: end every session of the user."""
        self._gate.cross_site.check(request)
        principal = (await self._signed_in(request, pages=True)).principal
        sids = {session.sid for session in await self._revoker.sessions_of(principal.sub)}
        for sid in sids | {principal.sid}:
            await self._revoker.end_session(sid)
        return _see_other(LOGIN_PATH, self._cleared())

    # -- sign-in at an identity provider -----------------------------------------------------

    async def provider_callback(self, request: web.Request) -> web.StreamResponse:
        """GET /auth/browser/callback/{provider}: the provider sends the browser back; a
        session as for a password login, then on to return_to (gateway.browser.provider_login)."""
        assert self._providers is not None
        callback = await self._providers.callback(request)
        if callback.signed_in is None:  # a silent attempt that needs the user: the login page
            return _see_other(callback.location, callback.cookies)
        pair = callback.signed_in.pair
        self._logins.labels("success").inc()
        await self._end_previous(request, pair)
        cookies = (*self._session_cookies(pair), *callback.cookies)
        if not self._strict:
            return _see_other(callback.location, cookies)
        # SameSite=Strict cookies are withheld on a redirect chain that a provider (another
        # site) started: the browser moves on from a page of ours instead.
        response = page(_onward_page(callback.location))
        add_cookies(response.headers, cookies)
        return response

    def render_error(self, request: web.Request, error: GatewayError) -> web.Response | None:
        """The page for an error of a provider sign-in (a browser is looking); None for the
        JSON body everywhere else."""
        if error.status < 400 or not serves_pages(request.path):
            return None
        response = page(
            sign_in_failed_page(error.description, retry=error.status >= 500),
            status=error.status,
        )
        response.headers.update(error.headers())
        if error.cookies:
            add_cookies(response.headers, error.cookies)
        return response

    # -- the cookie on the token service's own endpoints -----------------------------------

    def accepting_cookies(self, handler: Handler) -> Handler:
        """`handler` (reading the caller with authserver.params.required_principal) also for
        a browser's cookies, when no Authorization header is sent; CSRF-checked."""

        @functools.wraps(handler)
        async def with_cookies(request: web.Request) -> web.StreamResponse:
            if hdrs.AUTHORIZATION in request.headers or not self._gate.presented(request).any:
                return await handler(request)
            self._gate.cross_site.check(request)
            resolved = await self._signed_in(request, pages=False)
            request[COOKIE_PRINCIPAL] = resolved.principal
            response = await handler(request)
            if resolved.cookies and not response.prepared:
                add_cookies(response.headers, resolved.cookies)
            return response

        return with_cookies

    def refresh_by_cookie(self, handler: Handler) -> Handler:
        """POST /auth/refresh: without a body, a browser's refresh cookie is refreshed as by
        POST /auth/browser/refresh (new cookies, 204), never into a token in a body."""

        @functools.wraps(handler)
        async def refresh(request: web.Request) -> web.StreamResponse:
            if request.body_exists or self._gate.presented(request).refresh is None:
                return await handler(request)
            return await self.refresh(request)

        return refresh

    # -- helpers -----------------------------------------------------------------------------

    def _login_page(self, return_to: str, **shown: Any) -> str:
        buttons = self._providers.buttons() if self._providers is not None else []
        return login_page(return_to, providers=buttons, password=self._password_login, **shown)

    def _cleared(self) -> tuple[str, ...]:
        """Both session cookies, and the provider cookie (no silent re-login after this)."""
        cleared = self._gate.format.cleared()
        if self._providers is None:
            return cleared
        return (*cleared, *self._providers.cleared())

    async def _signed_in(self, request: web.Request, *, pages: bool) -> Resolved:
        """The cookies' principal (refreshed when needed); a page without a session sends
        the browser to sign in, an API call gets 401."""
        presented = self._gate.presented(request)
        if not presented.any:
            if pages:
                raise self._gate.login_required(request)
            raise AuthenticationRequired("no browser session")
        try:
            resolved = await self._gate.resolve(presented)
        except InvalidToken as exc:
            raise self._gate.ended(request, exc) from None
        self._record(request, resolved.principal)
        return resolved

    @staticmethod
    def _record(request: web.Request, principal: Principal | None) -> None:
        """For the access line: authenticated by cookie, and as whom when known."""
        exchange = request[EXCHANGE]
        exchange.auth_method = "cookie"
        if principal is not None:
            exchange.principal = principal

    def _session_cookies(self, pair: TokenPair) -> tuple[str, str]:
        now = self._clock()
        gate = self._gate
        return (
            gate.format.access(gate.seal.seal(pair.access.token, ACCESS), pair.access.exp - now),
            gate.format.refresh(
                gate.seal.seal(pair.refresh_token, REFRESH), pair.session.expires_at - now
            ),
        )

    async def _sessions_named(self, request: web.Request) -> set[str]:
        """The sessions this browser's cookies prove it holds (an expired access token still
        names its session; a refresh cookie must be live for its session)."""
        presented = self._gate.presented(request)
        sids: set[str] = set()
        if presented.duplicated:
            return sids
        if presented.access is not None:
            opened = self._gate.seal.open(presented.access, ACCESS)
            if opened is not None:
                with contextlib.suppress(InvalidToken):  # not ours, or forged: names nothing
                    sids.add(self._verifier.inspect(opened.value).sid)
        if presented.refresh is not None:
            opened = self._gate.seal.open(presented.refresh, REFRESH)
            if opened is not None and parse_refresh_token(opened.value) is not None:
                with contextlib.suppress(InvalidToken):  # not live: nothing to end
                    sids.add((await self._gate.sessions.live_session(opened.value)).sid)
        return sids

    async def _end_previous(self, request: web.Request, pair: TokenPair) -> None:
        """Signing in again in the same browser replaces its previous session (best effort:
        the new session exists already, and an old one left over ends with its lifetime)."""
        try:
            for sid in await self._sessions_named(request):
                if sid != pair.session.sid:
                    await self._revoker.end_session(sid)
        except ServiceFault:
            log.warning("previous browser session not ended (store unavailable)")
