"""The client credentials grant of POST /auth/token (RFC 6749 §4.4): a confidential client
authenticated as registered gets an access token of its own — `sub` `client:<id>`, its
roles, the scopes it asked for within its registration, a `client_id` claim — and no refresh
token. The token names a per-issuance id in `sid` that no session store holds: such a token
ends by expiry, by its `jti`, or with every token of its client (`gateway revoke client`).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Final

from aiohttp import web

from gateway.authserver.client_registry import Client
from gateway.authserver.scopes import narrowed
from gateway.edge import NO_STORE
from gateway.errors import ClientAuthFailed, UnauthorizedClient
from gateway.tokens.issuer import TokenIssuer
from gateway.typedefs import Clock

log = logging.getLogger("gateway.clients")

MACHINE_SID_PREFIX: Final = "cc-"


def machine_sid() -> str:
    """The `sid` of one client credentials token: unique, never a session's (no hash tag)."""
    return MACHINE_SID_PREFIX + secrets.token_urlsafe(16)


class ClientCredentialsGrant:
    """`grant_type=client_credentials` (`scope` optional)."""

    def __init__(self, *, issuer: TokenIssuer, clock: Clock):
        self._issuer = issuer
        self._clock = clock

    async def answer(self, params: dict[str, Any], client: Client | None) -> web.Response:
        # SECURITY: RFC 6749 §4.4: confidential clients only. A public client cannot prove
        # who it is, so a token "of its own" would be anyone's for the asking.
        if client is None or client.type != "confidential":
            raise ClientAuthFailed("client_credentials needs an authenticated confidential client")
        if not client.allows("client_credentials"):
            raise UnauthorizedClient("this client may not use the client credentials grant")
        scope = params.get("scope")
        granted = narrowed(scope if isinstance(scope, str) else None, client.scopes)
        issued = self._issuer.issue(
            sub=client.subject,
            sid=machine_sid(),
            roles=client.roles,
            scope=granted,
            client_id=client.id,
        )
        log.info("client token issued client=%s jti=%s", client.id, issued.jti)
        body: dict[str, Any] = {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": issued.exp - int(self._clock()),
            "access_token_expires_at": issued.exp,
        }
        if granted:
            body["scope"] = granted
        return web.json_response(body, headers=NO_STORE)
