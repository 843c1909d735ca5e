"""A registered client's public keys (JWKS), for `private_key_jwt` assertions: read once from
a file, or fetched from the client's `jwks_uri` with the gateway's own deadlines (no
redirects, bounded size), cached as its Cache-Control says within the federation's bounds,
refetched for an unknown `kid` at most once per `refetch_interval` (one fetch in flight),
and kept past expiry while refetching fails, up to `stale_if_error`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Final

from gateway.config import FederationSettings
from gateway.errors import ClientAuthFailed, ConfigError, ProviderUnavailable
from gateway.outbound.http_client import SharedClientSession
from gateway.outbound.json_fetch import Fetched, FetchFailed, fetch_json
from gateway.tokens.provider_keys import KeysByKid, ProviderKey, parse_jwks
from gateway.typedefs import Clock

log = logging.getLogger("gateway.clients")

# What a client may sign its assertions with: asymmetric algorithms only (client_secret_jwt,
# an HMAC keyed with a shared secret, is not offered).
ASSERTION_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class ClientKeys:
    """The verification keys of one client; see the module docstring."""

    def __init__(
        self,
        client_id: str,
        *,
        keys: KeysByKid | None = None,
        jwks_uri: str | None = None,
        http: SharedClientSession | None = None,
        settings: FederationSettings | None = None,
        clock: Clock,
    ):
        if (keys is None) == (jwks_uri is None):
            raise ValueError("give the keys or where to fetch them")
        self.client_id = client_id
        self._keys = keys
        self._static = keys is not None
        self._jwks_uri = jwks_uri
        self._http = http
        self._settings = settings or FederationSettings()
        self._clock = clock
        self._expires_at = float("inf") if self._static else 0.0
        self._last_attempt: float | None = None
        self._inflight: asyncio.Task[None] | None = None

    @classmethod
    def from_file(cls, client_id: str, path: Path, *, clock: Clock) -> ClientKeys:
        """The keys of a JWKS file; ConfigError when it holds none that can verify."""
        where = f"clients[{client_id}].jwks_file {str(path)!r}"
        try:
            document = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
        except ValueError:
            raise ConfigError(f"{where}: not a JSON document") from None
        if not isinstance(document, dict):
            raise ConfigError(f"{where}: not a JWKS")
        try:
            keys = parse_jwks(document, ASSERTION_ALGORITHMS)
        except FetchFailed as exc:
            raise ConfigError(f"{where}: {exc.reason}") from None
        return cls(client_id, keys=keys, clock=clock)

    async def key(self, kid: str | None, alg: str) -> ProviderKey:
        """The key for an assertion with this `kid` and `alg`: ClientAuthFailed (401) when the
        client has no such key, ProviderUnavailable (503) when its key set cannot be had."""
        if not self._static and (self._keys is None or self._clock() >= self._expires_at):
            await self._refresh_if_allowed()
        found = self._lookup(kid, alg)
        if found is None and not self._static and self._keys is not None:
            await self._refresh_if_allowed()  # a rotated key: at most once per interval
            found = self._lookup(kid, alg)
        if self._keys is None or (
            not self._static and self._clock() >= self._expires_at + self._settings.stale_if_error
        ):
            raise ProviderUnavailable("the client's keys are temporarily unavailable")
        if found is None:
            raise ClientAuthFailed("the client assertion is signed by a key the client lacks")
        return found

    async def close(self) -> None:
        task, self._inflight = self._inflight, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _lookup(self, kid: str | None, alg: str) -> ProviderKey | None:
        if self._keys is None:
            return None
        if kid is None:  # no kid: only an unambiguous key will do
            matching = [k for keys in self._keys.values() for k in keys if alg in k.algorithms]
            return matching[0] if len(matching) == 1 else None
        for key in self._keys.get(kid, ()):
            if alg in key.algorithms:
                return key
        return None

    async def _refresh_if_allowed(self) -> None:
        task = self._inflight
        if task is None or task.done():
            last = self._last_attempt
            if last is not None and self._clock() - last < self._settings.refetch_interval:
                return
            self._last_attempt = self._clock()
            task = self._inflight = asyncio.create_task(self._fetch())
        await asyncio.shield(task)

    async def _fetch(self) -> None:
        s = self._settings
        assert self._jwks_uri is not None and self._http is not None
        try:
            fetched = await fetch_json(
                self._http.session,
                self._jwks_uri,
                timeout=s.fetch_timeout,
                max_size=s.max_document_size,
            )
            keys = parse_jwks(fetched.document, ASSERTION_ALGORITHMS)
        except FetchFailed as exc:
            log.warning("client jwks fetch failed client=%s reason=%s", self.client_id, exc.reason)
            return
        self._keys = keys
        self._expires_at = self._clock() + self._lifetime(fetched)
        log.info("client jwks fetched client=%s keys=%d", self.client_id, len(keys))

    def _lifetime(self, fetched: Fetched) -> float:
        s = self._settings
        max_age = s.default_cache if fetched.max_age is None else fetched.max_age
        return min(max(max_age, s.min_cache), s.max_cache)
