"""Admission: the decision whether a request may reach its route's upstream, and as whom.
normalize → route (longest prefix) → credential (browser cookies where the route takes them,
else the bearer token) → the route's policy. The proxy endpoint admits and then forwards;
anything else that must decide the same way (a decision for an ingress) calls the same
`admit`, on a request that describes the original one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.edge import Exchange
from gateway.errors import NotFound
from gateway.proxy.route_policy import bearer_principal
from gateway.proxy.routing import Route, RouteTable
from gateway.tokens.bearer import Authenticator
from gateway.tokens.verifier import Principal

if TYPE_CHECKING:
    from gateway.browser.gate import CookieGate


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request its route's policy lets through: the route, the path to forward, and who
    (None on a public route, or an optional one without a credential)."""

    route: Route
    path: str
    principal: Principal | None


class Admission:
    """Decides requests for the proxied routes; a refusal raises (never reaches upstream)."""

    def __init__(
        self,
        routes: RouteTable,
        authenticator: Authenticator,
        cookies: CookieGate | None = None,
    ):
        self._routes = routes
        self._authenticator = authenticator
        self._cookies = cookies  # browser sessions, when enabled (gateway.browser.gate)

    async def admit(self, request: web.Request, exchange: Exchange) -> Admitted:
        """The request's route, forwarded path and principal; records them on `exchange`.
        Raises NotFound, the credential's refusal (401), or the policy's (403)."""
        route, path = self._routes.resolve(self._routes.normalize(request.rel_url.raw_path))
        if route is None or route.blocked:
            raise NotFound("no route for this path")
        exchange.route = route.name
        cookies = self._cookies
        if cookies is not None and cookies.accepts(route, request.headers):
            principal = await cookies.authenticate(request, route, exchange)
        else:
            principal = bearer_principal(self._authenticator, request.headers, route)
        exchange.principal = principal
        return Admitted(route, path, principal)
