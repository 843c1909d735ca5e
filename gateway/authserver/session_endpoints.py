"""The caller's own sessions: list them, end one (SPEC §3 `/auth/sessions`)."""

from __future__ import annotations

from aiohttp import web

from gateway.authserver.responses import session_json
from gateway.authserver.revoker import Revoker
from gateway.edge import NO_STORE
from gateway.edge.own_routes import own_routes
from gateway.errors import NotFound
from gateway.tokens.bearer import Authenticator


class SessionEndpoints:
    """GET /auth/sessions and DELETE /auth/sessions/{sid}, for the caller's own sessions."""

    def __init__(self, *, revoker: Revoker, authenticator: Authenticator):
        self._revoker = revoker
        self._authenticator = authenticator

    def routes(self) -> list[web.RouteDef]:
        return own_routes(
            ("GET", "/auth/sessions", self.list_sessions),
            ("DELETE", "/auth/sessions/{sid}", self.delete_session),
        )

    async def list_sessions(self, request: web.Request) -> web.Response:
        """GET /auth/sessions: the caller's sessions, one per device."""
        principal = self._authenticator.required_caller(request)
        sessions = await self._revoker.sessions_of(principal.sub)
        return web.json_response(
            {"sessions": [session_json(s, current_sid=principal.sid) for s in sessions]},
            headers=NO_STORE,
        )

    async def delete_session(self, request: web.Request) -> web.Response:
        """DELETE /auth/sessions/{sid}: end one of the caller's own sessions (others: 404)."""
        principal = self._authenticator.required_caller(request)
        session = await self._revoker.get_session(request.match_info["sid"])
        if session is None or session.sub != principal.sub:
            raise NotFound("no such session")
        await self._revoker.end_session(session.sid)
        return web.Response(status=204, headers=NO_STORE)
