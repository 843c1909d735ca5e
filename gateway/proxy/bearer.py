"""Bearer authentication on proxied routes: extract → verify → revocation → policy → Principal."""

from __future__ import annotations

from typing import Protocol

from multidict import CIMultiDictProxy

from gateway.errors import (
    AuthenticationRequired,
    InsufficientScope,
    InvalidToken,
    MalformedAuthorization,
)
from gateway.proxy.routing import Route
from gateway.tokens.verifier import Principal, TokenVerifier


class RevocationCheck(Protocol):
    def check(self, principal: Principal) -> None:
        """Raise InvalidToken(reason="revoked") when the principal's token is revoked."""


def bearer_token(headers: CIMultiDictProxy[str]) -> str | None:
    """The bearer token from Authorization, None when there is none; raises on malformed input."""
    values = headers.getall("Authorization", [])
    if not values:
        return None
    if len(values) > 1:
        raise MalformedAuthorization("more than one Authorization header")
    scheme, _, credentials = values[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        return None  # another scheme is no bearer credential: RFC 6750 plain challenge
    token = credentials.strip()
    if not token:
        raise InvalidToken("empty bearer token", reason="malformed")
    # Its syntax is checked by the verifier (compact JWS, base64url segments), stricter than
    # RFC 6750's b64token and skipped for a token already verified and cached.
    return token


class Authenticator:
    """Applies a route's policy to a request's headers; returns the Principal or raises."""

    def __init__(self, verifier: TokenVerifier, revocations: RevocationCheck):
        self._verifier = verifier
        self._revocations = revocations

    def authenticate(self, headers: CIMultiDictProxy[str], route: Route) -> Principal | None:
        if route.policy == "public":
            return None
        token = bearer_token(headers)
        if token is None:
            if route.policy == "optional":
                return None
            raise AuthenticationRequired()
        # An invalid token is refused even on an optional route: silently downgrading to
        # anonymous would hide an expired session from the client.
        principal = self.principal_for(token)
        if route.roles and not route.roles.issubset(principal.roles):
            raise InsufficientScope("a required role is missing")
        if route.scopes and not route.scopes.issubset(principal.scopes):
            raise InsufficientScope("a required scope is missing")
        return principal

    def principal_for(self, token: str) -> Principal:
        """Verified, unrevoked Principal for a bearer token (also used by /auth endpoints)."""
        principal = self._verifier.verify(token)
        self._revocations.check(principal)
        return principal
