"""Everything Redis: key names and TTLs, Lua scripts, pub/sub. Nothing else talks to Redis."""

from gateway.config.redis_url import is_memory_url
from gateway.store.audit import AuditEntry, AuditLog
from gateway.store.authorization_codes import (
    AuthorizationCodeStore,
    Redeemed,
    code_digest,
    new_authorization_code,
)
from gateway.store.client import connect_redis
from gateway.store.console_sessions import ConsoleSession, ConsoleSessionStore
from gateway.store.keyspace import (
    SID_RE,
    KeySpace,
    new_refresh_token,
    new_sid,
    parse_refresh_token,
    refresh_token_hash,
    sub_key,
)
from gateway.store.one_time_ids import OneTimeIds
from gateway.store.provider_sessions import ProviderSessionIndex
from gateway.store.ratelimit import RateLimiter
from gateway.store.revocations import (
    Feed,
    Revocation,
    RevocationBatch,
    RevocationStore,
    UnreadableMessage,
    UnreadableRecord,
)
from gateway.store.sessions import CreateResult, RotateResult, Session, SessionStore
from gateway.store.shared_buckets import Shared, SharedBuckets, Usage
from gateway.store.writes import Durability

__all__ = [
    "SID_RE",
    "AuditEntry",
    "AuditLog",
    "AuthorizationCodeStore",
    "ConsoleSession",
    "ConsoleSessionStore",
    "CreateResult",
    "Durability",
    "Feed",
    "KeySpace",
    "OneTimeIds",
    "ProviderSessionIndex",
    "RateLimiter",
    "Redeemed",
    "Revocation",
    "RevocationBatch",
    "RevocationStore",
    "RotateResult",
    "Session",
    "SessionStore",
    "Shared",
    "SharedBuckets",
    "UnreadableMessage",
    "UnreadableRecord",
    "Usage",
    "code_digest",
    "connect_redis",
    "is_memory_url",
    "new_authorization_code",
    "new_refresh_token",
    "new_sid",
    "parse_refresh_token",
    "refresh_token_hash",
    "sub_key",
]
