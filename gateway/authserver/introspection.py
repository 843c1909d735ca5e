"""Token introspection (RFC 7662) for services that cannot verify the gateway's tokens.

Callers are the configured `introspection.clients`, authenticated with HTTP Basic against
`sha256:` hashes of their secrets (constant time, no early exit); wrong secrets are counted
per client address, and guessing is throttled (`introspection.failures_per_ip`). An access
token is judged by the same verifier and in-memory revocation view as a proxied request (no
Redis); a refresh token by one read-only lookup of its session, which never rotates it and
never counts as reuse. Anything not live is `{"active": false}`, without saying why. While the
revocation view is stale past its bound in fail mode `closed`, the answer is 503, never a
`true` that a revocation might contradict.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from gateway.authserver.client_auth import presented_client
from gateway.authserver.guessing import GuessThrottle
from gateway.config import IntrospectionClientSettings, RateLimit
from gateway.edge import NO_STORE
from gateway.edge.bodies import BodyReader
from gateway.edge.own_routes import own_routes
from gateway.edge.params import read_params, text_param
from gateway.errors import BasicClientRejected, InvalidToken, RateLimited, RevocationStale
from gateway.store import SessionStore, parse_refresh_token, refresh_token_hash
from gateway.tokens.bearer import Authenticator
from gateway.tokens.revocation_view import RevocationView
from gateway.tokens.verifier import Principal
from gateway.typedefs import Clock

INACTIVE: Final = {"active": False}
SECRET_PREFIX: Final = "gwis_"


def client_secret_hash(secret: str) -> str:
    """The configuration form of a client secret: `sha256:<hex>` (secrets are 256-bit)."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def new_client_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


class Introspection:
    """Authenticates introspection clients and judges tokens; see the module docstring."""

    def __init__(
        self,
        clients: Sequence[IntrospectionClientSettings],
        *,
        authenticator: Authenticator,
        sessions: SessionStore,
        view: RevocationView,
        issuer: str,
        audience: str,
        rate_limit: RateLimit,
        realm: str,
        bodies: BodyReader,
        clock: Clock,
        throttle: GuessThrottle | None = None,
        windows: dict[str, tuple[int, int]] | None = None,
    ):
        self._throttle = throttle
        self._clients = [
            (c.id.encode(), bytes.fromhex(c.hash.removeprefix("sha256:"))) for c in clients
        ]
        self._authenticator = authenticator
        self._sessions = sessions
        self._view = view
        self._issuer = issuer
        self._audience = audience
        self._limit = rate_limit
        self._realm = realm
        self._bodies = bodies
        self._clock = clock
        # client → (window index, count); the process's own when given, so that the counts
        # outlive a reloaded configuration
        self._windows: dict[str, tuple[int, int]] = {} if windows is None else windows

    def routes(self) -> list[web.RouteDef]:
        return own_routes(("POST", "/auth/introspect", self.introspect))

    async def introspect(self, request: web.Request) -> web.Response:
        """POST /auth/introspect: form `token` (and an optional `token_type_hint`)."""
        params = await read_params(self._bodies, request)
        client_id = await self.authenticate_from(
            request.headers.getall("Authorization", []), params, request.remote
        )
        self.count(client_id)
        token = text_param(params, "token", required=True)
        assert token is not None
        return web.json_response(await self.judge(token), headers=NO_STORE)

    async def authenticate_from(
        self, values: Sequence[str], params: Mapping[str, Any], address: str | None
    ) -> str:
        """`authenticate`, with guessing throttled per client address: RateLimited once the
        address has used up its failures, before the secret is compared."""
        throttle = self._throttle
        if throttle is None or not values:
            return self.authenticate(values, params)  # no Basic secret presented to guess with
        await throttle.check(address)
        try:
            return self.authenticate(values, params)
        except BasicClientRejected:
            await throttle.failed(address)
            raise

    def authenticate(self, values: Sequence[str], params: Mapping[str, Any]) -> str:
        """The client id for `Authorization: Basic …` values; 401 invalid_client otherwise
        (400 invalid_request for Basic and credentials in the body at once, as at every
        endpoint that authenticates clients: gateway.authserver.client_auth)."""
        presented = presented_client(values, params, realm=self._realm)
        if presented is None or presented.method != "client_secret_basic":
            raise BasicClientRejected(
                "client authentication (HTTP Basic) is required", realm=self._realm
            )
        client_id, secret = presented.client_id, presented.secret or ""
        presented_id = client_id.encode()
        digest = hashlib.sha256(secret.encode()).digest()
        matched = None
        for known_id, expected in self._clients:  # SECURITY: constant time, no early exit
            same_id = hmac.compare_digest(presented_id, known_id)
            if hmac.compare_digest(digest, expected) and same_id:
                matched = client_id
        if matched is None:
            raise BasicClientRejected("client authentication failed", realm=self._realm)
        return matched

    def count(self, client_id: str) -> None:
        """One introspection of this client in this process's window; 429 past the limit."""
        window = self._limit.window
        now = self._clock()
        index = int(now // window)
        seen_index, count = self._windows.get(client_id, (index, 0))
        count = count + 1 if seen_index == index else 1
        self._windows[client_id] = (index, count)
        if count > self._limit.limit:
            raise RateLimited(
                "too many introspection requests", retry_after=int((index + 1) * window - now) + 1
            )

    async def judge(self, token: str) -> dict[str, Any]:
        """The RFC 7662 answer for a token."""
        if parse_refresh_token(token) is not None:
            return await self._refresh_token(token)
        try:
            principal = self._authenticator.principal_for(token)  # RevocationStale → 503
        except InvalidToken:
            return dict(INACTIVE)
        return self._access_token(principal)

    def _access_token(self, principal: Principal) -> dict[str, Any]:
        claims = principal.claims
        answer: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer",
            "sub": principal.sub,
            "username": principal.sub,
            "sid": principal.sid,
            "jti": principal.jti,
            "iss": claims.get("iss"),
            "aud": claims.get("aud"),
            "iat": int(principal.iat),
            "exp": int(principal.exp),
            "roles": list(principal.roles),
        }
        if "nbf" in claims:
            answer["nbf"] = claims["nbf"]
        if principal.scopes:
            answer["scope"] = " ".join(principal.scopes)
        if isinstance(claims.get("client_id"), str):
            answer["client_id"] = claims["client_id"]
        return answer

    async def _refresh_token(self, token: str) -> dict[str, Any]:
        sid = parse_refresh_token(token)
        assert sid is not None
        if self._view.refusing:
            raise RevocationStale()
        # SECURITY: a read of the session's current hash only: introspecting never spends
        # the token, never yields a successor and never counts as its reuse.
        session = await self._sessions.owner(sid, refresh_token_hash(token))
        if session is None or self._view.session_revoked(session):
            return dict(INACTIVE)
        answer: dict[str, Any] = {
            "active": True,
            "token_type": "refresh_token",
            "sub": session.sub,
            "username": session.sub,
            "sid": session.sid,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": int(session.created_at),
            "exp": int(session.expires_at),
            "roles": list(session.roles),
        }
        if session.scope:
            answer["scope"] = session.scope
        if session.client_id:
            answer["client_id"] = session.client_id
        return answer
