"""Key names and id formats: every key the store writes is named here, with its hash tag.

All keys of one user share the hash tag `{TAG}` (8 hex chars of sha256(sub)), so every atomic
operation on a user's sessions stays in one Redis Cluster slot. Session ids embed the tag and
refresh tokens embed the session id, so any of them leads to the right slot.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

SID_RE: Final = re.compile(r"^[0-9a-f]{8}-[A-Za-z0-9_-]{22}$")
REFRESH_PREFIX: Final = "gwrt_"
_SECRET_RE: Final = re.compile(r"^[A-Za-z0-9_-]{43}$")
_REFRESH_LENGTH: Final = len(REFRESH_PREFIX) + 31 + 1 + 43


def user_tag(sub: str) -> str:
    return hashlib.sha256(sub.encode()).hexdigest()[:8]


def sub_key(sub: str) -> str:
    """The user as it appears in key names: a hash, so no client-chosen bytes enter a key."""
    return hashlib.sha256(sub.encode()).hexdigest()[:32]


def new_sid(sub: str) -> str:
    return f"{user_tag(sub)}-{secrets.token_urlsafe(16)}"


def tag_of_sid(sid: str) -> str:
    if not SID_RE.match(sid):
        raise ValueError("malformed session id")
    return sid[:8]


def new_refresh_token(sid: str) -> str:
    """Opaque refresh token: prefix, session id, 256 random bits."""
    return f"{REFRESH_PREFIX}{sid}.{secrets.token_urlsafe(32)}"


def parse_refresh_token(token: str) -> str | None:
    """The session id a well-formed refresh token names, else None."""
    if len(token) != _REFRESH_LENGTH or not token.startswith(REFRESH_PREFIX):
        return None
    sid, dot, secret = token[len(REFRESH_PREFIX) :].partition(".")
    if not dot or not SID_RE.match(sid) or not _SECRET_RE.match(secret):
        return None
    return sid


def refresh_token_hash(token: str) -> str:
    """SHA-256 of the token: all Redis ever holds of a refresh token."""
    return hashlib.sha256(token.encode()).hexdigest()


class KeySpace:
    """Key names under one prefix."""

    def __init__(self, prefix: str = "gw"):
        self.prefix = prefix
        self.revocation_pattern = f"{prefix}:rev:*"
        self.revocation_version = f"{prefix}:revocations:version"
        self.revocation_channel = f"{prefix}:revocations"
        self.audit = f"{prefix}:audit"

    def session(self, sid: str) -> str:
        return f"{self.prefix}:{{{tag_of_sid(sid)}}}:session:{sid}"

    def spent(self, sid: str) -> str:
        return f"{self.prefix}:{{{tag_of_sid(sid)}}}:spent:{sid}"

    def user_sessions(self, sub: str) -> str:
        return f"{self.prefix}:{{{user_tag(sub)}}}:user:{sub_key(sub)}:sessions"

    def user_devices(self, sub: str) -> str:
        return f"{self.prefix}:{{{user_tag(sub)}}}:user:{sub_key(sub)}:devices"

    def session_prefix(self, sub: str) -> str:
        """Session keys of this user's slot are this prefix + sid (used inside Lua)."""
        return f"{self.prefix}:{{{user_tag(sub)}}}:"

    def session_prefix_of_sid(self, sid: str) -> str:
        return f"{self.prefix}:{{{tag_of_sid(sid)}}}:"

    def revocation(self, kind: str, ident: str) -> str:
        return f"{self.prefix}:rev:{kind}:{ident}"

    def console_session(self, digest: str) -> str:
        """A console sign-in, by the SHA-256 of its cookie value."""
        return f"{self.prefix}:console:{digest}"

    def one_time(self, scope: str, ident: str) -> str:
        """A claimed one-time id (by its hash: the id itself is client-chosen)."""
        digest = hashlib.sha256(ident.encode()).hexdigest()[:32]
        return f"{self.prefix}:once:{scope}:{digest}"

    def provider_sessions(self, provider: str, kind: str, ident: str) -> str:
        """Gateway sessions opened through a provider, by the provider's session id (`sid`)
        or subject (`sub`): one slot per provider, so one script writes both indexes."""
        tag = hashlib.sha256(provider.encode()).hexdigest()[:8]
        digest = hashlib.sha256(ident.encode()).hexdigest()[:32]
        return f"{self.prefix}:{{idp-{tag}}}:idp:{kind}:{digest}"

    def authorization_code(self, digest: str) -> str:
        """An authorization code, by the SHA-256 of the code (the code itself is never kept)."""
        return f"{self.prefix}:code:{digest}"

    def rate(self, scope: str, identity: str, window_index: int) -> str:
        digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
        return f"{self.prefix}:rl:{scope}:{digest}:{window_index}"

    def shared_bucket(self, limit: str, value: str) -> str:
        """A shared rate-limit bucket: the limit's id and a hash of the counted value (an
        address, a user, a claim: never client-chosen bytes in a key name)."""
        digest = hashlib.sha256(value.encode()).hexdigest()[:32]
        return f"{self.prefix}:rlb:{limit}:{digest}"

    def bucket_workers(self) -> str:
        """The workers that synced shared rate-limit buckets lately (a sorted set)."""
        return f"{self.prefix}:rlb:workers"
