"""Admin API handlers on the admin listener: revocations, sessions, audit trail (SPEC §6).

The actions themselves (and their audit entries) are gateway.admin.actions, shared with the
CLI; these handlers read the request and shape the answer.
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.admin.actions import Actor, AdminActions
from gateway.appkeys import ADMIN_ID
from gateway.authserver.responses import session_json
from gateway.edge.bodies import BodyReader, read_json_object
from gateway.edge.own_routes import own_routes
from gateway.errors import InvalidRequest
from gateway.tokens.revocation_view import RevocationView

log = logging.getLogger("gateway.admin")


class AdminApi:
    """The admin API's handlers (SPEC §6), over the operator actions."""

    def __init__(self, *, actions: AdminActions, view: RevocationView, bodies: BodyReader):
        self._actions = actions
        self._view = view
        self._bodies = bodies

    def routes(self) -> list[web.RouteDef]:
        return own_routes(
            ("POST", "/admin/revoke/token", self.revoke_token),
            ("DELETE", "/admin/sessions/{sid}", self.revoke_session),
            ("POST", "/admin/users/{sub}/revoke", self.revoke_user),
            ("POST", "/admin/clients/{client_id}/revoke", self.revoke_client),
            ("GET", "/admin/users/{sub}/sessions", self.user_sessions),
            ("GET", "/admin/revocations", self.revocations),
            ("GET", "/admin/audit", self.audit),
        )

    async def revoke_token(self, request: web.Request) -> web.Response:
        """POST /admin/revoke/token: {"token": JWT} or {"jti", "exp"}; expired tokens are a
        no-op."""
        body = await read_json_object(self._bodies, request)
        result = await self._actions.revoke_token(
            _actor(request), token=body.get("token"), jti=body.get("jti"), exp=body.get("exp")
        )
        _log(request, "revoke_token", result["id"])
        return web.json_response(result)

    async def revoke_session(self, request: web.Request) -> web.Response:
        """DELETE /admin/sessions/{sid}: the session's refresh chain and access tokens die."""
        sid = request.match_info["sid"]
        result = await self._actions.revoke_session(_actor(request), sid)
        _log(request, "revoke_session", sid)
        return web.json_response(result)

    async def revoke_user(self, request: web.Request) -> web.Response:
        """POST /admin/users/{sub}/revoke: every session ends; tokens issued before now die."""
        sub = request.match_info["sub"]
        result = await self._actions.revoke_user(_actor(request), sub)
        _log(request, "revoke_user", sub)
        return web.json_response(result)

    async def revoke_client(self, request: web.Request) -> web.Response:
        """POST /admin/clients/{client_id}/revoke: every client credentials token of the
        client issued before now dies."""
        client_id = request.match_info["client_id"]
        result = await self._actions.revoke_client(_actor(request), client_id)
        _log(request, "revoke_client", client_id)
        return web.json_response(result)

    async def user_sessions(self, request: web.Request) -> web.Response:
        """GET /admin/users/{sub}/sessions."""
        sessions = await self._actions.sessions_of(request.match_info["sub"])
        return web.json_response(
            {"sessions": [session_json(s, current_sid=None) for s in sessions]}
        )

    async def revocations(self, request: web.Request) -> web.Response:
        """GET /admin/revocations?limit=N: this instance's current revocation view."""
        limit = _int_query(request, "limit", default=1000, maximum=100_000)
        view = self._view
        items = [
            {"kind": kind, "id": ident, "until": until}
            for kind, ident, until in view.entries(limit)
        ]
        return web.json_response({"revocations": items, "total": len(view)})

    async def audit(self, request: web.Request) -> web.Response:
        """GET /admin/audit?count=N&before=ID: newest first."""
        count = _int_query(request, "count", default=100, maximum=1000)
        entries = await self._actions.audit_entries(count, request.query.get("before") or None)
        return web.json_response({"entries": [e.as_json() for e in entries]})


def _actor(request: web.Request) -> Actor:
    return Actor(f"admin-key:{request[ADMIN_ID]}", request.remote)


def _log(request: web.Request, action: str, target: str) -> None:
    log.info("admin action %s target=%s by key %s", action, target, request[ADMIN_ID])


def _int_query(request: web.Request, name: str, *, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    # ASCII digits only (str.isdigit also takes "²", which int() refuses), and few of them
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or not 1 <= int(raw) <= maximum:
        raise InvalidRequest(f"{name} must be an integer from 1 to {maximum}")
    return int(raw)
