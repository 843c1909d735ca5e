"""Admin sub-app on its own listener: API-key auth, revocations, sessions, audit trail.

Every action that changes state is recorded in the audit trail before it is acknowledged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.config import AdminKeySettings, Settings
from gateway.endpoints.auth import session_json
from gateway.errors import InvalidClient, InvalidRequest, InvalidToken, NotFound
from gateway.middleware import edge_middleware
from gateway.state import AUDIT, CLOCK, REVOCATIONS, REVOKER, VERIFIER
from gateway.store import SID_RE

log = logging.getLogger("gateway.admin")

PUBLIC_APP = web.AppKey("public_app", web.Application)
ADMIN_ID = web.RequestKey("admin_id", str)
JTI_RE: Final = re.compile(r"^[A-Za-z0-9._~:-]{1,128}$")
SUB_MAX: Final = 256


def admin_key_hash(key: str) -> str:
    """The configuration form of an admin key: `sha256:<hex>` (keys are 256-bit random)."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_admin_key() -> str:
    return "gwadm_" + secrets.token_urlsafe(32)


def admin_auth_middleware(keys: list[AdminKeySettings]) -> Middleware:
    """`Authorization: Bearer <admin key>`: 401 when missing or wrong; records the key id."""
    digests = [(k.id, bytes.fromhex(k.hash.removeprefix("sha256:"))) for k in keys]

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        values = request.headers.getall("Authorization", [])
        scheme, _, key = values[0].partition(" ") if len(values) == 1 else ("", "", "")
        if scheme.lower() != "bearer" or not key.strip():
            raise InvalidClient("an admin API key is required")
        digest = hashlib.sha256(key.strip().encode()).digest()
        matched = None
        for key_id, expected in digests:  # SECURITY: constant time, and no early exit
            if hmac.compare_digest(digest, expected):
                matched = key_id
        if matched is None:
            raise InvalidClient("invalid admin API key")
        request[ADMIN_ID] = matched
        return await handler(request)

    return middleware


def create_admin_app(settings: Settings, public: web.Application) -> web.Application:
    """The admin API; it shares the public app's components (started by the public app)."""
    app = web.Application(
        middlewares=[
            edge_middleware(),
            admin_auth_middleware(settings.admin.keys),
        ],
        client_max_size=64 * 1024,
    )
    app[PUBLIC_APP] = public
    app.router.add_post("/admin/revoke/token", revoke_token)
    app.router.add_delete("/admin/sessions/{sid}", revoke_session)
    app.router.add_post("/admin/users/{sub}/revoke", revoke_user)
    app.router.add_get("/admin/users/{sub}/sessions", user_sessions)
    app.router.add_get("/admin/revocations", revocations)
    app.router.add_get("/admin/audit", audit)
    return app


async def revoke_token(request: web.Request) -> web.Response:
    """POST /admin/revoke/token: {"token": JWT} or {"jti", "exp"}; expired tokens are a no-op."""
    public = request.app[PUBLIC_APP]
    body = await _json_object(request)
    if "token" in body:
        if not isinstance(body["token"], str):
            raise InvalidRequest("token must be a string")
        try:
            principal = public[VERIFIER].inspect(body["token"])
        except InvalidToken:
            raise InvalidRequest("token is not a valid access token of this gateway") from None
        jti, exp = principal.jti, principal.exp
    else:
        raw_jti, raw_exp = body.get("jti"), body.get("exp")
        if not isinstance(raw_jti, str) or not JTI_RE.match(raw_jti):
            raise InvalidRequest("jti must be a string of 1-128 URL-safe characters")
        if not isinstance(raw_exp, int | float) or isinstance(raw_exp, bool) or raw_exp <= 0:
            raise InvalidRequest("exp must be a Unix time in seconds")
        jti, exp = raw_jti, float(raw_exp)
    record = await public[REVOKER].revoke_access_token(jti, float(exp))
    result = {"kind": "jti", "id": jti, "revoked": record is not None, "until": exp}
    if record is None:
        result["detail"] = "the token has already expired; nothing to revoke"
    await _audit(request, "revoke_token", jti, result)
    return web.json_response(result)


async def revoke_session(request: web.Request) -> web.Response:
    """DELETE /admin/sessions/{sid}: the session's refresh chain and access tokens die."""
    public = request.app[PUBLIC_APP]
    sid = request.match_info["sid"]
    if not SID_RE.match(sid):
        raise NotFound("no such session")
    session = await public[REVOKER].end_session(sid)
    if session is None:
        raise NotFound("no such session")
    result = {"kind": "sid", "id": sid, "sub": session.sub, "revoked": True}
    await _audit(request, "revoke_session", sid, result)
    return web.json_response(result)


async def revoke_user(request: web.Request) -> web.Response:
    """POST /admin/users/{sub}/revoke: every session ends; tokens issued before now die."""
    public = request.app[PUBLIC_APP]
    sub = _sub(request)
    sids = await public[REVOKER].revoke_user(sub)
    result = {"kind": "sub", "id": sub, "sessions_revoked": len(sids), "at": int(public[CLOCK]())}
    await _audit(request, "revoke_user", sub, result)
    return web.json_response(result)


async def user_sessions(request: web.Request) -> web.Response:
    """GET /admin/users/{sub}/sessions."""
    sessions = await request.app[PUBLIC_APP][REVOKER].sessions_of(_sub(request))
    return web.json_response({"sessions": [session_json(s, current_sid=None) for s in sessions]})


async def revocations(request: web.Request) -> web.Response:
    """GET /admin/revocations?limit=N: this instance's current revocation view."""
    limit = _int_query(request, "limit", default=1000, maximum=100_000)
    view = request.app[PUBLIC_APP][REVOCATIONS]
    items = [
        {"kind": kind, "id": ident, "until": until} for kind, ident, until in view.entries(limit)
    ]
    return web.json_response({"revocations": items, "total": len(view)})


async def audit(request: web.Request) -> web.Response:
    """GET /admin/audit?count=N&before=ID: newest first."""
    count = _int_query(request, "count", default=100, maximum=1000)
    before = request.query.get("before")
    entries = await request.app[PUBLIC_APP][AUDIT].recent(count=count, before=before)
    return web.json_response(
        {
            "entries": [
                {
                    "id": e.id,
                    "at": e.at,
                    "actor": e.actor,
                    "action": e.action,
                    "target": e.target,
                    "source": e.source,
                    "detail": e.detail,
                }
                for e in entries
            ]
        }
    )


async def _audit(request: web.Request, action: str, target: str, detail: dict[str, Any]) -> None:
    await request.app[PUBLIC_APP][AUDIT].record(
        actor=f"admin-key:{request[ADMIN_ID]}",
        action=action,
        target=target,
        source=request.remote,
        detail=detail,
    )
    log.info("admin action %s target=%s by key %s", action, target, request[ADMIN_ID])


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _sub(request: web.Request) -> str:
    sub = request.match_info["sub"]
    if not sub or len(sub) > SUB_MAX or not sub.isprintable():
        raise InvalidRequest("invalid user id")
    return sub


def _int_query(request: web.Request, name: str, *, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise InvalidRequest(f"{name} must be an integer from 1 to {maximum}")
    return int(raw)
