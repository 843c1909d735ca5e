"""FederatedLogin: a provider's token in, a normal session out (RFC 8693 token exchange).

The session it opens is like a password login's (devices, rotation, reuse detection,
revocation); the token endpoint and the browser login both call `exchange`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from gateway.authserver.credentials import Identity
from gateway.authserver.federation.identities import federated_identity
from gateway.authserver.scopes import narrowed
from gateway.authserver.token_service import Device, TokenPair, TokenService
from gateway.config import RateLimit
from gateway.errors import InvalidGrant, InvalidRequest, ProviderUnavailable, RateLimited
from gateway.store import RateLimiter
from gateway.tokens.provider_tokens import (
    ID_TOKEN_TYPE,
    SUBJECT_TOKEN_TYPES,
    peek,
)
from gateway.tokens.providers import Provider

log = logging.getLogger("gateway.federation")

SCOPE_IP = "login-ip"  # the same per-IP budget as password logins
UNKNOWN_PROVIDER = "unknown"
LoginRecorder = Callable[[str, str], None]  # (provider, outcome)


def _no_record(_provider: str, _outcome: str) -> None:
    return None


class FederatedLogin:
    """Exchanges identity-provider tokens for the gateway's token pair."""

    def __init__(
        self,
        providers: Sequence[Provider],
        tokens: TokenService,
        *,
        own_issuer: str,
        limiter: RateLimiter,
        per_ip: RateLimit,
        links: Mapping[str, Identity],
        record: LoginRecorder = _no_record,
    ):
        self.providers = tuple(providers)
        self._by_issuer = {p.settings.issuer: p for p in providers}
        self._tokens = tokens
        self._own_issuer = own_issuer
        self._limiter = limiter
        self._per_ip = per_ip
        self._links = dict(links)
        self._record = record

    async def exchange(
        self,
        subject_token: str,
        subject_token_type: str,
        device: Device,
        *,
        scope: str | None = None,
    ) -> TokenPair:
        """Verify the provider token and open a session for whom it names.

        Raises InvalidRequest (unsupported token type), InvalidGrant (the token is refused),
        RateLimited, ProviderUnavailable (its keys cannot be had: 503) or StoreUnavailable.
        """
        if subject_token_type not in SUBJECT_TOKEN_TYPES:
            raise InvalidRequest(
                "subject_token_type must be urn:ietf:params:oauth:token-type:id_token or "
                "urn:ietf:params:oauth:token-type:jwt"
            )
        allowed, retry = await self._limiter.hit(
            SCOPE_IP, device.ip or "unknown", limit=self._per_ip.limit, window=self._per_ip.window
        )
        if not allowed:
            raise RateLimited("too many login attempts from this address", retry_after=retry)
        name = UNKNOWN_PROVIDER
        try:
            peeked = peek(subject_token)
            provider = self._provider_for(peeked.claims.get("iss"))
            name = provider.name
            claims = await provider.verifier.verify(
                peeked, id_token=subject_token_type == ID_TOKEN_TYPE
            )
            identity = federated_identity(provider.settings, claims, self._links)
            if scope is not None:  # only ever narrower than the identity's own scope
                identity = replace(identity, scope=narrowed(scope, (identity.scope or "").split()))
            pair = await self._tokens.open_session(identity, device)
        except InvalidGrant as exc:
            self._record(name, exc.reason)
            log.info("federated login refused provider=%s reason=%s", name, exc.reason)
            raise
        except ProviderUnavailable:
            self._record(name, "provider_unavailable")
            raise
        self._record(name, "success")
        log.info("federated login provider=%s sub=%s sid=%s", name, identity.sub, pair.session.sid)
        return pair

    def _provider_for(self, issuer: object) -> Provider:
        # SECURITY: the unverified `iss` only selects whose policy and keys apply; an issuer
        # that is not configured is refused before anything is fetched.
        if isinstance(issuer, str) and issuer.rstrip("/") == self._own_issuer.rstrip("/"):
            raise InvalidGrant(
                "the gateway's own tokens cannot be exchanged; use refresh_token",
                reason="own_token",
            )
        provider = self._by_issuer.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            raise InvalidGrant(
                "the token's issuer is not a configured identity provider",
                reason="unknown_issuer",
            )
        return provider

    async def warm_up(self) -> None:
        """Fetch every provider's keys (failures are logged; exchanges retry later)."""
        for provider in self.providers:
            await provider.keys.warm_up()

    async def close(self) -> None:
        for provider in self.providers:
            await provider.keys.close()
            if provider.discovery is not None:
                await provider.discovery.close()

    def identity_for(self, provider: Provider, claims: Mapping[str, Any]) -> Identity:
        """Who a provider's verified token signs in as, exactly as for an exchange."""
        return federated_identity(provider.settings, claims, self._links)

    def provider_named(self, name: str) -> Provider | None:
        return next((p for p in self.providers if p.name == name), None)

    def provider_for_issuer(self, issuer: object) -> Provider | None:
        """The configured provider whose `iss` this is (the gateway's own is none)."""
        return self._by_issuer.get(issuer) if isinstance(issuer, str) else None

    async def within_rate_limit(self, ip: str | None) -> None:
        """The per-IP login budget (shared with password logins); RateLimited when spent."""
        allowed, retry = await self._limiter.hit(
            SCOPE_IP, ip or "unknown", limit=self._per_ip.limit, window=self._per_ip.window
        )
        if not allowed:
            raise RateLimited("too many login attempts from this address", retry_after=retry)
