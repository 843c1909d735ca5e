"""The token-exchange grant of POST /auth/token (RFC 8693 §2): request in, token response
plus `issued_token_type` out."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from gateway.appkeys import CLOCK, FEDERATION
from gateway.authserver.params import text_param
from gateway.authserver.responses import token_response
from gateway.authserver.token_service import Device
from gateway.errors import InvalidRequest, UnsupportedGrantType

TOKEN_EXCHANGE_GRANT: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:access_token"


async def exchange_grant(request: web.Request, params: dict[str, Any]) -> web.Response:
    """`grant_type=urn:ietf:params:oauth:grant-type:token-exchange` with `subject_token` and
    `subject_token_type`; `device_id`, `device_name` and `client_id` as for a login."""
    federation = request.app.get(FEDERATION)
    if federation is None or not federation.providers:
        raise UnsupportedGrantType("no identity providers are configured")
    subject_token = text_param(params, "subject_token", required=True)
    subject_token_type = text_param(params, "subject_token_type", required=True)
    assert subject_token is not None and subject_token_type is not None
    if params.get("actor_token") is not None:
        raise InvalidRequest("delegation (actor_token) is not supported")
    requested = text_param(params, "requested_token_type")
    if requested is not None and requested != ACCESS_TOKEN_TYPE:
        raise InvalidRequest(f"requested_token_type must be {ACCESS_TOKEN_TYPE}")
    device = Device(
        device_id=text_param(params, "device_id"),
        device_name=text_param(params, "device_name"),
        client_id=text_param(params, "client_id"),
        ip=request.remote,
        user_agent=(request.headers.get("User-Agent") or "")[:256] or None,
    )
    pair = await federation.exchange(subject_token, subject_token_type, device)
    return token_response(
        pair, request.app[CLOCK](), extra={"issued_token_type": ACCESS_TOKEN_TYPE}
    )
