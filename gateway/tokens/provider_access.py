"""An identity provider's own access tokens on the routes that accept them
(`routes[].accept`), judged by the provider's `access_tokens` policy: algorithm allowlist, a
key from its JWKS only (the same cache as the token exchange), issuer, audience, times with
the gateway's clock and leeway, required claim values, a string subject. The caller is
`<provider>:<subject>` with the roles of the policy's mapping, and `provider` set.

Verified tokens are cached by their whole string until `exp` (plus leeway), as the gateway's
own verifier does: a cached token costs a dict lookup. Revocation is the caller's check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import jwt

from gateway.config import ProviderAccessTokenSettings, ProviderSettings
from gateway.errors import InvalidGrant, InvalidToken
from gateway.safejson import parse_json
from gateway.tokens.jws import MalformedToken, b64url_decode, split_compact
from gateway.tokens.provider_keys import ProviderKeys
from gateway.tokens.providers import copy_claims, external_subject, provider_roles
from gateway.tokens.verifier import MAX_TOKEN_LENGTH, Principal
from gateway.typedefs import Clock

KEY_REFERENCE_HEADERS: Final = ("jku", "x5u", "jwk", "x5c")
MAX_SUBJECT_LENGTH: Final = 255
MAX_JTI_LENGTH: Final = 128
_NUMBERS: Final = (int, float)


class ProviderAccessVerifier:
    """Verifies one provider's access tokens into Principals; see the module docstring."""

    def __init__(
        self,
        provider: ProviderSettings,
        keys: ProviderKeys,
        *,
        leeway: float,
        clock: Clock,
        cache_size: int = 100_000,
    ):
        assert provider.access_tokens is not None
        self.name = provider.name
        self.issuer = provider.issuer
        self._policy: ProviderAccessTokenSettings = provider.access_tokens
        self._keys = keys
        self._leeway = leeway
        self._clock = clock
        self._cache_size = cache_size
        self._cache: dict[str, Principal] = {}
        self._algorithms = frozenset(self._policy.algorithms)
        self._audiences = frozenset(self._policy.audiences)

    def cached(self, token: str) -> Principal | None:
        """The Principal of a token verified before and not expired since, else None."""
        principal = self._cache.get(token)
        if principal is None:
            return None
        # SECURITY: a cache hit is only as good as the token's own lifetime; never beyond exp.
        if self._clock() <= principal.exp + self._leeway:
            return principal
        del self._cache[token]
        return None

    async def verify(self, token: str, header: Mapping[str, Any]) -> Principal:
        """The token's Principal (signature, claims), or InvalidToken saying why."""
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise _refused("the token's algorithm is not allowed", "bad_algorithm")
        # SECURITY: keys come from the configured JWKS only (see provider_keys).
        if any(name in header for name in KEY_REFERENCE_HEADERS) or "crit" in header:
            raise _refused("the token names its own key source", "key_reference")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _refused("the token is malformed", "malformed")
        try:
            key = await self._keys.key(kid, alg)  # ProviderUnavailable (503) passes through
        except InvalidGrant as exc:  # an unknown kid, a key of another type
            raise _refused(exc.description, exc.reason) from None
        claims = _signed_claims(token, key.public, alg)
        principal = self._principal(claims)
        self._remember(token, principal)
        return principal

    def _principal(self, claims: dict[str, Any]) -> Principal:
        p = self._policy
        if claims.get("iss") != self.issuer:
            raise _refused("the token has the wrong issuer", "wrong_issuer")
        audience = claims.get("aud")
        names = [audience] if isinstance(audience, str) else audience
        if (
            not isinstance(names, list)
            or not all(isinstance(a, str) for a in names)
            or not self._audiences.intersection(names)
        ):
            raise _refused("the token has the wrong audience", "wrong_audience")
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf", 0)
        if (
            type(exp) not in _NUMBERS
            or type(nbf) not in _NUMBERS
            or (iat is not None and type(iat) not in _NUMBERS)
        ):
            raise _refused("the token lacks a valid exp", "malformed")
        assert isinstance(exp, int | float) and isinstance(nbf, int | float)
        now, leeway = self._clock(), self._leeway
        if now > exp + leeway:
            raise _refused("the token has expired", "expired")
        issued = float(iat) if isinstance(iat, int | float) else None
        if nbf > now + leeway or (issued is not None and issued > now + leeway):
            raise _refused("the token is not valid yet", "not_yet_valid")
        if issued is not None and exp - issued > p.max_lifetime:
            raise _refused("the token lives longer than allowed", "too_long_lived")
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
        jti = claims.get("jti")
        if jti is not None and (not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH):
            raise _refused("the token's jti is malformed", "malformed")
        sub = external_subject(self.name, subject)
        roles = provider_roles(p.roles, claims)
        scopes = _scopes(claims.get(p.scope_claim))
        # The provider's ids live in their own namespace: a revoked `<provider>:<jti>` can
        # never be confused with (or crafted to match) one of the gateway's own.
        own_jti = f"{self.name}:{jti}" if jti else ""
        identity: dict[str, Any] = {
            **copy_claims(p.copy_claims, claims),
            "iss": self.issuer,
            "sub": sub,
            "roles": roles,
            "idp": self.name,
        }
        if scopes:
            identity["scope"] = " ".join(scopes)
        client_id = claims.get("client_id", claims.get("azp"))
        if isinstance(client_id, str) and client_id.isprintable() and len(client_id) <= 256:
            identity["client_id"] = client_id
        if own_jti:
            identity["jti"] = own_jti
        return Principal(
            sub=sub,
            sid="",
            jti=own_jti,
            iat=issued if issued is not None else float(now),
            exp=float(exp),
            auth_time=issued if issued is not None else float(now),
            roles=roles,
            scopes=scopes,
            claims=identity,
            provider=self.name,
        )

    def _remember(self, token: str, principal: Principal) -> None:
        if self._cache_size <= 0:
            return
        if len(self._cache) >= self._cache_size:
            self._cache.pop(next(iter(self._cache)))  # oldest insertion first
        self._cache[token] = principal


def peek_claims(token: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(header, claims) of a compact JWS, unverified: only to choose whose policy applies."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise _refused("the access token is malformed", "malformed")
    try:
        header_segment, payload_segment, _ = split_compact(token)
        header = parse_json(b64url_decode(header_segment))
        claims = parse_json(b64url_decode(payload_segment))
    except (MalformedToken, ValueError):
        raise _refused("the access token is malformed", "malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _refused("the access token is malformed", "malformed")
    return header, claims


def _scopes(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list):
        return tuple(s for s in value if isinstance(s, str) and s and " " not in s)
    return ()


def _signed_claims(token: str, key: Any, alg: str) -> dict[str, Any]:
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
        return actual is expected or (isinstance(actual, str) and actual == str(expected).lower())
    return type(actual) is type(expected) and actual == expected


def _refused(description: str, reason: str) -> InvalidToken:
    return InvalidToken(description, reason=reason)
