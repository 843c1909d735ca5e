"""TokenVerifier checks access tokens (RFC 9068 JWTs) with a policy fixed at construction
(gateway.tokens.jws for the signature); every refusal is an `InvalidToken` with a reason.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.config import TokenSettings
from gateway.errors import InvalidToken
from gateway.safejson import parse_json
from gateway.tokens.jws import MalformedToken, SignatureCheck, b64url_decode, split_compact
from gateway.tokens.keys import KeyRing
from gateway.typedefs import Clock

ACCESS_TOKEN_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})
REQUIRED_CLAIMS: Final = ("iss", "aud", "sub", "iat", "exp", "jti", "sid")
RESERVED_CLAIMS: Final = frozenset(
    {*REQUIRED_CLAIMS, "nbf", "roles", "scope", "auth_time", "client_id", "typ"}
)
MAX_TOKEN_LENGTH: Final = 8192
HEADER_CACHE_SIZE: Final = 256
_NUMBERS: Final = (int, float)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified access token speaks for.

    What it holds is immutable (tuples, strings, numbers and dicts of those), so the garbage
    collector untracks it all but the Principal itself: with a large verified-token cache,
    full collections would otherwise walk every cached claim and pause the event loop for
    longer the more tokens are live.
    """

    sub: str
    sid: str
    jti: str
    iat: float
    exp: float
    auth_time: float
    roles: tuple[str, ...]
    scopes: tuple[str, ...]
    claims: Mapping[str, Any] = field(repr=False)  # top-level JSON arrays as tuples
    # The identity provider whose own token this is, when a route accepts providers' tokens
    # (`routes[].accept`); None for the gateway's own tokens (a session opened from a
    # provider's token names it in its `idp` claim instead).
    provider: str | None = None
    # Values derived from this token by other components (identity header fields), kept as
    # long as the Principal is: with the verified-token cache, computed once per token.
    # Keys and values are immutable too (see above).
    derived: dict[Hashable, Any] = field(default_factory=dict, repr=False, compare=False)


class TokenVerifier:
    """Verifies access tokens against a policy fixed at construction; caches successes until exp."""

    def __init__(
        self,
        keyring: KeyRing,
        *,
        issuer: str,
        audience: str,
        leeway: float,
        clock: Clock,
        cache_size: int = 100_000,
    ):
        self._keyring = keyring
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._clock = clock
        self._cache_size = cache_size
        self._cache: dict[str, Principal] = {}
        self._headers: dict[str, Mapping[str, Any]] = {}
        self._signature_checks = {key.kid: SignatureCheck(key) for key in keyring}

    @classmethod
    def from_settings(
        cls,
        keyring: KeyRing,
        settings: TokenSettings,
        *,
        clock: Clock,
        cache_size: int | None = None,
    ) -> TokenVerifier:
        """The verifier for this gateway's own tokens (`tokens.*`); `cache_size` overrides."""
        return cls(
            keyring,
            issuer=settings.issuer,
            audience=settings.audience,
            leeway=settings.leeway,
            clock=clock,
            cache_size=settings.verified_cache_size if cache_size is None else cache_size,
        )

    def verify(self, token: str) -> Principal:
        """The token's Principal, or InvalidToken saying why. Revocation is checked elsewhere."""
        cached = self._cache.get(token)
        if cached is not None:
            # SECURITY: a cache hit is only as good as the token's own lifetime; never beyond exp.
            if self._clock() <= cached.exp + self._leeway:
                return cached
            del self._cache[token]
        principal = self._verify_uncached(token)
        self._remember(token, principal)
        return principal

    def _remember(self, token: str, principal: Principal) -> None:
        if self._cache_size <= 0:
            return
        if len(self._cache) >= self._cache_size:
            self._cache.pop(next(iter(self._cache)))  # oldest insertion first
        self._cache[token] = principal

    def _verify_uncached(self, token: str, *, check_expiry: bool = True) -> Principal:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise _malformed()
        try:
            header_segment, payload_segment, signature_segment = split_compact(token)
        except MalformedToken:
            raise _malformed() from None
        header = self._header(header_segment)
        # SECURITY: the header only *selects* a configured key; the algorithm must be on the
        # allowlist AND equal to the key's own algorithm, so `none`, HS256-with-a-public-key
        # and similar confusions are refused. jku/x5u/jwk headers are never consulted, and
        # a `crit` header (extensions such as unencoded payloads) is not supported.
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("the token is not an access token", reason="wrong_type")
        alg = header.get("alg")
        if alg not in self._keyring.algorithms:
            raise InvalidToken("the access token algorithm is not allowed", reason="bad_algorithm")
        key = self._keyring.verification_key(header.get("kid"))
        if key is None:
            raise InvalidToken(
                "the access token was signed by an unknown key", reason="unknown_key"
            )
        if key.alg != alg:
            raise InvalidToken("the access token algorithm is not allowed", reason="bad_algorithm")
        if "crit" in header:
            raise _malformed()
        try:
            payload = b64url_decode(payload_segment)
            signature = b64url_decode(signature_segment)
        except MalformedToken:
            raise _malformed() from None
        signing_input = token[: len(header_segment) + 1 + len(payload_segment)].encode("ascii")
        if not self._signature_checks[key.kid].verify(signing_input, signature):
            raise InvalidToken("the access token signature is invalid", reason="bad_signature")
        try:
            claims = parse_json(payload)
        except ValueError:
            raise _malformed() from None
        if not isinstance(claims, dict):
            raise _malformed()
        self._check_claims(claims)
        self._check_times(claims, check_expiry=check_expiry)
        return self._principal(claims)

    def _header(self, segment: str) -> Mapping[str, Any]:
        """The JOSE header; tokens signed by one key share it byte for byte, so it is parsed
        once and remembered (bounded: headers are client-chosen)."""
        header = self._headers.get(segment)
        if header is not None:
            return header
        try:
            parsed = parse_json(b64url_decode(segment))
        except ValueError:  # MalformedToken, bad or too deeply nested JSON, bad UTF-8
            raise _malformed() from None
        if not isinstance(parsed, dict):
            raise _malformed()
        if len(self._headers) >= HEADER_CACHE_SIZE:
            self._headers.clear()
        self._headers[segment] = parsed
        return parsed

    def _check_claims(self, claims: dict[str, Any]) -> None:
        """Required claims present, issuer and audience ours (RFC 7519 §4.1, RFC 9068 §4)."""
        for name in REQUIRED_CLAIMS:
            if claims.get(name) is None:
                raise InvalidToken(
                    "the access token lacks a required claim", reason="missing_claim"
                )
        if claims["iss"] != self._issuer:
            raise InvalidToken("the access token has the wrong issuer", reason="wrong_issuer")
        audience = claims["aud"]
        if isinstance(audience, str):
            audience = [audience]
        if (
            not isinstance(audience, list)
            or not all(isinstance(a, str) for a in audience)
            or self._audience not in audience
        ):
            raise InvalidToken("the access token has the wrong audience", reason="wrong_audience")

    def _check_times(self, claims: dict[str, Any], *, check_expiry: bool) -> None:
        exp, iat, nbf = claims["exp"], claims["iat"], claims.get("nbf", 0)
        # JSON numbers only (a bool is an int to isinstance, not to this test)
        if type(exp) not in _NUMBERS or type(iat) not in _NUMBERS or type(nbf) not in _NUMBERS:
            raise InvalidToken("the access token has malformed claims", reason="malformed")
        now, leeway = self._clock(), self._leeway
        if check_expiry and now > exp + leeway:
            raise InvalidToken("the access token has expired", reason="expired")
        if nbf > now + leeway or iat > now + leeway:
            raise InvalidToken("the access token is not valid yet", reason="not_yet_valid")

    def _principal(self, claims: dict[str, Any]) -> Principal:
        sub, sid, jti = claims["sub"], claims["sid"], claims["jti"]
        iat, exp = claims["iat"], claims["exp"]
        roles = claims.get("roles", [])
        scope = claims.get("scope", "")
        auth_time = claims.get("auth_time", iat)
        if (
            type(sub) is not str
            or type(sid) is not str
            or type(jti) is not str
            or not (sub and sid and jti)
            or type(roles) is not list
            or not all(type(r) is str for r in roles)
            or type(scope) is not str
            or type(auth_time) not in _NUMBERS
        ):
            raise InvalidToken("the access token has malformed claims", reason="malformed")
        return Principal(
            sub=sub,
            sid=sid,
            jti=jti,
            iat=float(iat),
            exp=float(exp),
            auth_time=float(auth_time),
            roles=tuple(roles),
            scopes=tuple(scope.split()),
            claims=_immutable_claims(claims),
        )

    def forget(self, token: str) -> None:
        self._cache.pop(token, None)

    def inspect(self, token: str) -> Principal:
        """Verify everything but expiry (for revoking a token that may have expired)."""
        return self._verify_uncached(token, check_expiry=False)


def _immutable_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """Top-level JSON arrays (and arrays in them) as tuples. A claim set of strings, numbers
    and arrays is then untracked by the garbage collector after one full collection; an
    object-valued claim keeps its token's claims tracked (CPython never untracks a dict
    holding a dict), which costs collections time but nothing else."""
    for name, value in claims.items():
        if type(value) is list:
            claims[name] = _tuples(value)
    return claims


def _tuples(items: list[Any]) -> tuple[Any, ...]:
    return tuple(_tuples(item) if type(item) is list else item for item in items)


def _malformed() -> InvalidToken:
    return InvalidToken("the access token is malformed", reason="malformed")
