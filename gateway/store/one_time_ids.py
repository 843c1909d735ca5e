"""Identifiers that may be used once within a lifetime: a signed token's `jti` (a client's
assertion, a provider's logout token) or an authorization response's one-time value. The
first use claims the id until the token it belongs to has expired; a replay finds it taken.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

from redis.asyncio import Redis

from gateway.store.boundary import translated
from gateway.store.keyspace import KeySpace
from gateway.store.writes import Durability, LuaScript, Writer

# KEYS: the id's key. ARGV: seconds it stays claimed. 1 when this call claimed it.
CLAIM: Final = LuaScript(
    """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 1
end
return 0
"""
)


RELEASE: Final = LuaScript("return redis.call('DEL', KEYS[1])")


class OneTimeIds:
    """`claim(scope, ident, until)`: True the first time, False for every later use (until
    `release` gives it back)."""

    def __init__(
        self,
        redis: Redis,
        *,
        clock: Callable[[], float],
        prefix: str = "gw",
        durability: Durability | None = None,
    ):
        self._clock = clock
        self._keys = KeySpace(prefix)
        self._writes = Writer(redis, durability)

    @translated
    async def claim(self, scope: str, ident: str, *, until: float) -> bool:
        """Claim `ident` in `scope` until the Unix time `until` (at least one second); False
        when it was claimed before and that claim has not expired."""
        ttl = max(1, math.ceil(until - self._clock()))
        key = self._keys.one_time(scope, ident)
        # acknowledged by replicas when redis.min_replicas_ack asks: a claim lost in a
        # failover would let the same token be used twice
        return int(await self._writes.run(CLAIM, [key], [ttl])) == 1

    @translated
    async def release(self, scope: str, ident: str) -> None:
        """Give a claimed id back (the work it guarded failed and may be retried)."""
        await self._writes.run(RELEASE, [self._keys.one_time(scope, ident)], [])
