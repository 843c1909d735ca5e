"""Bearer tokens on routes that accept more than the gateway's own (`routes[].accept`): the
token's unverified `iss` only *selects* whose policy applies (the gateway's verifier, or an
accepted provider's); the token must then verify under that policy, and pass the same
revocation view (a `jti`, `sid` or user revocation). A token from an issuer the route does
not take — a gateway token where only a provider is accepted, a provider's token where only
the gateway is — is 401 invalid_token.

Routes that take only the gateway's tokens never come here: they keep the synchronous path
of gateway.tokens.bearer.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from gateway.errors import InvalidToken
from gateway.tokens.bearer import Authenticator, RevocationCheck
from gateway.tokens.provider_access import ProviderAccessVerifier, peek_claims
from gateway.tokens.verifier import Principal

OWN_ISSUER = "gateway"  # the name routes give the gateway's own tokens in `accept`
RejectionRecorder = Callable[[str, str], None]  # (issuer, reason)


def _no_record(_issuer: str, _reason: str) -> None:
    return None


class RouteIssuers:
    """Who a bearer token speaks for on a route accepting several issuers."""

    def __init__(
        self,
        authenticator: Authenticator,
        revocations: RevocationCheck,
        *,
        own_issuer: str,
        providers: Sequence[ProviderAccessVerifier],
        record_rejection: RejectionRecorder = _no_record,
    ):
        self._authenticator = authenticator
        self._revocations = revocations
        self._own_issuer = own_issuer
        self._providers = tuple(providers)
        self._by_issuer = {p.issuer: p for p in providers}
        self._record = record_rejection

    async def principal_for(self, token: str, accept: Collection[str]) -> Principal:
        """The verified, unrevoked Principal of a token from an issuer in `accept`."""
        for provider in self._providers:  # a provider token verified before: no parsing
            cached = provider.cached(token)
            if cached is not None:
                if provider.name not in accept:
                    raise _not_accepted()
                self._revocations.check(cached)
                return cached
        header, claims = peek_claims(token)
        issuer = claims.get("iss")
        # SECURITY: the unverified issuer only chooses the policy; nothing is trusted before
        # the token verifies under it.
        if issuer == self._own_issuer:
            if OWN_ISSUER not in accept:
                raise _not_accepted()
            return self._authenticator.principal_for(token)
        chosen = self._by_issuer.get(issuer) if isinstance(issuer, str) else None
        if chosen is None or chosen.name not in accept:
            raise _not_accepted()
        try:
            principal = await chosen.verify(token, header)
        except InvalidToken as exc:
            self._record(chosen.name, exc.reason)
            raise
        self._revocations.check(principal)
        return principal


def _not_accepted() -> InvalidToken:
    return InvalidToken(
        "this route does not accept tokens of this issuer", reason="issuer_not_accepted"
    )
