"""Signing in at an identity provider with the authorization code flow (OpenID Connect Core
§3.1): what the token service does once the browser is back with a code. The browser plane
(gateway.browser.provider_login) starts the flow and keeps its state, nonce and PKCE verifier
in a sealed cookie; here the code is redeemed (gateway.authserver.federation.code_redemption),
the ID token verified and bound to the attempt (gateway.tokens.code_flow_tokens), the user
mapped exactly as a token exchange maps them, and a normal session opened, which the
provider-session index records for back-channel logout.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.authserver.federation.code_redemption import ClientAuthentication, CodeRedemption
from gateway.authserver.federation.exchange import FederatedLogin
from gateway.authserver.revoker import Revoker
from gateway.authserver.token_service import Device, TokenPair, TokenService
from gateway.config import ProviderLoginSettings
from gateway.errors import InvalidGrant, ProviderUnavailable, ServiceFault, SignInFailed
from gateway.outbound.json_fetch import FetchFailed
from gateway.store.provider_sessions import ProviderSessionIndex
from gateway.tokens.code_flow_tokens import SignInBinding, verify_sign_in_id_token
from gateway.tokens.provider_discovery import ProviderMetadata
from gateway.tokens.providers import Provider
from gateway.typedefs import Clock

log = logging.getLogger("gateway.federation")


@dataclass(frozen=True, slots=True)
class ProviderLogin:
    """One provider that browsers sign in at: its settings, keys, verifier and discovery, how
    the gateway authenticates at its token endpoint, and how long its sessions may last."""

    provider: Provider
    settings: ProviderLoginSettings
    client: ClientAuthentication
    max_session_age: float | None

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def max_age(self) -> int | None:
        """`max_age` asked for in the authorization request (then auth_time is checked)."""
        value = self.settings.extra_params.get("max_age")
        return None if value is None else int(value)


@dataclass(frozen=True, slots=True)
class CodeGrant:
    """What came back to the callback, with what the login cookie kept of the attempt."""

    provider: str
    code: str
    verifier: str
    nonce: str
    redirect_uri: str


@dataclass(frozen=True, slots=True)
class SignedIn:
    pair: TokenPair
    id_token: str  # kept (sealed) in the browser for the provider's logout
    provider_sid: str | None


class CodeFlowLogin:
    """Completes sign-ins at the providers that have a `login` block."""

    def __init__(
        self,
        *,
        federation: FederatedLogin,
        logins: Sequence[ProviderLogin],
        redemption: CodeRedemption,
        tokens: TokenService,
        index: ProviderSessionIndex,
        revoker: Revoker,
        clock: Clock,
        leeway: float,
    ):
        self._federation = federation
        self.logins: Mapping[str, ProviderLogin] = {login.name: login for login in logins}
        self._redemption = redemption
        self._tokens = tokens
        self._index = index
        self._revoker = revoker
        self._clock = clock
        self._leeway = leeway

    async def metadata(self, login: ProviderLogin) -> ProviderMetadata:
        """The provider's endpoints from its discovery document; 503 when it cannot be had."""
        discovery = login.provider.discovery
        assert discovery is not None  # the settings require discovery with a login block
        try:
            return await discovery.metadata()
        except FetchFailed as exc:
            log.warning("sign-in: no discovery document provider=%s", login.name)
            raise ProviderUnavailable(
                "the identity provider cannot be reached right now", retry_after=30
            ) from exc

    async def complete(self, grant: CodeGrant, device: Device) -> SignedIn:
        """Redeem the code, verify the ID token, open the session and index it.

        Raises SignInFailed (the code or the ID token refused: 400), RateLimited,
        ProviderFailed/ProviderTimeout (its token endpoint: 502/504), ProviderUnavailable
        or StoreUnavailable (503)."""
        login = self.logins[grant.provider]
        await self._federation.within_rate_limit(device.ip)
        metadata = await self.metadata(login)
        if metadata.token_endpoint is None:
            raise ProviderUnavailable("the identity provider's discovery names no token endpoint")
        tokens = await self._redemption.redeem(
            login.name,
            metadata.token_endpoint,
            login.client,
            code=grant.code,
            verifier=grant.verifier,
            redirect_uri=grant.redirect_uri,
        )
        binding = SignInBinding(
            client_id=login.settings.client_id,
            nonce=grant.nonce,
            access_token=tokens.access_token,
            max_age=login.max_age,
        )
        try:
            claims = await verify_sign_in_id_token(
                login.provider.verifier,
                tokens.id_token,
                binding,
                clock=self._clock,
                leeway=self._leeway,
            )
        except InvalidGrant as exc:
            log.info("sign-in refused provider=%s reason=%s", login.name, exc.reason)
            raise SignInFailed(
                f"the identity provider's answer was refused: {exc.description}",
                reason=exc.reason,
            ) from exc
        identity = self._federation.identity_for(login.provider, claims)
        pair = await self._tokens.open_session(identity, device, lifetime=login.max_session_age)
        provider_sid = _text(claims.get("sid"))
        await self._indexed(login, pair, claims, provider_sid)
        log.info(
            "provider sign-in provider=%s sub=%s sid=%s", login.name, identity.sub, pair.session.sid
        )
        return SignedIn(pair, tokens.id_token, provider_sid)

    async def _indexed(
        self, login: ProviderLogin, pair: TokenPair, claims: Mapping[str, Any], sid: str | None
    ) -> None:
        """Record the session for back-channel logout; a session that cannot be found by
        its provider session is not handed out (it is ended again)."""
        try:
            await self._index.link(
                login.name,
                sub=claims[login.provider.settings.subject_claim],
                sid=sid,
                session_sid=pair.session.sid,
                until=pair.session.expires_at,
            )
        except ServiceFault:
            try:
                await self._revoker.end_session(pair.session.sid)
            except ServiceFault:
                log.warning("unindexed session left to expire sid=%s", pair.session.sid)
            raise


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 255 else None
