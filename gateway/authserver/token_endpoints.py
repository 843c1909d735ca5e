"""Token endpoints: login, refresh, token (RFC 6749), revoke (RFC 7009), logout."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.appkeys import AUTHENTICATOR, CLOCK, LOGIN, METRICS, REVOKER, TOKEN_SERVICE
from gateway.authserver.federation.grant import TOKEN_EXCHANGE_GRANT, exchange_grant
from gateway.authserver.params import optional_principal, read_params, text_param
from gateway.authserver.responses import token_response
from gateway.authserver.token_service import Device
from gateway.edge import NO_STORE
from gateway.errors import (
    AuthenticationRequired,
    GatewayError,
    InvalidToken,
    UnsupportedGrantType,
)


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
    """POST /auth/token: the OAuth 2.0 token endpoint (password, refresh_token and
    token-exchange grants)."""
    params = await read_params(request)
    grant = text_param(params, "grant_type", required=True)
    if grant == "password":
        return await _password_grant(request, params)
    if grant == "refresh_token":
        return await _refresh_grant(request, params)
    if grant == TOKEN_EXCHANGE_GRANT:
        return await exchange_grant(request, params)
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
    params = await read_params(request) if request.body_exists else {}
    presented = text_param(params, "refresh_token")
    try:
        principal = optional_principal(request)
    except InvalidToken:
        if not presented:
            raise
        # An expired (or otherwise refused) access token does not stand in the way: the refresh
        # token alone is enough to end its own session.
        principal = None
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
