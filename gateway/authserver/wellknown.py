"""Public metadata: the JWKS of verification keys and the RFC 8414 server metadata."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.appkeys import FEDERATION, KEYRING, SETTINGS
from gateway.authserver.federation.grant import TOKEN_EXCHANGE_GRANT


async def jwks(request: web.Request) -> web.Response:
    """GET /.well-known/jwks.json: public keys only (RFC 7517)."""
    return web.json_response(
        request.app[KEYRING].jwks(), headers={"Cache-Control": "public, max-age=300"}
    )


async def metadata(request: web.Request) -> web.Response:
    """GET /.well-known/oauth-authorization-server (RFC 8414)."""
    settings = request.app[SETTINGS]
    base = settings.tokens.issuer.rstrip("/")
    grants = ["password", "refresh_token"]
    if request.app.get(FEDERATION) is not None:
        grants.append(TOKEN_EXCHANGE_GRANT)
    document: dict[str, Any] = {
        "issuer": settings.tokens.issuer,
        "token_endpoint": f"{base}/auth/token",
        "revocation_endpoint": f"{base}/auth/revoke",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "grant_types_supported": grants,
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "token_endpoint_auth_signing_alg_values_supported": sorted(settings.keys.algorithms),
    }
    if settings.introspection.clients:
        document["introspection_endpoint"] = f"{base}/auth/introspect"
        document["introspection_endpoint_auth_methods_supported"] = ["client_secret_basic"]
    return web.json_response(document)
