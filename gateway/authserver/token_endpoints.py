"""Token endpoints: login, refresh, token (RFC 6749), revoke (RFC 7009), logout.

POST /auth/token authenticates the client first (gateway.authserver.client_auth: a client
the request names must be registered and prove itself as registered), then hands the grant
to its class: password and refresh_token here, authorization_code
(authserver/code_grant.py), client_credentials (authserver/client_credentials_grant.py),
the token exchange (authserver/federation/grant.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aiohttp import web

from gateway.authserver.client_auth import ClientAuthenticator
from gateway.authserver.client_credentials_grant import ClientCredentialsGrant
from gateway.authserver.client_registry import Client
from gateway.authserver.code_grant import AuthorizationCodeGrant
from gateway.authserver.federation.grant import TOKEN_EXCHANGE_GRANT, ExchangeGrant
from gateway.authserver.login import LoginService
from gateway.authserver.responses import token_response
from gateway.authserver.revoker import Revoker
from gateway.authserver.token_service import Device, TokenService
from gateway.edge import NO_STORE
from gateway.edge.bodies import BodyReader
from gateway.edge.own_routes import own_routes
from gateway.edge.params import read_params, text_param
from gateway.errors import (
    AuthenticationRequired,
    ClientAuthFailed,
    GatewayError,
    InvalidGrant,
    InvalidToken,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from gateway.observability.metrics import Metrics
from gateway.store import Session
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
        clients: ClientAuthenticator,
        code_grant: AuthorizationCodeGrant | None,
        machine_grant: ClientCredentialsGrant,
        password_grant: bool,
        bodies: BodyReader,
        metrics: Metrics,
        clock: Clock,
    ):
        self._clients = clients
        self._code_grant = code_grant
        self._machine_grant = machine_grant
        self._password_grant_on = password_grant
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
        if not self._password_grant_on:
            raise UnsupportedGrantType("the password grant is not enabled (auth.password_grant)")
        params = await read_params(self._bodies, request)
        grant = params.get("grant_type")
        if grant is not None and grant != "password":
            raise UnsupportedGrantType()
        client = await self._client(request, params)
        return await self._password_grant(request, params, client)

    async def refresh(self, request: web.Request) -> web.Response:
        """POST /auth/refresh and /refresh: rotate the refresh token, return a new pair."""
        params = await read_params(self._bodies, request)
        grant = params.get("grant_type")
        if grant is not None and grant != "refresh_token":
            raise UnsupportedGrantType()
        client = await self._client(request, params)
        return await self._refresh_grant(params, client)

    async def token(self, request: web.Request) -> web.Response:
        """POST /auth/token: the OAuth 2.0 token endpoint (password, refresh_token,
        authorization_code, client_credentials and token-exchange grants)."""
        params = await read_params(self._bodies, request)
        grant = text_param(params, "grant_type", required=True)
        if grant == "password" and not self._password_grant_on:
            raise UnsupportedGrantType("the password grant is not enabled (auth.password_grant)")
        if grant not in self.grants():
            raise UnsupportedGrantType()
        client = await self._client(request, params)
        if grant == "password":
            return await self._password_grant(request, params, client)
        if grant == "refresh_token":
            return await self._refresh_grant(params, client)
        if grant == "authorization_code":
            assert self._code_grant is not None
            return await self._code_grant.answer(request, params, client)
        if grant == "client_credentials":
            return await self._machine_grant.answer(params, client)
        assert grant == TOKEN_EXCHANGE_GRANT and self._exchange is not None
        _require_grant(client, TOKEN_EXCHANGE_GRANT)
        return await self._exchange.answer(
            request, params, client_id=client.id if client is not None else None
        )

    def grants(self) -> list[str]:
        """The grants this endpoint serves (for the RFC 8414 metadata too)."""
        grants = ["password"] if self._password_grant_on else []
        grants.append("refresh_token")
        if self._code_grant is not None:
            grants.append("authorization_code")
        if any(c.allows("client_credentials") for c in self._clients.registry):
            grants.append("client_credentials")
        if self._exchange is not None:
            grants.append(TOKEN_EXCHANGE_GRANT)
        return grants

    async def revoke(self, request: web.Request) -> web.Response:
        """POST /auth/revoke (RFC 7009): 200 whether or not the token was known."""
        params = await read_params(self._bodies, request)
        await self._client(request, params)  # credentials, when sent, must be right
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

    async def _client(self, request: web.Request, params: dict[str, Any]) -> Client | None:
        """The client the request names, authenticated as registered (None: no client)."""
        return await self._clients.authenticate(request.headers.getall("Authorization", []), params)

    async def _password_grant(
        self, request: web.Request, params: dict[str, Any], client: Client | None
    ) -> web.Response:
        _require_grant(client, "password")
        username = text_param(params, "username", required=True)
        password = text_param(params, "password", required=True)
        scope = text_param(params, "scope")
        assert username is not None and password is not None
        device = replace(
            Device.from_params(request, {**params, "client_id": None}),
            client_id=client.id if client is not None else None,
        )
        try:
            pair = await self._login.login(
                username,
                password,
                device,
                scope=scope,
                within=client.scopes if client is not None and client.scopes else None,
            )
        except GatewayError as exc:
            self._logins.labels(getattr(exc, "reason", exc.code)).inc()
            raise
        self._logins.labels("success").inc()
        return token_response(pair, self._clock())

    async def _refresh_grant(self, params: dict[str, Any], client: Client | None) -> web.Response:
        _require_grant(client, "refresh_token")
        presented = text_param(params, "refresh_token", required=True)
        scope = text_param(params, "scope")
        assert presented is not None
        try:
            pair = await self._tokens.refresh(presented, check=self._issued_to(client), scope=scope)
        except GatewayError as exc:
            self._refreshes.labels(getattr(exc, "reason", exc.code)).inc()
            raise
        outcome = "grace_replay" if pair.outcome == "grace" else pair.outcome
        self._refreshes.labels(outcome).inc()
        return token_response(pair, self._clock())

    def _issued_to(self, client: Client | None) -> Callable[[Session], None]:
        """RFC 6749 §6: a refresh token works only for the client it was issued to; one
        issued to a confidential client needs that client's authentication."""

        def check(session: Session) -> None:
            owner = session.client_id
            if client is not None and owner != client.id:
                raise InvalidGrant(
                    "the refresh token was issued to another client", reason="wrong_client"
                )
            if client is None and owner is not None:
                registered = self._clients.registry.get(owner)
                if registered is not None and registered.type == "confidential":
                    raise ClientAuthFailed("the client must authenticate to refresh")

        return check


def _require_grant(client: Client | None, grant: str) -> None:
    """An identified client uses only the grants it is registered for."""
    if client is not None and not client.allows(grant):
        raise UnauthorizedClient(f"this client is not registered for the {grant} grant"[:90])
