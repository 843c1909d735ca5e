"""What the token service's endpoints answer: the token response and a session's JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.authserver.token_service import TokenPair
from gateway.edge import NO_STORE
from gateway.store import Session


def token_response(
    pair: TokenPair, now: float, *, extra: Mapping[str, Any] | None = None, refresh: bool = True
) -> web.Response:
    """The token response (SPEC §3); without the refresh token for a client whose
    registration does not list the refresh_token grant."""
    session = pair.session
    body: dict[str, Any] = {
        "access_token": pair.access.token,
        "token_type": "Bearer",
        "expires_in": pair.access.exp - int(now),
        "refresh_token": pair.refresh_token,
        "refresh_expires_in": max(0, int(session.expires_at - now)),
        "access_token_expires_at": pair.access.exp,
        "refresh_token_expires_at": int(session.expires_at),
        "session_id": session.sid,
    }
    if not refresh:
        for name in ("refresh_token", "refresh_expires_in", "refresh_token_expires_at"):
            del body[name]
    if session.scope:
        body["scope"] = session.scope
    if extra:
        body.update(extra)
    return web.json_response(body, headers=NO_STORE)


def session_json(session: Session, *, current_sid: str | None) -> dict[str, Any]:
    return {
        "sid": session.sid,
        "device_id": session.device_id,
        "device_name": session.device_name,
        "client_id": session.client_id,
        "created_at": int(session.created_at),
        "last_used_at": int(session.last_used_at),
        "expires_at": int(session.expires_at),
        "ip": session.ip,
        "user_agent": session.user_agent,
        "current": session.sid == current_sid,
    }
