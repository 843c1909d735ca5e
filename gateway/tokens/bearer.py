"""Bearer credentials (RFC 6750): the token from the Authorization header, verified and
checked against the revocation view; who the caller of a gateway endpoint is."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.appkeys import COOKIE_PRINCIPAL
from gateway.errors import AuthenticationRequired, InvalidToken, MalformedAuthorization
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
    """Who a bearer token speaks for: verified (cached by the verifier), then not revoked."""

    def __init__(self, verifier: TokenVerifier, revocations: RevocationCheck):
        self._verifier = verifier
        self._revocations = revocations

    def principal_for(self, token: str) -> Principal:
        """Verified, unrevoked Principal for a bearer token; InvalidToken otherwise."""
        principal = self._verifier.verify(token)
        self._revocations.check(principal)
        return principal

    def caller(self, request: web.Request) -> Principal | None:
        """The caller of a gateway endpoint: its bearer token's Principal when it sent one,
        else who its browser cookies speak for where the browser plane accepts them
        (request[COOKIE_PRINCIPAL]), else None."""
        presented = bearer_token(request.headers)
        if presented is None:
            return request.get(COOKIE_PRINCIPAL)
        return self.principal_for(presented)

    def required_caller(self, request: web.Request) -> Principal:
        """The caller's Principal; 401 without a credential."""
        principal = self.caller(request)
        if principal is None:
            raise AuthenticationRequired()
        return principal
