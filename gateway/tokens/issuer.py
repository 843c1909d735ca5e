"""TokenIssuer signs access tokens: RFC 9068 JWTs (header `typ: at+jwt`, `kid`) with PyJWT."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.store import Session
from gateway.tokens.keys import KeyRing
from gateway.tokens.verifier import RESERVED_CLAIMS
from gateway.typedefs import Clock


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: str
    iat: int
    exp: int


class TokenIssuer:
    """Signs access tokens with the active key (header `typ: at+jwt`, `kid`)."""

    def __init__(
        self, keyring: KeyRing, *, issuer: str, audience: str, access_ttl: float, clock: Clock
    ):
        if keyring.active is None:
            raise ValueError("no active signing key configured")
        self._key = keyring.active
        self._issuer = issuer
        self._audience = audience
        self._ttl = int(access_ttl)
        self._clock = clock

    def issue(
        self,
        *,
        sub: str,
        sid: str,
        roles: Sequence[str] = (),
        scope: str | None = None,
        auth_time: float | None = None,
        client_id: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        ttl: float | None = None,
    ) -> IssuedToken:
        now = int(self._clock())
        exp = now + int(ttl if ttl is not None else self._ttl)
        jti = secrets.token_urlsafe(16)
        claims: dict[str, Any] = {
            k: v for k, v in (extra_claims or {}).items() if k not in RESERVED_CLAIMS
        }
        claims.update(
            iss=self._issuer,
            aud=self._audience,
            sub=sub,
            iat=now,
            nbf=now,
            exp=exp,
            jti=jti,
            sid=sid,
            roles=list(roles),
            auth_time=int(auth_time if auth_time is not None else now),
        )
        if scope:
            claims["scope"] = scope
        if client_id:
            claims["client_id"] = client_id
        headers = {"kid": self._key.kid, "typ": "at+jwt"}
        assert self._key.sign_key is not None  # KeyRing refuses an active key without one
        token = jwt.encode(claims, self._key.sign_key, algorithm=self._key.alg, headers=headers)
        return IssuedToken(token=token, jti=jti, iat=now, exp=exp)

    def id_token(
        self,
        *,
        sub: str,
        client_id: str,
        auth_time: float,
        nonce: str | None = None,
        sid: str | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """An OpenID Connect ID token for `client_id` (header `typ: JWT`, never `at+jwt`:
        the verifier refuses it as an access token), with the `nonce` the client sent."""
        now = int(self._clock())
        body: dict[str, Any] = {
            k: v for k, v in (claims or {}).items() if k not in RESERVED_CLAIMS and k != "nonce"
        }
        body.update(
            iss=self._issuer,
            sub=sub,
            aud=client_id,
            azp=client_id,
            iat=now,
            exp=now + self._ttl,
            auth_time=int(auth_time),
        )
        if nonce:
            body["nonce"] = nonce
        if sid:
            body["sid"] = sid
        headers = {"kid": self._key.kid, "typ": "JWT"}
        assert self._key.sign_key is not None
        return jwt.encode(body, self._key.sign_key, algorithm=self._key.alg, headers=headers)

    def for_session(self, session: Session) -> IssuedToken:
        """An access token for a live session: its user, roles, scope and claims."""
        return self.issue(
            sub=session.sub,
            sid=session.sid,
            roles=session.roles,
            scope=session.scope,
            auth_time=session.created_at,
            client_id=session.client_id,
            extra_claims=session.extra_claims,
        )
