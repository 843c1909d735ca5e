"""Public metadata: the JWKS of verification keys and the RFC 8414 server metadata."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, Final

from aiohttp import web
from aiohttp.helpers import ETAG_ANY

from gateway.authserver.federation.grant import TOKEN_EXCHANGE_GRANT
from gateway.config import Settings
from gateway.edge.own_routes import own_routes
from gateway.tokens.client_keys import ASSERTION_ALGORITHMS
from gateway.tokens.keys import KeyRing

# How long verifiers may cache the key set: a rotation publishes a new key at least this long
# (plus tokens.leeway) before it signs with it, so every cache has seen it by then
# (gateway.authserver.key_rotation, `gateway keys rotate`).
JWKS_MAX_AGE: Final = 300


class WellKnown:
    """GET /.well-known/jwks.json always; the authorization server metadata when this
    gateway issues tokens."""

    def __init__(
        self,
        keyring: KeyRing,
        settings: Settings,
        *,
        exchange: bool,
        grants: Callable[[], Sequence[str]] | None = None,
        authorization: bool = False,
        client_methods: Sequence[str] = (),
        scopes: Sequence[str] = (),
    ):
        self._keyring = keyring
        self._settings = settings
        self._exchange = exchange  # the token-exchange grant is served
        self._grants = grants  # what the token endpoint serves
        self._authorization = authorization  # GET /auth/authorize is served
        # client authentication: `none` (public clients), and what registered clients use
        self._methods = sorted({"none", *client_methods})
        self._scopes = sorted(set(scopes))

    def routes(self) -> list[web.RouteDef]:
        table = own_routes(("GET", "/.well-known/jwks.json", self.jwks))
        if self._keyring.active is not None:
            table += own_routes(("GET", "/.well-known/oauth-authorization-server", self.metadata))
        return table

    async def jwks(self, request: web.Request) -> web.Response:
        """GET /.well-known/jwks.json: public keys only (RFC 7517), with an ETag; 304 when the
        client's If-None-Match names it."""
        body = json.dumps(self._keyring.jwks(), sort_keys=True, separators=(",", ":"))
        # The same keys give the same tag on every worker and instance (sorted, compact JSON).
        etag = hashlib.sha256(body.encode()).hexdigest()[:32]
        headers = {"Cache-Control": f"public, max-age={JWKS_MAX_AGE}", "ETag": f'"{etag}"'}
        wanted = request.if_none_match  # weak comparison (RFC 9110 §13.1.2): W/ prefixes ignored
        if wanted and any(tag.value in (etag, ETAG_ANY) for tag in wanted):
            return web.Response(status=304, headers=headers)
        return web.Response(text=body, content_type="application/json", headers=headers)

    async def metadata(self, _request: web.Request) -> web.Response:
        """GET /.well-known/oauth-authorization-server (RFC 8414)."""
        settings = self._settings
        base = settings.tokens.issuer.rstrip("/")
        if self._grants is not None:
            grants = list(self._grants())
        else:
            grants = ["password", "refresh_token"]
            if self._exchange:
                grants.append(TOKEN_EXCHANGE_GRANT)
        document: dict[str, Any] = {
            "issuer": settings.tokens.issuer,
            "token_endpoint": f"{base}/auth/token",
            "revocation_endpoint": f"{base}/auth/revoke",
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "grant_types_supported": grants,
            "response_types_supported": ["code"] if self._authorization else [],
            "token_endpoint_auth_methods_supported": self._methods,
            "revocation_endpoint_auth_methods_supported": self._methods,
            # private_key_jwt: what client assertions may be signed with (asymmetric only)
            "token_endpoint_auth_signing_alg_values_supported": sorted(ASSERTION_ALGORITHMS),
        }
        if self._authorization:
            active = self._keyring.active
            document.update(
                authorization_endpoint=f"{base}/auth/authorize",
                response_modes_supported=["query"],
                code_challenge_methods_supported=["S256"],
                authorization_response_iss_parameter_supported=True,  # RFC 9207
                scopes_supported=sorted({"openid", *self._scopes}),
                subject_types_supported=["public"],
                id_token_signing_alg_values_supported=[active.alg] if active else [],
            )
        if settings.introspection.clients:
            document["introspection_endpoint"] = f"{base}/auth/introspect"
            document["introspection_endpoint_auth_methods_supported"] = ["client_secret_basic"]
        return web.json_response(document)
