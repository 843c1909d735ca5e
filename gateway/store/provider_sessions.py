"""Which gateway sessions a provider's sign-in opened: an index from the provider's session id
(`sid` of its ID token) and from its subject to the gateway's session ids, so a back-channel
logout (gateway.authserver.federation.backchannel_logout) finds what to end.

Each index is a sorted set of gateway session ids scored by the session's end: entries whose
session has ended are dropped whenever the index is written or read, and the key itself
expires with its last session. Both indexes of one sign-in are written by one script (the
provider's keys share a hash slot).
"""

from __future__ import annotations

from typing import Final

from gateway.store.boundary import translated
from gateway.store.writes import DurableStore, LuaScript

SID: Final = "sid"
SUB: Final = "sub"

# KEYS: the indexes to add to. ARGV: now, the session's end, the gateway session id.
_LINK: Final = LuaScript(
    """
local now, ends, sid = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZADD', key, ends, sid)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('EXPIREAT', key, math.ceil(tonumber(last[2])))
end
return 1
"""
)

# KEYS: the index. ARGV: now, then gateway session ids to forget.
_FORGET: Final = LuaScript(
    """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]))
for i = 2, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
return redis.call('ZCARD', KEYS[1])
"""
)


class ProviderSessionIndex(DurableStore):
    """The provider session (and subject) → gateway sessions index; see the module doc."""

    @translated
    async def link(
        self, provider: str, *, sub: str, sid: str | None, session_sid: str, until: float
    ) -> None:
        """Record that the provider's sign-in of `sub` (in its session `sid`, when it named
        one) opened the gateway session `session_sid`, which ends at `until`."""
        keys = [self._keys.provider_sessions(provider, SUB, sub)]
        if sid is not None:
            keys.append(self._keys.provider_sessions(provider, SID, sid))
        await self._writes.run(_LINK, keys, [repr(self._clock()), repr(until), session_sid])

    @translated
    async def sessions(self, provider: str, kind: str, ident: str) -> list[str]:
        """The live gateway sessions of the provider's `sid` or `sub` (`kind`)."""
        key = self._keys.provider_sessions(provider, kind, ident)
        members = await self._redis.zrangebyscore(key, f"({self._clock()!r}", "+inf")
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    @translated
    async def forget(self, provider: str, kind: str, ident: str, session_sids: list[str]) -> None:
        """Drop gateway sessions that have ended from the index."""
        key = self._keys.provider_sessions(provider, kind, ident)
        await self._writes.run(_FORGET, [key], [repr(self._clock()), *session_sids])
