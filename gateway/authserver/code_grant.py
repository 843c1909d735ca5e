"""The authorization code grant of POST /auth/token (RFC 6749 §4.1.3, PKCE RFC 7636 §4.6):
the code is taken once (gateway.store.authorization_codes), then it must have been issued to
this client for this redirect URI, and the verifier must hash to its challenge. Only then is
a session opened for the user who signed in, and its tokens returned (with an ID token when
`openid` was granted). A code redeemed a second time ends the session the first redemption
opened (RFC 6749 §4.1.2); a code presented by another client, with another redirect URI or
a wrong verifier is spent all the same, and nothing is issued.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from dataclasses import replace
from typing import Any, Final

from aiohttp import web

from gateway.authserver.client_registry import Client
from gateway.authserver.credentials import Identity
from gateway.authserver.responses import token_response
from gateway.authserver.revoker import Revoker
from gateway.authserver.scopes import OPENID
from gateway.authserver.token_service import Device, TokenService
from gateway.errors import InvalidGrant, InvalidRequest, UnauthorizedClient
from gateway.store import AuthorizationCodeStore
from gateway.tokens.issuer import TokenIssuer
from gateway.typedefs import Clock

log = logging.getLogger("gateway.clients")

VERIFIER: Final = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 §4.1


def s256(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class AuthorizationCodeGrant:
    """`grant_type=authorization_code` with `code`, `redirect_uri` and `code_verifier`."""

    def __init__(
        self,
        *,
        codes: AuthorizationCodeStore,
        tokens: TokenService,
        issuer: TokenIssuer,
        revoker: Revoker,
        clock: Clock,
    ):
        self._codes = codes
        self._tokens = tokens
        self._issuer = issuer
        self._revoker = revoker
        self._clock = clock

    async def answer(
        self, request: web.Request, params: dict[str, Any], client: Client | None
    ) -> web.Response:
        if client is None:
            raise InvalidRequest("client_id is required")
        if not client.allows("authorization_code"):
            raise UnauthorizedClient("this client may not use the authorization code grant")
        code = _required(params, "code", 128)
        verifier = _required(params, "code_verifier", 128)
        redirect_uri = params.get("redirect_uri") or None
        if redirect_uri is not None and (
            not isinstance(redirect_uri, str) or len(redirect_uri) > 512
        ):
            raise InvalidRequest("redirect_uri is malformed")
        redeemed = await self._codes.redeem(code)
        if redeemed.outcome == "replay":
            await self._replayed(client, redeemed.issued_sid)
        if redeemed.outcome != "ok" or redeemed.record is None:
            reason = redeemed.outcome
            raise InvalidGrant(
                f"the authorization code is {reason}"
                if reason == "expired"
                else "the authorization code is invalid",
                reason=f"code_{reason}",
            )
        record = redeemed.record
        self._check_binding(record, client, redirect_uri, verifier)
        identity = Identity(
            sub=record["sub"],
            roles=tuple(record.get("roles") or ()),
            scope=record.get("scope"),
            claims=record.get("claims") or {},
        )
        device = replace(Device.from_request(request, device_name=client.name), client_id=client.id)
        pair = await self._tokens.open_session(identity, device)
        if not await self._codes.opened(code, pair.session.sid):
            # a second redemption came in meanwhile: what this one opened ends at once
            await self._revoker.end_session(pair.session.sid)
            log.warning("authorization code reused client=%s: session revoked", client.id)
            raise InvalidGrant("the authorization code was used twice", reason="code_reuse")
        log.info(
            "authorization code redeemed client=%s sub=%s sid=%s",
            client.id,
            identity.sub,
            pair.session.sid,
        )
        extra: dict[str, Any] = {}
        if OPENID in (identity.scope or "").split():
            extra["id_token"] = self._issuer.id_token(
                sub=identity.sub,
                client_id=client.id,
                auth_time=float(record.get("auth_time") or self._clock()),
                nonce=record.get("nonce"),
                sid=pair.session.sid,
            )
        return token_response(
            pair, self._clock(), extra=extra, refresh=client.allows("refresh_token")
        )

    def _check_binding(
        self, record: dict[str, Any], client: Client, redirect_uri: str | None, verifier: str
    ) -> None:
        """The code's client, redirect URI and PKCE challenge (RFC 6749 §4.1.3, RFC 7636)."""
        if record.get("client_id") != client.id:
            raise InvalidGrant(
                "the authorization code was issued to another client", reason="code_wrong_client"
            )
        bound = record.get("redirect_uri")
        if record.get("redirect_given") and redirect_uri is None:
            raise InvalidGrant(
                "redirect_uri is required (it was sent to /auth/authorize)",
                reason="code_redirect_mismatch",
            )
        if redirect_uri is not None and redirect_uri != bound:
            raise InvalidGrant(
                "redirect_uri differs from the authorization request's",
                reason="code_redirect_mismatch",
            )
        if not VERIFIER.match(verifier):
            raise InvalidGrant("code_verifier is malformed", reason="pkce_mismatch")
        challenge = str(record.get("code_challenge") or "")
        # SECURITY: constant time; only the holder of the verifier redeems the code.
        if not hmac.compare_digest(s256(verifier).encode(), challenge.encode()):
            raise InvalidGrant(
                "code_verifier does not match the code challenge", reason="pkce_mismatch"
            )

    async def _replayed(self, client: Client, issued_sid: str | None) -> None:
        if issued_sid is not None:
            await self._revoker.end_session(issued_sid)
        log.warning(
            "authorization code used twice client=%s: %s",
            client.id,
            f"session {issued_sid} revoked" if issued_sid else "nothing issued yet",
        )
        raise InvalidGrant(
            "the authorization code was already used; what it issued is revoked",
            reason="code_reuse",
        )


def _required(params: dict[str, Any], name: str, limit: int) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise InvalidRequest(f"{name} is required")
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise InvalidRequest(f"{name} is malformed")
    return value
