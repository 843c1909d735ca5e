"""The token-exchange grant of POST /auth/token (RFC 8693 §2): request in, token response
plus `issued_token_type` out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from aiohttp import web

from gateway.authserver.federation.exchange import FederatedLogin
from gateway.authserver.responses import token_response
from gateway.authserver.token_service import Device
from gateway.edge.params import text_param
from gateway.errors import InvalidRequest
from gateway.typedefs import Clock

TOKEN_EXCHANGE_GRANT: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:access_token"


class ExchangeGrant:
    """`grant_type=urn:ietf:params:oauth:grant-type:token-exchange` with `subject_token` and
    `subject_token_type`; `device_id`, `device_name` and `client_id` as for a login."""

    def __init__(self, federation: FederatedLogin, *, clock: Clock):
        self._federation = federation
        self._clock = clock

    async def answer(
        self, request: web.Request, params: dict[str, Any], *, client_id: str | None = None
    ) -> web.Response:
        """The exchange for the (registered, authenticated) client `client_id`, if any."""
        subject_token = text_param(params, "subject_token", required=True)
        subject_token_type = text_param(params, "subject_token_type", required=True)
        assert subject_token is not None and subject_token_type is not None
        if params.get("actor_token") is not None:
            raise InvalidRequest("delegation (actor_token) is not supported")
        requested = text_param(params, "requested_token_type")
        if requested is not None and requested != ACCESS_TOKEN_TYPE:
            raise InvalidRequest(f"requested_token_type must be {ACCESS_TOKEN_TYPE}")
        device = replace(
            Device.from_params(request, {**params, "client_id": None}), client_id=client_id
        )
        scope = text_param(params, "scope")
        pair = await self._federation.exchange(
            subject_token, subject_token_type, device, scope=scope
        )
        return token_response(pair, self._clock(), extra={"issued_token_type": ACCESS_TOKEN_TYPE})
