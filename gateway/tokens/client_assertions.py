"""Client assertions (`private_key_jwt`, RFC 7523 §2.2 and OpenID Connect Core §9): a JWT the
client signs with its own private key to authenticate at the token endpoint. The policy is
fixed here, never by the assertion: an asymmetric algorithm on the allowlist, a key from the
client's registered JWKS only, `iss` and `sub` both the client id, `aud` the token endpoint
(or the issuer), a short `exp`, and a `jti` (that it is used only once is checked by the
caller against the store). PyJWT's errors end here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

import jwt

from gateway.errors import ClientAuthFailed
from gateway.safejson import parse_json
from gateway.tokens.client_keys import ASSERTION_ALGORITHMS, ClientKeys
from gateway.tokens.jws import MalformedToken, b64url_decode, split_compact
from gateway.typedefs import Clock

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LENGTH: Final = 8192
MAX_JTI_LENGTH: Final = 256
KEY_REFERENCE_HEADERS: Final = ("jku", "x5u", "jwk", "x5c")
_NUMBERS: Final = (int, float)


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    jti: str
    exp: float


class ClientAssertions:
    """Verifies client assertions for one token endpoint (`audiences`: its URL, the issuer)."""

    def __init__(
        self, *, audiences: Collection[str], leeway: float, max_lifetime: float, clock: Clock
    ):
        self._audiences = frozenset(audiences)
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._clock = clock

    async def verify(self, assertion: str, client_id: str, keys: ClientKeys) -> VerifiedAssertion:
        """The assertion's jti and exp once everything checks out; ClientAuthFailed (or
        ProviderUnavailable for keys out of reach) otherwise."""
        if not assertion or len(assertion) > MAX_ASSERTION_LENGTH:
            raise _refused("the client assertion is malformed")
        try:
            header_segment, _, _ = split_compact(assertion)
            header = parse_json(b64url_decode(header_segment))
        except (MalformedToken, ValueError):
            raise _refused("the client assertion is malformed") from None
        if not isinstance(header, dict):
            raise _refused("the client assertion is malformed")
        # SECURITY: the algorithm allowlist is ours (asymmetric only: `none` and HMAC keyed
        # with a public key are not on it), and the key comes from the client's registered
        # JWKS only, never from a header pointing at one.
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ASSERTION_ALGORITHMS:
            raise _refused("the client assertion's algorithm is not allowed")
        if any(name in header for name in KEY_REFERENCE_HEADERS) or "crit" in header:
            raise _refused("the client assertion names its own key or extensions")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _refused("the client assertion is malformed")
        key = await keys.key(kid, alg)
        claims = _signed_claims(assertion, key.public, alg)
        return self._check_claims(claims, client_id)

    def _check_claims(self, claims: dict[str, Any], client_id: str) -> VerifiedAssertion:
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise _refused("the client assertion's iss and sub must be the client id")
        audience = claims.get("aud")
        names = [audience] if isinstance(audience, str) else audience
        if (
            not isinstance(names, list)
            or not all(isinstance(a, str) for a in names)
            or not self._audiences.intersection(names)
        ):
            raise _refused("the client assertion is for another audience")
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if type(exp) not in _NUMBERS:
            raise _refused("the client assertion has no valid exp")
        assert isinstance(exp, int | float)
        now, leeway = self._clock(), self._leeway
        if now > exp + leeway:
            raise _refused("the client assertion has expired")
        # SECURITY: a long-lived assertion is a password with extra steps: its jti would have
        # to be remembered for as long, and a leaked one would work until then.
        if exp - now > self._max_lifetime + leeway:
            raise _refused("the client assertion lives too long")
        for instant in (iat, nbf):
            if instant is None:
                continue
            if type(instant) not in _NUMBERS:
                raise _refused("the client assertion has malformed claims")
            assert isinstance(instant, int | float)
            if instant > now + leeway:
                raise _refused("the client assertion is not valid yet")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
            raise _refused("the client assertion has no valid jti")
        return VerifiedAssertion(jti=jti, exp=float(exp))


def _signed_claims(token: str, key: Any, alg: str) -> dict[str, Any]:
    try:
        decoded = jwt.PyJWS().decode_complete(token, key=key, algorithms=[alg])
        claims = parse_json(decoded["payload"])
    except jwt.InvalidSignatureError:
        raise _refused("the client assertion's signature is invalid") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise _refused("the client assertion could not be verified") from None
    if not isinstance(claims, dict):
        raise _refused("the client assertion could not be verified")
    return claims


def _refused(description: str) -> ClientAuthFailed:
    return ClientAuthFailed(description)
