"""Fixed-window rate limits in Redis (INCR + EXPIRE on one key per identity and window)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

from redis.asyncio import Redis

from gateway.store.boundary import translated
from gateway.store.keyspace import KeySpace
from gateway.store.writes import LuaScript, Writer

# KEYS: the counter. ARGV: its lifetime. One script rather than MULTI: redis-py's Cluster
# transactions queue each command through a thread running its own event loop, which after a
# failover rebuilds the shared client's connections on that loop (500s, "different loop").
HIT: Final = LuaScript(
    """
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return count
"""
)


class RateLimiter:
    def __init__(self, redis: Redis, *, clock: Callable[[], float], prefix: str = "gw"):
        self._redis = redis
        self._clock = clock
        self._keys = KeySpace(prefix)
        self._writes = Writer(redis)  # counters are not worth waiting for replicas

    def _window(self, scope: str, identity: str, window: int) -> tuple[str, int]:
        now = self._clock()
        index = int(now // window)
        retry_after = max(1, math.ceil((index + 1) * window - now))
        return self._keys.rate(scope, identity, index), retry_after

    @translated
    async def hit(self, scope: str, identity: str, *, limit: int, window: int) -> tuple[bool, int]:
        """Count one event; (allowed, seconds until the window resets)."""
        key, retry_after = self._window(scope, identity, window)
        count = await self._writes.run(HIT, [key], [window + 1], durable=False)
        return int(count) <= limit, retry_after

    @translated
    async def peek(self, scope: str, identity: str, *, limit: int, window: int) -> tuple[bool, int]:
        """(blocked, retry_after) without counting: blocked once `limit` events were counted."""
        key, retry_after = self._window(scope, identity, window)
        count = await self._redis.get(key)
        return int(count or 0) >= limit, retry_after

    @translated
    async def reset(self, scope: str, identity: str, *, window: int) -> None:
        key, _ = self._window(scope, identity, window)
        await self._redis.delete(key)
