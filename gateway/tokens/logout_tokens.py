"""Logout tokens of OpenID Connect Back-Channel Logout 1.0 (§2.4, validated as §2.6 says):
signed by the provider the unverified `iss` names (its policy and keys: nothing is trusted
before the signature checks out), `aud` naming our client id, `iat` not in the future nor
older than the provider's `max_token_age`, `exp` (when present) not passed, the back-channel
logout event, a `sid` and/or a `sub`, no `nonce` (an ID token is never a logout token), and
a `jti` (the caller makes sure it is used once within the token's lifetime).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import InvalidGrant, InvalidRequest
from gateway.tokens.provider_tokens import MAX_SUBJECT_LENGTH, PeekedToken, peek
from gateway.tokens.providers import Provider
from gateway.typedefs import Clock

BACKCHANNEL_EVENT: Final = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TYP: Final = "logout+jwt"
_NUMBERS: Final = (int, float)
_NOT_LOGOUT_TYPS: Final = frozenset({"at+jwt", "application/at+jwt", "id_token+jwt"})


@dataclass(frozen=True, slots=True)
class LogoutToken:
    """A verified logout token: whose sessions end, and until when its `jti` is claimed."""

    provider: str
    jti: str
    sid: str | None
    sub: str | None
    usable_until: float  # the token is refused after this anyway: its jti is kept till then


def peek_logout_token(token: str) -> PeekedToken:
    try:
        return peek(token)
    except InvalidGrant:  # a logout request is answered invalid_request (§2.8)
        raise refused("the logout token is not a signed JWT") from None


async def verify_logout_token(
    provider: Provider, peeked: PeekedToken, *, client_id: str, clock: Clock, leeway: float
) -> LogoutToken:
    """The verified logout token; InvalidRequest (400) saying why otherwise.

    `provider` is the one the unverified `iss` selected; its keys must verify the signature,
    so a token signed by another provider names an unknown key here."""
    typ = peeked.header.get("typ")
    if isinstance(typ, str) and typ.lower() in _NOT_LOGOUT_TYPS:
        raise refused("the token is not a logout token")
    try:
        claims = await provider.verifier.signed_claims(peeked)
    except InvalidGrant as exc:  # its description says why (keys unavailable stay a 503)
        raise refused(f"the logout token was refused: {exc.description}") from None
    if claims.get("iss") != provider.settings.issuer:
        raise refused("the logout token has the wrong issuer")
    _check_audience(claims, client_id)
    usable_until = _check_times(claims, provider, clock(), leeway)
    events = claims.get("events")
    if not isinstance(events, Mapping) or not isinstance(events.get(BACKCHANNEL_EVENT), Mapping):
        raise refused("the logout token lacks the back-channel logout event")
    if "nonce" in claims:
        raise refused("a logout token must not carry a nonce")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise refused("the logout token has no jti")
    sid, sub = _text(claims, "sid"), _text(claims, "sub")
    if sid is None and sub is None:
        raise refused("the logout token names neither a sid nor a sub")
    return LogoutToken(provider.name, jti, sid, sub, usable_until)


def refused(description: str) -> InvalidRequest:
    return InvalidRequest(description)


def _check_audience(claims: Mapping[str, Any], client_id: str) -> None:
    audience = claims.get("aud")
    names = [audience] if isinstance(audience, str) else audience
    if not isinstance(names, list) or client_id not in names:
        raise refused("the logout token is for another client")


def _check_times(claims: Mapping[str, Any], provider: Provider, now: float, leeway: float) -> float:
    iat, exp = claims.get("iat"), claims.get("exp")
    if type(iat) not in _NUMBERS or (exp is not None and type(exp) not in _NUMBERS):
        raise refused("the logout token lacks a valid iat")
    assert isinstance(iat, int | float)
    if iat > now + leeway:
        raise refused("the logout token is not valid yet")
    until = iat + provider.settings.max_token_age
    if isinstance(exp, int | float):
        until = min(until, exp)
    if now > until + leeway:
        raise refused("the logout token has expired")
    return until + leeway


def _text(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_SUBJECT_LENGTH:
        raise refused(f"the logout token's {name} is not usable")
    return value
