"""The caller's own sessions: list them, end one (SPEC §3 `/auth/sessions`)."""

from __future__ import annotations

from aiohttp import web

from gateway.appkeys import REVOKER
from gateway.authserver.params import required_principal
from gateway.authserver.responses import session_json
from gateway.edge import NO_STORE
from gateway.errors import NotFound


async def list_sessions(request: web.Request) -> web.Response:
    """GET /auth/sessions: the caller's sessions, one per device."""
    principal = required_principal(request)
    sessions = await request.app[REVOKER].sessions_of(principal.sub)
    return web.json_response(
        {"sessions": [session_json(s, current_sid=principal.sid) for s in sessions]},
        headers=NO_STORE,
    )


async def delete_session(request: web.Request) -> web.Response:
    """DELETE /auth/sessions/{sid}: end one of the caller's own sessions (others: 404)."""
    principal = required_principal(request)
    revoker = request.app[REVOKER]
    session = await revoker.get_session(request.match_info["sid"])
    if session is None or session.sub != principal.sub:
        raise NotFound("no such session")
    await revoker.end_session(session.sid)
    return web.Response(status=204, headers=NO_STORE)
