"""The configured identity providers (their settings, keys and token verifier), and what a
verified provider token says: the subject `<provider>:<provider subject>`, the provider's
roles, the claims it may copy into the gateway's tokens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.config import OWN_CLAIMS, FederationSettings, ProviderRolesSettings, ProviderSettings
from gateway.outbound.http_client import SharedClientSession
from gateway.tokens.provider_discovery import ProviderDiscovery
from gateway.tokens.provider_keys import FetchRecorder, ProviderKeys
from gateway.tokens.provider_tokens import ProviderTokenVerifier
from gateway.typedefs import Clock

PROVIDER_CLAIM: Final = "idp"  # names the provider in our access tokens
_SCALARS: Final = (str, int, float, bool)


@dataclass(frozen=True, slots=True)
class Provider:
    settings: ProviderSettings
    keys: ProviderKeys
    verifier: ProviderTokenVerifier
    discovery: ProviderDiscovery | None = None  # with `discovery: true`: endpoints and jwks_uri

    @property
    def name(self) -> str:
        return self.settings.name


def build_providers(
    settings: FederationSettings,
    http: SharedClientSession,
    *,
    leeway: float,
    clock: Clock,
    record_fetch: FetchRecorder,
) -> list[Provider]:
    providers = []
    for p in settings.providers:
        discovery = ProviderDiscovery(p, settings, http, clock=clock) if p.discovery else None
        keys = ProviderKeys(
            p, settings, http, clock=clock, record=record_fetch, discovery=discovery
        )
        verifier = ProviderTokenVerifier(p, keys, leeway=leeway, clock=clock)
        providers.append(Provider(p, keys, verifier, discovery))
    return providers


def external_subject(provider: str, subject: str) -> str:
    """Our `sub` for a provider's user: never equal to a local user's or another provider's."""
    return f"{provider}:{subject}"


def provider_roles(settings: ProviderRolesSettings, claims: Mapping[str, Any]) -> tuple[str, ...]:
    """Default roles, then the groups of `from_claim` (mapped through `map` when it is set)."""
    roles = list(settings.default)
    if settings.from_claim is not None:
        for group in _groups(claims.get(settings.from_claim)):
            roles += settings.map.get(group, []) if settings.map else [group]
    return tuple(dict.fromkeys(roles))


def _groups(value: Any) -> Sequence[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [g for g in value if isinstance(g, str)]
    return ()


def copy_claims(names: Sequence[str], claims: Mapping[str, Any]) -> dict[str, Any]:
    """The named claims whose values are scalars or lists of scalars; never our own claims."""
    copied: dict[str, Any] = {}
    for name in names:
        value = claims.get(name)
        if name in OWN_CLAIMS or value is None:
            continue
        if isinstance(value, _SCALARS) or (
            isinstance(value, list) and all(isinstance(v, _SCALARS) for v in value)
        ):
            copied[name] = value
    return copied
