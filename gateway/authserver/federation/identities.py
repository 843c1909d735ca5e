"""Who a verified provider token signs in as: the subject `<provider>:<provider subject>`
with the provider's roles and copied claims, or the local user that the user file links that
external identity to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.authserver.credentials import Identity, UserRecord
from gateway.config import ProviderSettings
from gateway.errors import ConfigError
from gateway.tokens.providers import PROVIDER_CLAIM, copy_claims, external_subject, provider_roles


def identity_links(users: Mapping[str, UserRecord]) -> dict[str, Identity]:
    """External identity (`<provider>:<subject>`) → the local user it signs in as."""
    links: dict[str, Identity] = {}
    for record in users.values():
        for external in record.identities:
            if external in links:
                raise ConfigError(f"auth.users_file: {external!r} is linked to two users")
            links[external] = record.identity
    return links


def federated_identity(
    provider: ProviderSettings, claims: Mapping[str, Any], links: Mapping[str, Identity]
) -> Identity:
    """The Identity a verified provider token opens a session for."""
    subject = external_subject(provider.name, claims[provider.subject_claim])
    copied = {**copy_claims(provider.copy_claims, claims), PROVIDER_CLAIM: provider.name}
    local = links.get(subject)
    if local is not None:  # a linked user keeps its own sub, roles, scope and claims
        return Identity(
            sub=local.sub, roles=local.roles, scope=local.scope, claims={**copied, **local.claims}
        )
    return Identity(sub=subject, roles=provider_roles(provider.roles, claims), claims=copied)
