"""Verifying an identity provider's token (ID token or JWT) with a policy fixed by the
provider's configuration: algorithm allowlist, key from its JWKS only, issuer, audience
(and `azp` when there are several), times with the gateway's clock and leeway, maximum age,
required claim values and a string subject.

Its one use of the unverified token is `peek`: reading `iss` to choose which provider's
policy applies; nothing is trusted before the signature checks out. PyJWT's errors end here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt

from gateway.config import ProviderSettings
from gateway.errors import InvalidGrant
from gateway.safejson import parse_json
from gateway.tokens.jws import MalformedToken, b64url_decode, split_compact
from gateway.tokens.provider_keys import ProviderKeys
from gateway.typedefs import Clock

ID_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:id_token"
JWT_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:jwt"
SUBJECT_TOKEN_TYPES: Final = frozenset({ID_TOKEN_TYPE, JWT_TOKEN_TYPE})
ACCESS_TOKEN_TYPS: Final = frozenset({"at+jwt", "application/at+jwt"})
KEY_REFERENCE_HEADERS: Final = ("jku", "x5u", "jwk", "x5c")
MAX_SUBJECT_LENGTH: Final = 255
_NUMBERS: Final = (int, float)


@dataclass(frozen=True, slots=True)
class PeekedToken:
    """A compact JWS split and decoded, nothing verified yet."""

    token: str
    header: Mapping[str, Any]
    claims: Mapping[str, Any]


def peek(token: str) -> PeekedToken:
    """Header and claims of a compact JWS, unverified; 400 invalid_grant when it is none."""
    try:
        header_segment, payload_segment, _ = split_compact(token)
        header = parse_json(b64url_decode(header_segment))
        claims = parse_json(b64url_decode(payload_segment))
    except (MalformedToken, ValueError):
        raise InvalidGrant("the subject token is not a signed JWT", reason="malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise InvalidGrant("the subject token is not a signed JWT", reason="malformed")
    return PeekedToken(token, header, claims)


class ProviderTokenVerifier:
    """Checks one provider's tokens; returns their verified claims or raises InvalidGrant."""

    def __init__(
        self, provider: ProviderSettings, keys: ProviderKeys, *, leeway: float, clock: Clock
    ):
        self._provider = provider
        self._keys = keys
        self._leeway = leeway
        self._clock = clock
        self._algorithms = frozenset(provider.algorithms)
        self._audiences = frozenset(provider.audiences)

    async def verify(self, peeked: PeekedToken, *, id_token: bool) -> dict[str, Any]:
        header = peeked.header
        # SECURITY: the allowlist is the provider's configuration, never the token's header:
        # `none` and HMAC algorithms (HS256 keyed with the provider's public key) are not on it.
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise _refused("the token's algorithm is not allowed", "bad_algorithm")
        # SECURITY: keys come from the configured JWKS only; a token pointing at its own key
        # (jku, x5u, jwk, x5c) is an attempt to choose the key that verifies it.
        if any(name in header for name in KEY_REFERENCE_HEADERS):
            raise _refused("the token names its own key source", "key_reference")
        if "crit" in header:
            raise _refused("the token uses unsupported header extensions", "malformed")
        if id_token:
            self._check_id_token_shape(header, peeked.claims)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _refused("the token's kid is not a string", "malformed")
        key = await self._keys.key(kid, alg)
        claims = _signed_claims(peeked.token, key.public, alg)
        self._check_claims(claims)
        return claims

    async def signed_claims(self, peeked: PeekedToken) -> dict[str, Any]:
        """The claims of a token whose header fits the provider's policy and whose signature
        one of its keys verifies; no claim checked yet (logout tokens have rules of their
        own: gateway.tokens.logout_tokens)."""
        header = peeked.header
        alg = header.get("alg")
        # SECURITY: as in `verify`: the provider's allowlist, keys from its JWKS only.
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise _refused("the token's algorithm is not allowed", "bad_algorithm")
        if any(name in header for name in KEY_REFERENCE_HEADERS):
            raise _refused("the token names its own key source", "key_reference")
        if "crit" in header:
            raise _refused("the token uses unsupported header extensions", "malformed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _refused("the token's kid is not a string", "malformed")
        key = await self._keys.key(kid, alg)
        return _signed_claims(peeked.token, key.public, alg)

    def _check_id_token_shape(self, header: Mapping[str, Any], claims: Mapping[str, Any]) -> None:
        """An ID token was announced: an access token (RFC 9068 `typ`, Cognito's
        `token_use`) is refused even when its audience happens to match."""
        typ = header.get("typ")
        token_use = claims.get("token_use")
        if (isinstance(typ, str) and typ.lower() in ACCESS_TOKEN_TYPS) or (
            token_use is not None and token_use != "id"
        ):
            raise _refused("an ID token is required, not an access token", "wrong_token_type")

    def _check_claims(self, claims: dict[str, Any]) -> None:
        p = self._provider
        if claims.get("iss") != p.issuer:
            raise _refused("the token has the wrong issuer", "wrong_issuer")
        self._check_audience(claims)
        self._check_times(claims)
        for name, expected in p.required_claims.items():
            if not _claim_equals(claims.get(name), expected):
                raise _refused(f"the token's {name} claim is not as required", "claim_mismatch")
        subject = claims.get(p.subject_claim)
        if (
            not isinstance(subject, str)
            or not subject
            or len(subject) > MAX_SUBJECT_LENGTH
            or not subject.isprintable()
        ):
            raise _refused("the token has no usable subject", "bad_subject")

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        audience = claims.get("aud")
        names = [audience] if isinstance(audience, str) else audience
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(a, str) for a in names)
            or not self._audiences.intersection(names)
        ):
            raise _refused("the token is for another client", "wrong_audience")
        # OIDC Core §3.1.3.7: with several audiences the authorized party must be one of ours.
        if len(names) > 1 and claims.get("azp") not in self._audiences:
            raise _refused("the token's authorized party is another client", "wrong_audience")

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf", 0)
        if type(exp) not in _NUMBERS or type(iat) not in _NUMBERS or type(nbf) not in _NUMBERS:
            raise _refused("the token lacks valid exp and iat claims", "malformed")
        assert isinstance(exp, int | float) and isinstance(iat, int | float)
        assert isinstance(nbf, int | float)
        now, leeway = self._clock(), self._leeway
        if now > exp + leeway:
            raise _refused("the token has expired", "expired")
        if nbf > now + leeway or iat > now + leeway:
            raise _refused("the token is not valid yet", "not_yet_valid")
        if now - iat > self._provider.max_token_age + leeway:
            raise _refused("the token is too old to be exchanged", "too_old")


def _signed_claims(token: str, key: Any, alg: str) -> dict[str, Any]:
    """The claims, once the signature is verified with `key` and exactly `alg`."""
    try:
        decoded = jwt.PyJWS().decode_complete(token, key=key, algorithms=[alg])
        claims = parse_json(decoded["payload"])
    except jwt.InvalidSignatureError:
        raise _refused("the token's signature is invalid", "bad_signature") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise _refused("the token could not be verified", "malformed") from None
    if not isinstance(claims, dict):
        raise _refused("the token could not be verified", "malformed")
    return claims


def _claim_equals(actual: Any, expected: str | bool | int) -> bool:
    if isinstance(expected, bool):
        # some providers send booleans as strings ("true"); never the other way round
        return actual is expected or (isinstance(actual, str) and actual == str(expected).lower())
    return type(actual) is type(expected) and actual == expected


def _refused(description: str, reason: str) -> InvalidGrant:
    return InvalidGrant(description, reason=reason)
