"""Token service: sessions per device, refresh rotation with reuse detection.

Every token it hands out was first recorded in Redis: the store write comes before signing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from aiohttp import hdrs, web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.authserver.credentials import Identity
from gateway.authserver.revoker import Revoker
from gateway.authserver.scopes import narrowed
from gateway.config import TokenSettings
from gateway.edge.params import text_param
from gateway.errors import InvalidGrant, StoreUnavailable
from gateway.store import (
    Session,
    new_refresh_token,
    new_sid,
    parse_refresh_token,
    refresh_token_hash,
)
from gateway.tokens.issuer import IssuedToken, TokenIssuer
from gateway.tokens.revocation_view import RevocationView

log = logging.getLogger("gateway.sessions")

_BOX_INFO: Final = b"gateway refresh successor v1"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access: IssuedToken
    refresh_token: str
    session: Session
    outcome: str  # "login", "rotated", "grace" or "redelivered"


@dataclass(frozen=True, slots=True)
class Device:
    """What the client told us about itself at login."""

    device_id: str | None = None
    device_name: str | None = None
    client_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def from_request(
        cls,
        request: web.BaseRequest,
        *,
        device_id: str | None = None,
        device_name: str | None = None,
        client_id: str | None = None,
    ) -> Device:
        """The device a request comes from: its address and User-Agent (bounded), with what
        the client said of itself."""
        user_agent = (request.headers.get(hdrs.USER_AGENT) or "")[:256] or None
        return cls(device_id, device_name, client_id, request.remote, user_agent)

    @classmethod
    def from_params(cls, request: web.BaseRequest, params: dict[str, Any]) -> Device:
        """The device of a login or grant: `device_id`, `device_name` and `client_id` from
        its parameters (each optional, bounded)."""
        return cls.from_request(
            request,
            device_id=text_param(params, "device_id"),
            device_name=text_param(params, "device_name"),
            client_id=text_param(params, "client_id"),
        )


def seal_successor(presented: str, successor: str, sid: str) -> bytes:
    """Encrypt the successor refresh token under a key only the presented token yields.

    SECURITY: Redis keeps only SHA-256 hashes of refresh tokens; this box lets a concurrent
    refresh of the same token (grace window) get the same successor without Redis holding a
    replayable token: the key is HMAC(presented token), not derivable from its stored hash.
    """
    key = hmac.new(presented.encode(), _BOX_INFO, hashlib.sha256).digest()
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, successor.encode(), sid.encode())


def open_successor(presented: str, box: bytes, sid: str) -> str | None:
    key = hmac.new(presented.encode(), _BOX_INFO, hashlib.sha256).digest()
    try:
        return AESGCM(key).decrypt(box[:12], box[12:], sid.encode()).decode()
    except (InvalidTag, ValueError):
        return None


class TokenService:
    """Opens and rotates sessions; every token it returns was recorded in Redis first."""

    def __init__(
        self,
        *,
        revoker: Revoker,
        view: RevocationView,
        issuer: TokenIssuer,
        settings: TokenSettings,
    ):
        self._revoker = revoker
        self._sessions = revoker.sessions
        self._view = view
        self._issuer = issuer
        self._settings = settings

    async def open_session(
        self, identity: Identity, device: Device, *, lifetime: float | None = None
    ) -> TokenPair:
        """Create the session (replacing the same device's), then sign the pair. `lifetime`
        (seconds) shortens the session below `tokens.refresh_ttl`, never lengthens it."""
        sid = new_sid(identity.sub)
        refresh = new_refresh_token(sid)
        ttl = self._settings.refresh_ttl
        created = await self._sessions.create(
            sub=identity.sub,
            sid=sid,
            refresh_hash=refresh_token_hash(refresh),
            lifetime=ttl if lifetime is None else min(ttl, lifetime),
            device_id=device.device_id,
            device_name=device.device_name,
            client_id=device.client_id,
            ip=device.ip,
            user_agent=device.user_agent,
            roles=identity.roles,
            scope=identity.scope,
            extra_claims=dict(identity.claims),
        )
        if created.replaced_sid is not None:
            await self._revoker.revoke_sid(created.replaced_sid)
        log.info("session opened sid=%s sub=%s", created.session.sid, identity.sub)
        return TokenPair(
            self._issuer.for_session(created.session), refresh, created.session, "login"
        )

    async def refresh(
        self,
        presented: str,
        *,
        check: Callable[[Session], None] | None = None,
        scope: str | None = None,
    ) -> TokenPair:
        """Rotate a refresh token; reuse outside the grace window ends the session.

        `check` may refuse the session (it was issued to another client) and `scope` may
        narrow the new access token (never widen: InvalidScope); either refusal comes before
        anything is signed, and leaves the recorded successor to the spent token, which the
        rightful client can still fetch with it (RFC 6749 §6).

        Safe to retry: when the store fails mid-rotation (503), presenting the same token again
        gets the successor the rotation recorded, if it did ("redelivered"), or a fresh
        rotation if it did not. The successor stops being redeliverable once this method has
        confirmed, with its answer in hand, that it could be handed out.
        """
        sid = parse_refresh_token(presented)
        if sid is None:
            raise InvalidGrant("the refresh token is invalid", reason="malformed")
        successor = new_refresh_token(sid)
        result = await self._sessions.rotate(
            sid=sid,
            presented_hash=refresh_token_hash(presented),
            new_hash=refresh_token_hash(successor),
            successor_box=seal_successor(presented, successor, sid),
            grace=self._settings.refresh_reuse_grace,
        )
        session = result.session
        if result.outcome == "reuse" and session is not None:
            await self._revoker.revoke_sid(sid)
            log.warning("refresh token reuse: session revoked sid=%s sub=%s", sid, session.sub)
            raise InvalidGrant(
                "refresh token reuse detected; the session has been revoked",
                reason="reuse_detected",
            )
        replay = result.outcome in ("grace", "redelivered")
        if replay and session is not None and result.successor_box:
            replayed = open_successor(presented, result.successor_box, sid)
            if replayed is None:
                raise InvalidGrant("the refresh token is invalid", reason="unknown")
            successor = replayed
            if result.outcome == "redelivered":
                log.info("refresh answer handed out again sid=%s sub=%s", sid, session.sub)
        elif result.outcome != "rotated" or session is None:
            raise InvalidGrant(
                "the refresh token is invalid, expired or revoked", reason=result.outcome
            )
        if self._view.session_revoked(session):
            raise InvalidGrant("the session has been revoked", reason="revoked")
        if check is not None:
            check(session)
        signed = session
        if scope is not None:
            signed = replace(session, scope=narrowed(scope, (session.scope or "").split()))
        pair = TokenPair(self._issuer.for_session(signed), successor, session, result.outcome)
        if result.pending:
            await self._confirm_delivery(sid, successor)
        return pair

    async def _confirm_delivery(self, sid: str, successor: str) -> None:
        """Start the grace window of the spent token now that its successor is in hand."""
        try:
            await self._sessions.confirm_delivery(
                sid=sid,
                successor_hash=refresh_token_hash(successor),
                grace=self._settings.refresh_reuse_grace,
            )
        except StoreUnavailable:
            # The pair is recorded, so the client gets it; the spent token can still fetch
            # this successor until the successor is used (reuse is detected from then on).
            log.warning("refresh delivery not recorded sid=%s: Redis unavailable", sid)

    async def session_for_refresh_token(self, presented: str) -> Session | None:
        """The live session a refresh token belongs to (current token only), else None."""
        sid = parse_refresh_token(presented)
        if sid is None:
            return None
        return await self._sessions.owner(sid, refresh_token_hash(presented))
