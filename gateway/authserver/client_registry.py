"""The client registry: the configured `clients` and the clients file (`auth.clients_file`,
written by `gateway clients add|remove`), each a Client the token and authorization
endpoints look up by id. Secrets are kept hashed (`sha256:<hex>` or argon2id) and compared
in constant time; a `secret_file` is hashed as it is read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from gateway.authserver.credentials import verify_password
from gateway.config import (
    ClientAuthMethod,
    ClientSettings,
    ClientType,
    Settings,
    check_clients,
    describe_validation_error,
)
from gateway.errors import ConfigError
from gateway.outbound.http_client import SharedClientSession
from gateway.tokens.client_keys import ClientKeys
from gateway.typedefs import Clock

CLIENT_SUBJECT_PREFIX: Final = "client:"
SECRET_PREFIX: Final = "gwcs_"
# RFC 8252 §7.3: a native app's loopback redirect names an IP literal; its port varies.
_LOOPBACK: Final = re.compile(r"^http://(127\.0\.0\.1|\[::1\])(?::(\d{1,5}))?(/[^#]*)?$")


def client_subject(client_id: str) -> str:
    """The `sub` of a client's own tokens: never a user's (user names have no such prefix
    by convention, and a provider's users are `<provider>:…` with no `client` provider)."""
    return CLIENT_SUBJECT_PREFIX + client_id


def new_client_secret() -> str:
    """A 256-bit client secret."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_sha256(secret: str) -> str:
    """The `sha256:<hex>` form of a (random, 256-bit) client secret."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Client:
    """One registered client, as the endpoints use it."""

    id: str
    name: str
    type: ClientType
    grants: frozenset[str]
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    roles: tuple[str, ...]
    method: ClientAuthMethod
    consent: bool
    secret_hash: str | None = None  # sha256:<hex> or an argon2id hash
    keys: ClientKeys | None = None  # private_key_jwt

    @property
    def subject(self) -> str:
        return client_subject(self.id)

    def allows(self, grant: str) -> bool:
        return grant in self.grants

    def redirect_matches(self, uri: str) -> bool:
        """Exact match; for a public client, a registered loopback IP-literal redirect also
        matches the same URI on any port (RFC 8252 §7.3). Confidential clients: exact only."""
        if uri in self.redirect_uris:
            return True
        if self.type != "public":
            return False
        presented = _loopback(uri)
        return presented is not None and any(
            _loopback(registered) == presented for registered in self.redirect_uris
        )

    async def check_secret(self, presented: str) -> bool:
        """Constant-time comparison with the stored hash (argon2id off the event loop)."""
        stored = self.secret_hash
        if stored is None or len(presented) > 1024:
            return False
        if stored.startswith("sha256:"):
            digest = hashlib.sha256(presented.encode()).digest()
            return hmac.compare_digest(digest, bytes.fromhex(stored.removeprefix("sha256:")))
        return await asyncio.to_thread(verify_password, stored, presented)


def _loopback(uri: str) -> tuple[str, str] | None:
    """(host, path and query) of an http loopback IP-literal URI with a valid port."""
    match = _LOOPBACK.match(uri)
    if match is None:
        return None
    port = match.group(2)
    if port is not None and not 0 < int(port) <= 65535:
        return None
    return match.group(1), match.group(3) or "/"


class ClientRegistry:
    """Clients by id."""

    def __init__(self, clients: Iterable[Client] = ()):
        self._clients = {c.id: c for c in clients}

    def get(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    def __iter__(self) -> Iterator[Client]:
        return iter(self._clients.values())

    def __len__(self) -> int:
        return len(self._clients)

    def grants(self) -> set[str]:
        return {grant for client in self for grant in client.grants}

    def methods(self) -> set[str]:
        return {client.method for client in self}

    async def close(self) -> None:
        for client in self:
            if client.keys is not None:
                await client.keys.close()


def build_registry(
    settings: Settings, http: SharedClientSession, *, clock: Clock
) -> ClientRegistry:
    """Every client of `clients` and of the clients file; ConfigError naming what is wrong."""
    entries = [*settings.clients, *load_clients_file(settings.auth.clients_file)]
    try:
        check_clients(settings, entries)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return ClientRegistry(client_from_settings(c, settings, http, clock=clock) for c in entries)


def client_from_settings(
    entry: ClientSettings, settings: Settings, http: SharedClientSession, *, clock: Clock
) -> Client:
    secret_hash = entry.secret_hash
    if entry.secret_file is not None:
        try:
            secret = entry.secret_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"clients[{entry.id}].secret_file: cannot read: {exc.strerror}"
            ) from None
        if len(secret) < 16:
            raise ConfigError(f"clients[{entry.id}].secret_file: the secret is too short")
        secret_hash = secret_sha256(secret)
    keys = None
    if entry.jwks_file is not None:
        keys = ClientKeys.from_file(entry.id, entry.jwks_file, clock=clock)
    elif entry.jwks_uri is not None:
        keys = ClientKeys(
            entry.id, jwks_uri=entry.jwks_uri, http=http, settings=settings.federation, clock=clock
        )
    return Client(
        id=entry.id,
        name=entry.name or entry.id,
        type=entry.type,
        grants=frozenset(entry.grants),
        redirect_uris=tuple(entry.redirect_uris),
        scopes=tuple(entry.scopes),
        roles=tuple(entry.roles),
        method=entry.method,
        consent=entry.consent,
        secret_hash=secret_hash,
        keys=keys,
    )


# ---- the clients file (gateway clients add|list|remove) --------------------------------


def load_clients_file(path: Path | None) -> list[ClientSettings]:
    """The clients of a YAML clients file (`clients: [{id, …}, …]`); none without a file."""
    if path is None:
        return []
    where = f"auth.clients_file {str(path)!r}"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{where}: not valid YAML") from None
    items = data.get("clients", []) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected a mapping with a 'clients' list")
    clients = []
    for index, item in enumerate(items):
        try:
            clients.append(ClientSettings.model_validate(item))
        except ValidationError as exc:
            detail = describe_validation_error(exc).replace("\n  ", f"\n  clients[{index}].")
            raise ConfigError(f"{where}: {detail}") from None
    return clients


def save_client(path: Path, entry: ClientSettings) -> None:
    """Add or replace (by id) one client in a YAML clients file (created if missing)."""
    kept = [c for c in _raw_clients(path) if c.get("id") != entry.id]
    kept.append(entry.model_dump(mode="json", exclude_none=True, exclude_defaults=True))
    kept[-1]["id"] = entry.id
    _write(path, kept)


def remove_client(path: Path, client_id: str) -> bool:
    """Remove a client from the file; False when it was not there."""
    items = _raw_clients(path)
    kept = [c for c in items if c.get("id") != client_id]
    if len(kept) == len(items):
        return False
    _write(path, kept)
    return True


def _raw_clients(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text()) or {}
    items = data.get("clients", []) if isinstance(data, dict) else []
    return [c for c in items if isinstance(c, dict)] if isinstance(items, list) else []


def _write(path: Path, clients: Sequence[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump({"clients": list(clients)}, sort_keys=False))
