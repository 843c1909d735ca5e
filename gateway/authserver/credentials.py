"""Credential checkers for /auth/login: a local user file, or the legacy backend's own login.

Unknown user and wrong password are indistinguishable to the caller, in answer and timing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import aiohttp
import bcrypt
import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.config import BackendLoginSettings
from gateway.errors import ConfigError, LoginBackendUnavailable
from gateway.outbound.http_client import SharedClientSession

log = logging.getLogger("gateway.users")

_HASHER: Final = PasswordHasher()  # argon2id with argon2-cffi's current recommended parameters
# Verified against when the user does not exist, so both failures cost the same.
_DUMMY_HASH: Final = _HASHER.hash("not-a-real-password-used-for-timing-only")
BCRYPT_PREFIXES: Final = ("$2a$", "$2b$", "$2y$")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who logged in, and what goes into their tokens."""

    sub: str
    roles: tuple[str, ...] = ()
    scope: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)


class CredentialChecker(Protocol):
    async def check(self, username: str, password: str) -> Identity | None:
        """The Identity for valid credentials, None otherwise."""


def hash_password(password: str) -> str:
    """An argon2id hash for the user file."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Constant-time check of `password` against an argon2 or bcrypt hash."""
    try:
        if stored_hash.startswith(BCRYPT_PREFIXES):
            return bcrypt.checkpw(password.encode(), stored_hash.encode())
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError, ValueError):
        return False


@dataclass(frozen=True, slots=True)
class UserRecord:
    password_hash: str
    identity: Identity
    identities: tuple[str, ...] = ()  # external identities (`<provider>:<subject>`) linked here


class UserFileChecker:
    """Users from a YAML/JSON file: `users: {name: {password_hash, roles, scope, claims, sub}}`."""

    def __init__(self, users: Mapping[str, UserRecord]):
        self._users = dict(users)

    @classmethod
    def from_file(cls, path: Path) -> UserFileChecker:
        return cls(load_user_file(path))

    async def check(self, username: str, password: str) -> Identity | None:
        record = self._users.get(username)
        stored = record.password_hash if record is not None else _DUMMY_HASH
        # Hashing is deliberately slow: keep it off the event loop.
        ok = await asyncio.to_thread(verify_password, stored, password)
        if record is None or not ok:
            return None
        return record.identity

    def __len__(self) -> int:
        return len(self._users)


def load_user_file(path: Path) -> dict[str, UserRecord]:
    where = f"auth.users_file {str(path)!r}"
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        raise ConfigError(f"{where}: not valid YAML/JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
        raise ConfigError(f"{where}: expected a mapping with a 'users' mapping")
    users: dict[str, UserRecord] = {}
    for name, entry in data["users"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("password_hash"), str):
            raise ConfigError(f"{where}: users.{name}.password_hash is required")
        roles = entry.get("roles", [])
        claims = entry.get("claims", {})
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ConfigError(f"{where}: users.{name}.roles must be a list of strings")
        if not isinstance(claims, dict):
            raise ConfigError(f"{where}: users.{name}.claims must be a mapping")
        linked = entry.get("identities", [])
        if not isinstance(linked, list) or not all(isinstance(i, str) and ":" in i for i in linked):
            raise ConfigError(
                f"{where}: users.{name}.identities must be <provider>:<subject> strings"
            )
        identity = Identity(
            sub=str(entry.get("sub", name)),
            roles=tuple(roles),
            scope=entry.get("scope"),
            claims=claims,
        )
        users[str(name)] = UserRecord(entry["password_hash"], identity, tuple(linked))
    return users


def save_user(path: Path, username: str, password_hash: str, roles: list[str]) -> None:
    """Add or replace one user in a YAML user file (created if missing)."""
    data: dict[str, Any] = {"users": {}}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if isinstance(loaded, dict):
            data = loaded
            data.setdefault("users", {})
    data["users"][username] = {"password_hash": password_hash, "roles": roles}
    path.write_text(yaml.safe_dump(data, sort_keys=True))


class BackendLoginChecker:
    """Delegates to the legacy backend's login endpoint: any 2xx means the credentials are valid."""

    def __init__(self, settings: BackendLoginSettings, http: SharedClientSession):
        self._settings = settings
        self._http = http

    async def check(self, username: str, password: str) -> Identity | None:
        s = self._settings
        body = {s.username_field: username, s.password_field: password}
        try:
            async with self._http.session.post(
                s.url, json=body, timeout=aiohttp.ClientTimeout(total=s.timeout)
            ) as response:
                if not 200 <= response.status < 300:
                    return None
                wanted = s.subject_field or s.roles_field
                payload = await response.json(content_type=None) if wanted else {}
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.warning("login backend unavailable (%s)", type(exc).__name__)
            raise LoginBackendUnavailable() from exc
        sub = _dotted(payload, s.subject_field) if s.subject_field else username
        roles = _dotted(payload, s.roles_field) if s.roles_field else None
        if not isinstance(sub, str | int) or str(sub) == "":
            log.warning("login backend answered 2xx without a usable subject field")
            return None
        role_list = tuple(str(r) for r in roles) if isinstance(roles, list) else ()
        return Identity(sub=str(sub), roles=role_list)


def _dotted(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data
