"""Public metadata: the JWKS of verification keys."""

from __future__ import annotations

from aiohttp import web

from gateway.state import KEYRING


async def jwks(request: web.Request) -> web.Response:
    """GET /.well-known/jwks.json: public keys only (RFC 7517)."""
    return web.json_response(
        request.app[KEYRING].jwks(), headers={"Cache-Control": "public, max-age=300"}
    )
