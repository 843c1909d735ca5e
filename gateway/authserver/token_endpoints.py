"""Token endpoints: login, refresh, token (RFC 6749), revoke (RFC 7009), logout."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.authserver.federation.grant import TOKEN_EXCHANGE_GRANT, ExchangeGrant
from gateway.authserver.login import LoginService
from gateway.authserver.responses import token_response
from gateway.authserver.revoker import Revoker
from gateway.authserver.token_service import Device, TokenService
from gateway.edge import NO_STORE
from gateway.edge.bodies import BodyReader
from gateway.edge.own_routes import own_routes
from gateway.edge.params import read_params, text_param
from gateway.errors import AuthenticationRequired, GatewayError, InvalidToken, UnsupportedGrantType
from gateway.observability.metrics import Metrics
from gateway.tokens.bearer import Authenticator
from gateway.typedefs import Clock


class TokenEndpoints:
    """The token service's HTTP face: /auth/login, /auth/refresh (and /refresh), /auth/token,
    /auth/revoke and /auth/logout."""

    def __init__(
        self,
        *,
        tokens: TokenService,
        login: LoginService,
        revoker: Revoker,
        authenticator: Authenticator,
        exchange: ExchangeGrant | None,
        bodies: BodyReader,
        metrics: Metrics,
        clock: Clock,
    ):
        self._tokens = tokens
        self._login = login
        self._revoker = revoker
        self._authenticator = authenticator
        self._exchange = exchange
        self._bodies = bodies
        self._logins = metrics.logins
        self._refreshes = metrics.refresh
        self._clock = clock

    def routes(self) -> list[web.RouteDef]:
        return own_routes(
            ("POST", "/auth/login", self.login),
            ("POST", "/auth/refresh", self.refresh),
            ("POST", "/refresh", self.refresh),
            ("POST", "/auth/token", self.token),
            ("POST", "/auth/revoke", self.revoke),
            ("POST", "/auth/logout", self.logout),
        )

    async def login(self, request: web.Request) -> web.Response:
        """POST /auth/login: JSON {username, password, device_id?, device_name?} or password
        grant."""
        params = await read_params(self._bodies, request)
        grant = params.get("grant_type")
        if grant is not None and grant != "password":
            raise UnsupportedGrantType()
        return await self._password_grant(request, params)

    async def refresh(self, request: web.Request) -> web.Response:
        """POST /auth/refresh and /refresh: rotate the refresh token, return a new pair."""
        params = await read_params(self._bodies, request)
        grant = params.get("grant_type")
        if grant is not None and grant != "refresh_token":
            raise UnsupportedGrantType()
        return await self._refresh_grant(params)

    async def token(self, request: web.Request) -> web.Response:
        """POST /auth/token: the OAuth 2.0 token endpoint (password, refresh_token and
        token-exchange grants)."""
        params = await read_params(self._bodies, request)
        grant = text_param(params, "grant_type", required=True)
        if grant == "password":
            return await self._password_grant(request, params)
        if grant == "refresh_token":
            return await self._refresh_grant(params)
        if grant == TOKEN_EXCHANGE_GRANT:
            if self._exchange is None:
                raise UnsupportedGrantType("no identity providers are configured")
            return await self._exchange.answer(request, params)
        raise UnsupportedGrantType()

    async def revoke(self, request: web.Request) -> web.Response:
        """POST /auth/revoke (RFC 7009): 200 whether or not the token was known."""
        params = await read_params(self._bodies, request)
        presented = text_param(params, "token", required=True)
        assert presented is not None
        session = await self._tokens.session_for_refresh_token(presented)
        if session is not None:
            await self._revoker.end_session(session.sid)
            return web.Response(status=200, headers=NO_STORE)
        try:
            principal = self._authenticator.principal_for(presented)
        except InvalidToken:
            principal = None  # unknown, expired or already revoked: nothing to do
        if principal is not None:
            await self._revoker.revoke_access_token(principal.jti, principal.exp)
        return web.Response(status=200, headers=NO_STORE)

    async def logout(self, request: web.Request) -> web.Response:
        """POST /auth/logout: end the session named by the access token and/or refresh
        token."""
        params = await read_params(self._bodies, request) if request.body_exists else {}
        presented = text_param(params, "refresh_token")
        try:
            principal = self._authenticator.caller(request)
        except InvalidToken:
            if not presented:
                raise
            # An expired (or otherwise refused) access token does not stand in the way: the
            # refresh token alone is enough to end its own session.
            principal = None
        if principal is None and not presented:
            raise AuthenticationRequired("an access token or refresh token is required")
        sids = set()
        if principal is not None:
            sids.add(principal.sid)
        if presented:
            session = await self._tokens.session_for_refresh_token(presented)
            if session is not None:
                sids.add(session.sid)
        for sid in sids:
            await self._revoker.end_session(sid)
        return web.Response(status=204, headers=NO_STORE)

    async def _password_grant(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        username = text_param(params, "username", required=True)
        password = text_param(params, "password", required=True)
        assert username is not None and password is not None
        device = Device.from_params(request, params)
        try:
            pair = await self._login.login(username, password, device)
        except GatewayError as exc:
            self._logins.labels(getattr(exc, "reason", exc.code)).inc()
            raise
        self._logins.labels("success").inc()
        return token_response(pair, self._clock())

    async def _refresh_grant(self, params: dict[str, Any]) -> web.Response:
        presented = text_param(params, "refresh_token", required=True)
        assert presented is not None
        try:
            pair = await self._tokens.refresh(presented)
        except GatewayError as exc:
            self._refreshes.labels(getattr(exc, "reason", exc.code)).inc()
            raise
        outcome = "grace_replay" if pair.outcome == "grace" else pair.outcome
        self._refreshes.labels(outcome).inc()
        return token_response(pair, self._clock())
