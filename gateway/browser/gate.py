"""The cookie credential: which requests it applies to and who they are.

Precedence: an Authorization header decides alone (gateway.tokens.bearer); only
without one do the cookies count, on routes that accept them. Then: the CSRF check, the
access cookie through the same verifier, cache and revocation view as a bearer token (no
Redis I/O), and only when it is missing or unusable the refresh cookie (one store call,
gateway.browser.refresh). Definitive failures clear both cookies and answer 401, or send a
navigation to the login page; transient ones (Redis down, stale revocation view) answer 503
with Retry-After and leave the cookies alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from aiohttp import hdrs
from multidict import CIMultiDictProxy

from gateway.browser.cookies import CookieFormat, PresentedCookies, read_cookies
from gateway.browser.cross_site import CrossSiteCheck, CsrfRule
from gateway.browser.navigation import is_navigation, login_location
from gateway.browser.refresh import BrowserSessions, Refreshed, session_ended
from gateway.browser.seal import ACCESS, REFRESH, CookieSeal
from gateway.config import BrowserSettings, RouteSettings
from gateway.edge import Exchange
from gateway.edge.request_view import RequestView
from gateway.errors import (
    AuthenticationRequired,
    ClientFault,
    InvalidToken,
    LoginRedirect,
)
from gateway.observability.metrics import Metrics
from gateway.proxy.routing import Route
from gateway.proxy.websocket import is_websocket_upgrade
from gateway.tokens.bearer import Authenticator
from gateway.tokens.verifier import Principal
from gateway.typedefs import Clock

PRESENTED_CACHE_SIZE: Final = 4096
LoginLocator = Callable[[RequestView], str]  # where a navigation without a session goes


@dataclass(frozen=True, slots=True)
class Resolved:
    """Who the cookies speak for, and the cookies to set on the answer."""

    principal: Principal
    cookies: tuple[str, ...] = ()
    refreshed: Refreshed | None = None  # set when the refresh cookie was used


def cookie_routes(routes: Iterable[RouteSettings], *, enabled: bool) -> dict[str, CsrfRule]:
    """Route name → its CSRF rule, for every protected route that accepts the cookies."""
    if not enabled:
        return {}
    return {
        r.route_name: CsrfRule(header=r.csrf_header, all_methods=r.csrf_all_methods)
        for r in routes
        if r.policy != "public"
        and (r.browser if r.browser is not None else True)
        and "gateway" in r.accept  # the cookies hold the gateway's own tokens
    }


class CookieGate:
    """The cookie branch of authentication, for the proxy and the /auth/browser endpoints."""

    def __init__(
        self,
        settings: BrowserSettings,
        *,
        routes: dict[str, CsrfRule],
        seal: CookieSeal,
        cookie_format: CookieFormat,
        authenticator: Authenticator,
        sessions: BrowserSessions,
        cross_site: CrossSiteCheck,
        metrics: Metrics,
        clock: Clock,
        login_locator: LoginLocator = login_location,
    ):
        self._routes = routes
        self._login_location = login_locator  # the login page, or a provider (silent re-login)
        self._access_name = settings.access_cookie
        self._refresh_name = settings.refresh_cookie
        self._redirect = settings.unauthenticated == "redirect"
        self.seal = seal
        self.format = cookie_format
        self._authenticator = authenticator
        self.sessions = sessions
        self.cross_site = cross_site
        self._rejections = metrics.auth_rejections
        self._clock = clock
        self._presented: dict[str, PresentedCookies] = {}

    # -- the proxy's branch ------------------------------------------------------------------

    def accepts(self, route: Route, headers: CIMultiDictProxy[str]) -> bool:
        """Whether this request's credential is the cookies: a route that accepts them and
        no Authorization header (which always decides alone)."""
        return route.name in self._routes and hdrs.AUTHORIZATION not in headers

    async def authenticate(
        self, request: RequestView, route: Route, exchange: Exchange
    ) -> Principal | None:
        """The route's policy applied to the cookies; sets what the answer must carry."""
        presented = self.presented(request)
        if not presented.any:
            if route.policy == "optional":
                return None
            raise self.login_required(request)
        if is_websocket_upgrade(request):
            self.cross_site.check_websocket(request)
        else:
            self.cross_site.check(request, self._routes[route.name])
        exchange.auth_method = "cookie"
        try:
            # a valid access cookie (nearly every request) needs no await
            resolved = self.resolve_at_once(presented) or await self.resolve(presented)
        except InvalidToken as exc:
            if route.policy != "optional":
                raise self.ended(request, exc) from None
            exchange.set_cookies = self.format.cleared()  # served anonymously, cookies gone
            return None
        exchange.set_cookies = resolved.cookies
        return resolved.principal  # the route's rules decide next (gateway.proxy.admission)

    # -- shared with the endpoints ---------------------------------------------------------

    def presented(self, request: RequestView) -> PresentedCookies:
        values = request.headers.getall(hdrs.COOKIE, ())
        if len(values) != 1:
            return read_cookies(values, self._access_name, self._refresh_name)
        # A browser sends the same Cookie header until a cookie changes: what it presents is
        # remembered (bounded: the values are client-chosen).
        presented = self._presented.get(values[0])
        if presented is None:
            presented = read_cookies(values, self._access_name, self._refresh_name)
            if len(self._presented) >= PRESENTED_CACHE_SIZE:
                self._presented.clear()
            self._presented[values[0]] = presented
        return presented

    def resolve_at_once(self, presented: PresentedCookies) -> Resolved | None:
        """The principal of a valid access cookie; None when `resolve` has to decide (no
        access cookie, or one that cannot be used)."""
        if presented.access is None or presented.duplicated:
            return None
        opened = self.seal.open(presented.access, ACCESS)
        if opened is None:
            return None
        try:
            return Resolved(self._authenticator.principal_for(opened.value))
        except InvalidToken:
            return None

    async def resolve(self, presented: PresentedCookies) -> Resolved:
        """The principal the cookies carry, refreshing when the access cookie cannot be used.

        Raises InvalidToken when the cookies will never work again, a ServiceFault (with
        Retry-After) when the answer has to wait for Redis."""
        if presented.duplicated:
            raise session_ended("duplicate_cookie")  # never pick one of two
        refused: InvalidToken | None = None
        if presented.access is not None:
            opened = self.seal.open(presented.access, ACCESS)
            if opened is None:
                refused = InvalidToken("the access cookie is not valid", reason="unreadable")
            else:
                try:
                    return Resolved(self._authenticator.principal_for(opened.value))
                except InvalidToken as exc:
                    refused = exc  # expired, revoked, forged: the refresh cookie decides
        if presented.refresh is None:
            raise refused or session_ended("no_refresh_cookie")
        opened_refresh = self.seal.open(presented.refresh, REFRESH)
        if opened_refresh is None:
            raise session_ended("refresh_unreadable")
        refreshed = await self.sessions.mint(opened_refresh.value)
        principal = self._authenticator.principal_for(refreshed.access.token)
        cookies = [self.access_cookie(refreshed)]
        if opened_refresh.stale_key:  # sealed under a retired key: seal it anew
            cookies.append(self.refresh_cookie(opened_refresh.value, refreshed))
        return Resolved(principal, tuple(cookies), refreshed)

    def access_cookie(self, refreshed: Refreshed) -> str:
        access = refreshed.access
        return self.format.access(self.seal.seal(access.token, ACCESS), access.exp - self._clock())

    def refresh_cookie(self, token: str, refreshed: Refreshed) -> str:
        """The refresh cookie lives as long as the session, never less."""
        lifetime = refreshed.session.expires_at - self._clock()
        return self.format.refresh(self.seal.seal(token, REFRESH), lifetime)

    def login_required(self, request: RequestView) -> ClientFault:
        """No session at all: navigations go to the login page, the rest get the JSON 401."""
        if self._redirect and is_navigation(request):
            return LoginRedirect(self._login_location(request))
        return AuthenticationRequired()

    def ended(self, request: RequestView, error: InvalidToken) -> ClientFault:
        """A definitive failure as the answer: both cookies cleared, then 401 or the login."""
        answer: ClientFault = error
        if self._redirect and is_navigation(request):
            self._rejections.labels(error.reason).inc()  # the observer sees only a redirect
            answer = LoginRedirect(self._login_location(request))
        answer.cookies = self.format.cleared()
        return answer
