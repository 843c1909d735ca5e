"""Admission: the decision whether a request may reach its route's upstream, and as whom.
normalize → route (host, longest prefix, method) → credential (browser cookies where the
route takes them, else the bearer token) → the route's access policy (deny, roles/scopes,
allow, expr; gateway.policy) → its rate limits. The proxy endpoint admits and then
forwards; anything else that must decide the same way (a decision for an ingress) calls the
same `admit`, on a request that describes the original one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.edge import Exchange
from gateway.edge.request_view import RequestView
from gateway.errors import NotFound
from gateway.proxy.route_policy import bearer_principal, issuer_principal
from gateway.proxy.routing import Route, RouteTable
from gateway.tokens.bearer import Authenticator
from gateway.tokens.route_issuers import RouteIssuers
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
        issuers: RouteIssuers | None = None,
    ):
        self._routes = routes
        self._authenticator = authenticator
        self._cookies = cookies  # browser sessions, when enabled (gateway.browser.gate)
        self._issuers = issuers  # routes that take providers' tokens (`routes[].accept`)

    async def admit(self, request: RequestView, exchange: Exchange) -> Admitted:
        """The request's route, forwarded path and principal; records them on `exchange`.
        Raises NotFound, the credential's refusal (401), the policy's (403) or a rate
        limit's (429)."""
        method, host = request.method, request.host
        routes = self._routes
        route, path = routes.resolve(routes.normalize(request.rel_url.raw_path), method, host)
        if route is None or route.blocked:
            raise NotFound("no route for this path")
        exchange.route = route.name
        cookies = self._cookies
        if cookies is not None and cookies.accepts(route, request.headers):
            principal = await cookies.authenticate(request, route, exchange)
        elif route.issuers is None:  # the gateway's own tokens only: no await
            principal = bearer_principal(self._authenticator, request.headers, route)
        elif self._issuers is not None:
            principal = await issuer_principal(self._issuers, request.headers, route)
        else:  # fail closed: a route naming providers is never judged as a gateway-only one
            raise NotFound("no route for this path")
        exchange.principal = principal
        access = route.access
        if access is not None:
            access.check(principal, method, host, path)
        limits = route.limits
        if limits is not None:
            limits.take(principal, request)
        return Admitted(route, path, principal)
