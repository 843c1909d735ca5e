"""POST /auth/backchannel-logout: OpenID Connect Back-Channel Logout 1.0. A provider posts a
logout token (form `logout_token`) when a user's session there ends; every gateway session
that provider session (`sid`) opened, or, with only a `sub`, every session that provider's
sign-ins opened for that user, ends through the revoker, so every instance refuses its
tokens within the revocation propagation time. Each such logout is audited.

200 when the token is valid (also when no session was left to end), 400 invalid_request
otherwise (§2.8); `Cache-Control: no-store` on both. A token's `jti` is accepted once within
its lifetime (given back when ending the sessions failed, so the provider's retry works).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Final

from aiohttp import web

from gateway.authserver.federation.code_flow import ProviderLogin
from gateway.authserver.federation.exchange import FederatedLogin
from gateway.authserver.revoker import Revoker
from gateway.edge import NO_STORE
from gateway.edge.bodies import BodyReader
from gateway.edge.own_routes import post_only
from gateway.edge.params import read_params
from gateway.errors import InvalidRequest, ServiceFault
from gateway.store import AuditLog, OneTimeIds
from gateway.store.provider_sessions import SID, SUB, ProviderSessionIndex
from gateway.tokens.logout_tokens import (
    LogoutToken,
    peek_logout_token,
    refused,
    verify_logout_token,
)
from gateway.typedefs import Clock

log = logging.getLogger("gateway.federation")

PATH: Final = "/auth/backchannel-logout"
MAX_LOGOUT_TOKEN: Final = 16 * 1024
Recorder = Callable[[str, str], None]  # (provider, outcome)


def _no_record(_provider: str, _outcome: str) -> None:
    return None


class BackchannelLogout:
    """The back-channel logout endpoint over the provider-session index and the revoker."""

    def __init__(
        self,
        *,
        federation: FederatedLogin,
        logins: Mapping[str, ProviderLogin],
        index: ProviderSessionIndex,
        revoker: Revoker,
        one_time: OneTimeIds,
        audit: AuditLog,
        bodies: BodyReader,
        clock: Clock,
        leeway: float,
        record: Recorder = _no_record,
    ):
        self._federation = federation
        self._logins = logins
        self._index = index
        self._revoker = revoker
        self._one_time = one_time
        self._audit = audit
        self._bodies = bodies
        self._clock = clock
        self._leeway = leeway
        self._record = record

    def routes(self) -> list[web.RouteDef]:
        return post_only((PATH, self.logout))

    async def logout(self, request: web.Request) -> web.Response:
        """POST /auth/backchannel-logout (form `logout_token`)."""
        name = "unknown"
        try:
            token = await self._verified(request)
            name = token.provider
            ended = await self._end_sessions(token, request.remote)
        except InvalidRequest as exc:
            self._record(name, "refused")
            log.info("back-channel logout refused provider=%s: %s", name, exc.description)
            raise
        self._record(name, "ended" if ended else "no_sessions")
        return web.Response(status=200, headers=NO_STORE)

    async def _verified(self, request: web.Request) -> LogoutToken:
        params = await read_params(self._bodies, request)
        raw = params.get("logout_token")
        if not isinstance(raw, str) or not raw:
            raise InvalidRequest("logout_token is required")
        if len(raw) > MAX_LOGOUT_TOKEN:
            raise InvalidRequest("logout_token is too long")
        peeked = peek_logout_token(raw)
        # SECURITY: the unverified `iss` only selects whose keys and client id apply; an
        # issuer that browsers do not sign in at is refused before anything is fetched.
        provider = self._federation.provider_for_issuer(peeked.claims.get("iss"))
        login = self._logins.get(provider.name) if provider is not None else None
        if provider is None or login is None:
            raise refused("the logout token's issuer is not a provider browsers sign in at")
        return await verify_logout_token(
            provider,
            peeked,
            client_id=login.settings.client_id,
            clock=self._clock,
            leeway=self._leeway,
        )

    async def _end_sessions(self, token: LogoutToken, source: str | None) -> list[str]:
        scope = f"backchannel-logout:{token.provider}"
        # SECURITY: a captured logout token replayed later must not end the sessions the user
        # opened since: its jti counts once within the token's lifetime.
        if not await self._one_time.claim(scope, token.jti, until=token.usable_until):
            raise refused("the logout token was used before")
        kind, ident = (SID, token.sid) if token.sid is not None else (SUB, token.sub)
        assert ident is not None
        try:
            sids = await self._index.sessions(token.provider, kind, ident)
            for sid in sids:
                await self._revoker.end_session(sid)
            if sids:
                await self._index.forget(token.provider, kind, ident, sids)
            await self._audit.record(
                actor=f"idp:{token.provider}",
                action="backchannel_logout",
                target=f"{token.provider} {kind} {ident}",
                source=source,
                detail={"sessions": sids, "jti": token.jti, "sid": token.sid, "sub": token.sub},
            )
        except ServiceFault:
            await self._give_back(scope, token.jti)
            raise
        log.info(
            "back-channel logout provider=%s %s=%s sessions=%d",
            token.provider,
            kind,
            ident,
            len(sids),
        )
        return sids

    async def _give_back(self, scope: str, jti: str) -> None:
        try:
            await self._one_time.release(scope, jti)
        except ServiceFault:
            log.warning("back-channel logout: jti not given back (store unavailable)")
