"""The ID token of a browser sign-in (authorization code flow, OpenID Connect Core §3.1.3.7):
first everything any token of the provider is checked for (gateway.tokens.provider_tokens:
algorithm allowlist, key from its JWKS, issuer, audience, times, required claims, subject),
then what binds it to this sign-in: our client id in `aud`, `azp` (when present, or with
several audiences) naming us, the `nonce` of this login attempt, `at_hash` when present, and
`auth_time` when the request asked for a `max_age`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import InvalidGrant
from gateway.tokens.provider_tokens import ProviderTokenVerifier, peek
from gateway.typedefs import Clock

# The hash of `at_hash` follows the ID token's algorithm (Core §3.1.3.6); EdDSA (Ed25519) uses
# SHA-512, as providers that sign with it do.
_AT_HASH: Final = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
_NUMBERS: Final = (int, float)


@dataclass(frozen=True, slots=True)
class SignInBinding:
    """What the ID token must carry to belong to this sign-in."""

    client_id: str
    nonce: str
    access_token: str | None = None  # from the same token response (for at_hash)
    max_age: int | None = None  # asked for in the authorization request


async def verify_sign_in_id_token(
    verifier: ProviderTokenVerifier,
    id_token: str,
    binding: SignInBinding,
    *,
    clock: Clock,
    leeway: float,
) -> dict[str, Any]:
    """The verified claims of the ID token; InvalidGrant (with a reason) otherwise."""
    try:
        peeked = peek(id_token)
    except InvalidGrant:
        raise InvalidGrant("the ID token is not a signed JWT", reason="malformed") from None
    claims = await verifier.verify(peeked, id_token=True)
    _check_audience(claims, binding.client_id)
    nonce = claims.get("nonce")
    # SECURITY: the nonce ties the ID token to the login attempt this browser started: an ID
    # token (or code) captured from another attempt does not sign anybody in here.
    if not isinstance(nonce, str) or not hmac.compare_digest(
        nonce.encode(), binding.nonce.encode()
    ):
        raise InvalidGrant("the ID token's nonce is not this sign-in's", reason="wrong_nonce")
    at_hash = claims.get("at_hash")
    if at_hash is not None and binding.access_token is not None:
        alg = peeked.header.get("alg")
        expected = access_token_hash(binding.access_token, alg if isinstance(alg, str) else "")
        if not isinstance(at_hash, str) or not hmac.compare_digest(at_hash, expected):
            raise InvalidGrant("the ID token does not match its access token", reason="at_hash")
    if binding.max_age is not None:
        _check_auth_time(claims, binding.max_age, clock(), leeway)
    return claims


def access_token_hash(access_token: str, alg: str) -> str:
    """`at_hash`: base64url of the left half of the access token's hash (Core §3.1.3.6)."""
    digest = _AT_HASH.get(alg[-3:], hashlib.sha512)(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def _check_audience(claims: Mapping[str, Any], client_id: str) -> None:
    audience = claims.get("aud")
    names = [audience] if isinstance(audience, str) else audience
    if not isinstance(names, list) or client_id not in names:
        raise InvalidGrant("the ID token is for another client", reason="wrong_audience")
    azp = claims.get("azp")
    if azp is not None and azp != client_id:
        raise InvalidGrant("the ID token's authorized party is another client", reason="wrong_azp")
    if len(names) > 1 and azp is None:
        raise InvalidGrant("the ID token names several audiences but no azp", reason="wrong_azp")


def _check_auth_time(claims: Mapping[str, Any], max_age: int, now: float, leeway: float) -> None:
    auth_time = claims.get("auth_time")
    if type(auth_time) not in _NUMBERS:
        raise InvalidGrant("the ID token does not say when you signed in", reason="auth_time")
    assert isinstance(auth_time, int | float)
    if now - auth_time > max_age + leeway or auth_time > now + leeway:
        raise InvalidGrant("the sign-in at the provider is too old", reason="auth_time")
