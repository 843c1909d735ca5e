"""Audit trail: a capped Redis stream with a retention TTL, newest first on read."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

from gateway.store.boundary import translated
from gateway.store.keyspace import KeySpace
from gateway.store.writes import Durability, LuaScript, Writer

# KEYS: the stream. ARGV: maxlen, retention seconds, then field/value pairs. One step, so the
# stream never exists without its TTL, and one write to acknowledge.
APPEND: Final = LuaScript(
    """
local unpack = unpack or table.unpack
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return id
"""
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    at: float
    actor: str
    action: str
    target: str
    source: str | None
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The entry as the admin API and the CLI print it."""
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "source": self.source,
            "detail": self.detail,
        }


class AuditLog:
    def __init__(
        self,
        redis: Redis,
        *,
        clock: Callable[[], float],
        prefix: str = "gw",
        maxlen: int = 100_000,
        retention: int = 90 * 86400,
        durability: Durability | None = None,
    ):
        self._redis = redis
        self._writes = Writer(redis, durability)
        self._clock = clock
        self._key = KeySpace(prefix).audit
        self._maxlen = maxlen
        self._retention = retention

    @translated
    async def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        source: str | None,
        detail: dict[str, Any] | None = None,
    ) -> str:
        """Append one entry; raises StoreUnavailable when it could not be written."""
        fields = {
            "at": repr(self._clock()),
            "actor": actor,
            "action": action,
            "target": target,
            "source": source or "",
            "detail": json.dumps(detail or {}, separators=(",", ":")),
        }
        pairs = [item for pair in fields.items() for item in pair]
        entry_id = await self._writes.run(
            APPEND, [self._key], [self._maxlen, self._retention, *pairs]
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    @translated
    async def recent(self, *, count: int = 100, before: str | None = None) -> list[AuditEntry]:
        """Newest first; `before` pages back from an entry id (exclusive)."""
        if before == "0-0":
            return []  # nothing is older (and Redis refuses an exclusive bound below 0-0)
        upper = f"({before}" if before else "+"
        rows: Any = await self._redis.xrevrange(self._key, max=upper, min="-", count=count)
        return [_entry(entry_id, fields) for entry_id, fields in rows or []]


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> AuditEntry:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode()

    return AuditEntry(
        id=entry_id.decode(),
        at=float(text("at") or 0),
        actor=text("actor"),
        action=text("action"),
        target=text("target"),
        source=text("source") or None,
        detail=json.loads(text("detail") or "{}"),
    )
