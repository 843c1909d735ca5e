"""Token endpoints: login, refresh, token (RFC 6749), revoke (RFC 7009), logout, sessions."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from gateway.auth import bearer_token
from gateway.errors import (
    AuthenticationRequired,
    GatewayError,
    InvalidRequest,
    InvalidToken,
    NotFound,
    UnsupportedGrantType,
)
from gateway.observability import METRICS
from gateway.sessions import Device, TokenPair
from gateway.state import AUTHENTICATOR, CLOCK, LOGIN, REVOKER, SETTINGS, TOKEN_SERVICE
from gateway.store import Session
from gateway.tokens import Principal

NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM: Final = "application/x-www-form-urlencoded"
MAX_FIELD: Final = {"username": 256, "password": 1024, "refresh_token": 512, "token": 8192}


async def login(request: web.Request) -> web.Response:
    """POST /auth/login: JSON {username, password, device_id?, device_name?} or password grant."""
    params = await read_params(request)
    grant = params.get("grant_type")
    if grant is not None and grant != "password":
        raise UnsupportedGrantType()
    return await _password_grant(request, params)


async def refresh(request: web.Request) -> web.Response:
    """POST /auth/refresh and /refresh: rotate the refresh token, return a new pair."""
    params = await read_params(request)
    grant = params.get("grant_type")
    if grant is not None and grant != "refresh_token":
        raise UnsupportedGrantType()
    return await _refresh_grant(request, params)


async def token(request: web.Request) -> web.Response:
    """POST /auth/token: the OAuth 2.0 token endpoint (password and refresh_token grants)."""
    params = await read_params(request)
    grant = text_param(params, "grant_type", required=True)
    if grant == "password":
        return await _password_grant(request, params)
    if grant == "refresh_token":
        return await _refresh_grant(request, params)
    raise UnsupportedGrantType()


async def revoke(request: web.Request) -> web.Response:
    """POST /auth/revoke (RFC 7009): 200 whether or not the token was known."""
    params = await read_params(request)
    presented = text_param(params, "token", required=True)
    assert presented is not None
    revoker = request.app[REVOKER]
    session = await request.app[TOKEN_SERVICE].session_for_refresh_token(presented)
    if session is not None:
        await revoker.end_session(session.sid)
    else:
        try:
            principal = request.app[AUTHENTICATOR].principal_for(presented)
        except InvalidToken:
            principal = None  # unknown, expired or already revoked: nothing to do
        if principal is not None:
            await revoker.revoke_access_token(principal.jti, principal.exp)
    return web.Response(status=200, headers=NO_STORE)


async def logout(request: web.Request) -> web.Response:
    """POST /auth/logout: end the session named by the access token and/or refresh token."""
    service = request.app[TOKEN_SERVICE]
    principal = optional_principal(request)
    params = await read_params(request) if request.body_exists else {}
    presented = text_param(params, "refresh_token")
    sids = set()
    if principal is not None:
        sids.add(principal.sid)
    if presented:
        session = await service.session_for_refresh_token(presented)
        if session is not None:
            sids.add(session.sid)
    if principal is None and not presented:
        raise AuthenticationRequired("an access token or refresh token is required")
    for sid in sids:
        await request.app[REVOKER].end_session(sid)
    return web.Response(status=204, headers=NO_STORE)


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


async def metadata(request: web.Request) -> web.Response:
    """GET /.well-known/oauth-authorization-server (RFC 8414)."""
    settings = request.app[SETTINGS]
    base = settings.tokens.issuer.rstrip("/")
    return web.json_response(
        {
            "issuer": settings.tokens.issuer,
            "token_endpoint": f"{base}/auth/token",
            "revocation_endpoint": f"{base}/auth/revoke",
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "grant_types_supported": ["password", "refresh_token"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "token_endpoint_auth_signing_alg_values_supported": sorted(settings.keys.algorithms),
        }
    )


# ---- shared pieces ------------------------------------------------------------------------


async def _password_grant(request: web.Request, params: dict[str, Any]) -> web.Response:
    username = text_param(params, "username", required=True)
    password = text_param(params, "password", required=True)
    assert username is not None and password is not None
    device = Device(
        device_id=text_param(params, "device_id"),
        device_name=text_param(params, "device_name"),
        client_id=text_param(params, "client_id"),
        ip=request.remote,
        user_agent=(request.headers.get("User-Agent") or "")[:256] or None,
    )
    logins = request.app[METRICS].logins
    try:
        pair = await request.app[LOGIN].login(username, password, device)
    except GatewayError as exc:
        logins.labels(getattr(exc, "reason", exc.code)).inc()
        raise
    logins.labels("success").inc()
    return token_response(pair, request.app[CLOCK]())


async def _refresh_grant(request: web.Request, params: dict[str, Any]) -> web.Response:
    presented = text_param(params, "refresh_token", required=True)
    assert presented is not None
    outcomes = request.app[METRICS].refresh
    try:
        pair = await request.app[TOKEN_SERVICE].refresh(presented)
    except GatewayError as exc:
        outcomes.labels(getattr(exc, "reason", exc.code)).inc()
        raise
    outcomes.labels("grace_replay" if pair.outcome == "grace" else pair.outcome).inc()
    return token_response(pair, request.app[CLOCK]())


async def read_params(request: web.Request) -> dict[str, Any]:
    """JSON object or form body as a dict; 400 invalid_request for anything else."""
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError:
            raise InvalidRequest("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("the body must be a JSON object")
        return data
    if request.content_type == FORM:
        form = await request.post()
        params: dict[str, Any] = {}
        for name in form:
            values = form.getall(name)
            if len(values) > 1:  # RFC 6749 §3.1: parameters must not repeat
                raise InvalidRequest(f"parameter {name!r} repeated")
            params[name] = values[0]
        return params
    if not request.body_exists:
        return {}
    raise InvalidRequest("use application/json or application/x-www-form-urlencoded")


def text_param(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string")
    if len(value) > MAX_FIELD.get(name, 128) or not value.isprintable():
        raise InvalidRequest(f"{name} is too long or contains control characters")
    return value


def token_response(pair: TokenPair, now: float) -> web.Response:
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
    if session.scope:
        body["scope"] = session.scope
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


def optional_principal(request: web.Request) -> Principal | None:
    authenticator = request.app[AUTHENTICATOR]
    presented = bearer_token(request.headers, request.app[SETTINGS].proxy.realm)
    return None if presented is None else authenticator.principal_for(presented)


def required_principal(request: web.Request) -> Principal:
    principal = optional_principal(request)
    if principal is None:
        raise AuthenticationRequired(realm=request.app[SETTINGS].proxy.realm)
    return principal
