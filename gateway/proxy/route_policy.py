"""A route's policy applied to a request's credential: `public`, `optional` or `required`.
What the credential may then do there (roles and scopes, allow / deny rules, expressions)
is decided for bearer tokens and browser cookies alike by the route's AccessPolicy
(gateway.policy.access), in gateway.proxy.admission."""

from __future__ import annotations

from multidict import CIMultiDictProxy

from gateway.errors import AuthenticationRequired
from gateway.proxy.routing import Route
from gateway.tokens.bearer import Authenticator, bearer_token
from gateway.tokens.route_issuers import RouteIssuers
from gateway.tokens.verifier import Principal


def bearer_principal(
    authenticator: Authenticator, headers: CIMultiDictProxy[str], route: Route
) -> Principal | None:
    """The route's policy applied to the Authorization header: the Principal, None where the
    route lets an anonymous request through, or the refusal."""
    if route.policy == "public":
        return None
    token = bearer_token(headers)
    if token is None:
        if route.policy == "optional":
            return None
        raise AuthenticationRequired()
    # An invalid token is refused even on an optional route: silently downgrading to
    # anonymous would hide an expired session from the client.
    return authenticator.principal_for(token)


async def issuer_principal(
    issuers: RouteIssuers, headers: CIMultiDictProxy[str], route: Route
) -> Principal | None:
    """As bearer_principal, for a route that takes the tokens of the issuers it lists
    (`routes[].accept`): providers' tokens are verified on the asynchronous path."""
    assert route.issuers is not None
    if route.policy == "public":
        return None
    token = bearer_token(headers)
    if token is None:
        if route.policy == "optional":
            return None
        raise AuthenticationRequired()
    return await issuers.principal_for(token, route.issuers)
