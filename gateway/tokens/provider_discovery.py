"""A provider's OpenID Connect discovery document (`<issuer>/.well-known/openid-configuration`),
fetched and cached as its keys are: the gateway's own deadline and size cap, no redirects,
kept as its Cache-Control says (clamped to the federation's bounds), refetched at most once
per `refetch_interval` with one fetch in flight, and kept past expiry while refetching fails,
up to `stale_if_error`. Its `issuer` must be the configured one.

The provider's keys (`jwks_uri`) and its browser sign-in (`authorization_endpoint`,
`token_endpoint`, `end_session_endpoint`) both read it from here: one fetch serves both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.config import FederationSettings, ProviderSettings
from gateway.outbound.http_client import SharedClientSession
from gateway.outbound.json_fetch import FetchFailed, fetch_json
from gateway.typedefs import Clock

log = logging.getLogger("gateway.federation")

DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
ENDPOINTS: Final = ("authorization_endpoint", "token_endpoint", "end_session_endpoint")


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What the gateway uses of a discovery document (endpoints checked: https://, or
    http:// only for a loopback issuer's development setup)."""

    issuer: str
    jwks_uri: str
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    end_session_endpoint: str | None = None
    backchannel_logout_supported: bool = False
    code_challenge_methods: tuple[str, ...] | None = None  # None: not announced


class ProviderDiscovery:
    """The discovery document of one provider; see the module docstring."""

    def __init__(
        self,
        provider: ProviderSettings,
        settings: FederationSettings,
        http: SharedClientSession,
        *,
        clock: Clock,
    ):
        self.name = provider.name
        self._provider = provider
        self._settings = settings
        self._http = http
        self._clock = clock
        self._metadata: ProviderMetadata | None = None
        self._expires_at = 0.0
        self._last_attempt: float | None = None
        self._last_error: str | None = None
        self._inflight: asyncio.Task[None] | None = None

    async def metadata(self) -> ProviderMetadata:
        """The provider's metadata, fetched when missing or expired; FetchFailed (with the
        last failure's reason) when none can be had."""
        if self._metadata is None or self._clock() >= self._expires_at:
            await self._refresh_if_allowed()
        metadata = self._metadata
        if metadata is None or self._clock() >= self._expires_at + self._settings.stale_if_error:
            raise FetchFailed(self._last_error or "not_loaded")
        return metadata

    async def close(self) -> None:
        task, self._inflight = self._inflight, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _refresh_if_allowed(self) -> None:
        task = self._inflight
        if task is None or task.done():
            last = self._last_attempt
            if last is not None and self._clock() - last < self._settings.refetch_interval:
                return
            self._last_attempt = self._clock()
            task = self._inflight = asyncio.create_task(self._fetch())
        await asyncio.shield(task)  # a caller that goes away does not cancel the others' fetch

    async def _fetch(self) -> None:
        s = self._settings
        url = self._provider.issuer.rstrip("/") + DISCOVERY_PATH
        try:
            fetched = await fetch_json(
                self._http.session, url, timeout=s.fetch_timeout, max_size=s.max_document_size
            )
            metadata = parse_discovery(fetched.document, self._provider)
        except FetchFailed as exc:
            self._last_error = exc.reason
            log.warning("discovery failed provider=%s reason=%s", self.name, exc.reason)
            return
        max_age = s.default_cache if fetched.max_age is None else fetched.max_age
        self._metadata = metadata
        self._expires_at = self._clock() + min(max(max_age, s.min_cache), s.max_cache)
        self._last_error = None


def parse_discovery(document: Mapping[str, Any], provider: ProviderSettings) -> ProviderMetadata:
    """The metadata of a discovery document that names the configured issuer; FetchFailed
    otherwise. An endpoint that is not a usable URL is left out (and logged)."""
    # SECURITY: a discovery document for another issuer (a typo, a mix-up attack) would make
    # us trust that issuer's keys and endpoints for this provider.
    if document.get("issuer") != provider.issuer:
        raise FetchFailed("issuer_mismatch")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise FetchFailed("no_jwks_uri")
    if not _acceptable(jwks_uri, provider.issuer):
        raise FetchFailed("insecure_jwks_uri")  # plain http only for a loopback issuer
    endpoints: dict[str, str | None] = {}
    for name in ENDPOINTS:
        value = document.get(name)
        usable = isinstance(value, str) and _acceptable(value, provider.issuer)
        if value is not None and not usable:
            log.warning("discovery: %s ignored provider=%s (not an https URL)", name, provider.name)
        endpoints[name] = value if usable and isinstance(value, str) else None
    methods = document.get("code_challenge_methods_supported")
    return ProviderMetadata(
        issuer=provider.issuer,
        jwks_uri=jwks_uri,
        backchannel_logout_supported=document.get("backchannel_logout_supported") is True,
        code_challenge_methods=(
            tuple(m for m in methods if isinstance(m, str)) if isinstance(methods, list) else None
        ),
        **endpoints,
    )


def _acceptable(url: str, issuer: str) -> bool:
    """An absolute https:// URL without fragment; http:// only where the issuer is http://
    (loopback, development: the settings allow nothing else)."""
    if "#" in url or any(c.isspace() for c in url) or len(url) > 2048:
        return False
    if url.startswith("https://"):
        return len(url) > len("https://")
    return issuer.startswith("http://") and url.startswith("http://")
