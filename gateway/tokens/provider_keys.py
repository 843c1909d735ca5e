"""A provider's signing keys (JWKS): fetched with the gateway's own deadlines, cached as
its Cache-Control says (clamped), refetched for an unknown `kid` at most once per
`refetch_interval` (one fetch in flight, every caller joins it), and kept past expiry while
refetching fails, up to `stale_if_error`.

Only configured URLs are fetched: the provider's `jwks_uri`, or the one its OIDC discovery
document names (gateway.tokens.provider_discovery, whose `issuer` must be the configured one).
A token's `jku`/`x5u`/`jwk` header never leads anywhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from gateway.config import FederationSettings, ProviderSettings
from gateway.errors import InvalidGrant, ProviderUnavailable
from gateway.outbound.http_client import SharedClientSession
from gateway.outbound.json_fetch import Fetched, FetchFailed, fetch_json
from gateway.tokens.provider_discovery import ProviderDiscovery
from gateway.typedefs import Clock

log = logging.getLogger("gateway.federation")

MAX_KEYS: Final = 64
MIN_RSA_BITS: Final = 2048
RSA_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS: Final = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | (ed448.Ed448PublicKey)
)
FetchRecorder = Callable[[str, str], None]  # (provider, outcome)


@dataclass(frozen=True, slots=True)
class ProviderKey:
    """One published key and the algorithms it may verify (by key type, curve and the
    JWK's own `alg`, within the provider's allowlist)."""

    kid: str | None
    public: PublicKey
    algorithms: frozenset[str]


@dataclass(frozen=True, slots=True)
class KeyState:
    """What /readyz and /metrics say about a provider's keys."""

    status: str  # ok, stale, unavailable, not_loaded
    keys: int
    age: float | None  # seconds since the last good fetch
    last_error: str | None


def _no_record(_provider: str, _outcome: str) -> None:
    return None


class ProviderKeys:
    """The signing keys of one provider; see the module docstring."""

    def __init__(
        self,
        provider: ProviderSettings,
        settings: FederationSettings,
        http: SharedClientSession,
        *,
        clock: Clock,
        record: FetchRecorder = _no_record,
        discovery: ProviderDiscovery | None = None,
    ):
        self.name = provider.name
        self._discovery = discovery
        self._provider = provider
        self._settings = settings
        self._http = http
        self._clock = clock
        self._record = record
        self._keys: dict[str | None, list[ProviderKey]] | None = None
        self._fetched_at: float | None = None
        self._expires_at = 0.0
        self._last_attempt: float | None = None
        self._last_error: str | None = None
        self._jwks_uri = provider.jwks_uri
        self._inflight: asyncio.Task[None] | None = None

    async def key(self, kid: str | None, alg: str) -> ProviderKey:
        """The key that verifies a token with this `kid` and `alg`.

        Raises ProviderUnavailable (503) when no usable key set can be had, InvalidGrant
        (400) when the set has no such key or the key is not for this algorithm.
        """
        if self._keys is None or self._clock() >= self._expires_at:
            await self._refresh_if_allowed()
        found = self._lookup(kid, alg)
        if found is None and self._keys is not None:
            await self._refresh_if_allowed()  # a rotated key: at most once per interval
            found = self._lookup(kid, alg)
        if not self._usable():
            raise ProviderUnavailable()
        if found is None:
            raise InvalidGrant("the token was signed by an unknown key", reason="unknown_key")
        return found

    def state(self) -> KeyState:
        now = self._clock()
        age = None if self._fetched_at is None else max(0.0, now - self._fetched_at)
        count = sum(len(v) for v in self._keys.values()) if self._keys is not None else 0
        if self._keys is None:
            status = "not_loaded" if self._last_error is None else "unavailable"
        elif now < self._expires_at:
            status = "ok"
        else:
            status = "stale" if self._usable() else "unavailable"
        return KeyState(status, count, age, self._last_error)

    async def warm_up(self) -> None:
        """Fetch the keys ahead of the first exchange (failures are logged, not raised)."""
        await self._refresh_if_allowed()

    async def close(self) -> None:
        task, self._inflight = self._inflight, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _usable(self) -> bool:
        if self._keys is None:
            return False
        return self._clock() < self._expires_at + self._settings.stale_if_error

    def _lookup(self, kid: str | None, alg: str) -> ProviderKey | None:
        if self._keys is None:
            return None
        if kid is None:  # no kid: only an unambiguous key will do
            matching = [k for keys in self._keys.values() for k in keys if alg in k.algorithms]
            return matching[0] if len(matching) == 1 else None
        candidates = self._keys.get(kid)
        if not candidates:
            return None
        for key in candidates:
            if alg in key.algorithms:
                return key
        # SECURITY: the kid is known but its key is of another type (an RS256 token naming
        # an EC key): refused outright, without a refetch the client could trigger at will.
        raise InvalidGrant("the token's algorithm does not match its key", reason="bad_algorithm")

    async def _refresh_if_allowed(self) -> None:
        """Join the fetch in flight, or start one unless the last began less than
        `refetch_interval` ago (unknown kids and failures cannot drive more fetches)."""
        task = self._inflight
        if task is None or task.done():
            last = self._last_attempt
            if last is not None and self._clock() - last < self._settings.refetch_interval:
                return
            self._last_attempt = self._clock()
            task = self._inflight = asyncio.create_task(self._fetch())
        # shielded: a client that goes away does not cancel the fetch the others wait on
        await asyncio.shield(task)

    async def _fetch(self) -> None:
        s = self._settings
        try:
            uri = await self._jwks_location()
            fetched = await fetch_json(
                self._http.session, uri, timeout=s.fetch_timeout, max_size=s.max_document_size
            )
            keys = parse_jwks(fetched.document, frozenset(self._provider.algorithms))
        except FetchFailed as exc:
            self._last_error = exc.reason
            self._record(self.name, exc.reason)
            log.warning("jwks fetch failed provider=%s reason=%s", self.name, exc.reason)
            return
        now = self._clock()
        self._keys = keys
        self._fetched_at = now
        self._expires_at = now + self._lifetime(fetched)
        self._last_error = None
        self._record(self.name, "ok")
        log.info("jwks fetched provider=%s keys=%d", self.name, sum(map(len, keys.values())))

    async def _jwks_location(self) -> str:
        """The configured jwks_uri, or the one discovery names (the discovery document is
        cached and refetched on its own terms: gateway.tokens.provider_discovery)."""
        if self._discovery is None:
            assert self._jwks_uri is not None  # the settings require one of the two
            return self._jwks_uri
        try:
            metadata = await self._discovery.metadata()
        except FetchFailed as exc:
            if self._jwks_uri is not None:  # keep the last discovered location
                log.warning("discovery failed provider=%s reason=%s", self.name, exc.reason)
                return self._jwks_uri
            raise
        self._jwks_uri = metadata.jwks_uri
        return metadata.jwks_uri

    def _lifetime(self, fetched: Fetched) -> float:
        s = self._settings
        max_age = s.default_cache if fetched.max_age is None else fetched.max_age
        return min(max(max_age, s.min_cache), s.max_cache)


KeysByKid = dict[str | None, list[ProviderKey]]


def parse_jwks(document: Mapping[str, Any], allowed: frozenset[str]) -> KeysByKid:
    """The usable signature keys of a JWKS by kid; keys of unknown types, for encryption,
    too weak or for no allowed algorithm are skipped. No usable key → FetchFailed."""
    items = document.get("keys")
    if not isinstance(items, list):
        raise FetchFailed("invalid_jwks")
    keys: dict[str | None, list[ProviderKey]] = {}
    count = 0
    for item in items[:MAX_KEYS]:
        key = _key_from_jwk(item, allowed) if isinstance(item, dict) else None
        if key is not None:
            keys.setdefault(key.kid, []).append(key)
            count += 1
    if not count:
        raise FetchFailed("no_usable_keys")
    return keys


def _key_from_jwk(jwk: dict[str, Any], allowed: frozenset[str]) -> ProviderKey | None:
    if jwk.get("use", "sig") != "sig":
        return None
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        return None
    public = _public_key(jwk)
    if public is None:
        return None
    if isinstance(public, rsa.RSAPublicKey):
        algorithms = RSA_ALGORITHMS if public.key_size >= MIN_RSA_BITS else frozenset()
    elif isinstance(public, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        name = EC_ALGORITHMS.get(curve.get(public.curve.name, ""))
        algorithms = frozenset({name}) if name else frozenset()
    else:
        algorithms = frozenset({"EdDSA"})
    declared = jwk.get("alg")
    if declared is not None:
        algorithms = algorithms & {declared}
    algorithms = algorithms & allowed
    return ProviderKey(kid, public, algorithms) if algorithms else None


def _public_key(jwk: dict[str, Any]) -> PublicKey | None:
    """The public key of a JWK (private parts, if a careless JWKS has them, are dropped)."""
    parsers: dict[str, Any] = {"RSA": RSAAlgorithm, "EC": ECAlgorithm, "OKP": OKPAlgorithm}
    parser = parsers.get(jwk.get("kty"))  # type: ignore[arg-type]
    if parser is None:
        return None
    try:
        key = parser.from_jwk(jwk)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    if not isinstance(key, PublicKey):
        key = key.public_key()
    return key if isinstance(key, PublicKey) else None
