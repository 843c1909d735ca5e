"""Browser sessions on the session hashes: checking a refresh cookie, and staged rotation.

A browser cannot be trusted to receive any one response: a navigation cancels a fetch, a
long poll holds its headers. So a rotated refresh cookie is only *staged* (`nrt`, staged from
the current token `nrt_for`, sealed in `nbox` under the current token): the current token
keeps working until the browser presents the staged one, which then becomes current (the old
one stays good for a grace window, then counts as spent). Losing the answer that carried
the new cookie therefore never ends a session; presenting a spent token after the grace
window is reuse, as in the bearer rotation (`gateway.store.sessions`), whose fields
(`rt`, `prev`, `prev_until`, `succ`, the spent set) these scripts keep consistent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from gateway.store.boundary import translated
from gateway.store.keyspace import SID_RE
from gateway.store.sessions import _LUA_COMMON, Session, _decode, _pairs
from gateway.store.writes import DurableStore, LuaScript

LookupStatus = Literal["current", "promoted", "grace", "reuse", "expired", "unknown"]
StageStatus = Literal["staged", "restaged", "grace", "reuse", "expired", "unknown"]

# The staged successor becomes the current token; the old one is spent after `grace`.
_LUA_PROMOTE: Final = """
local function promote(s, spent, now, grace, exp)
  local old = redis.call('HGET', s, 'rt')
  redis.call('SADD', spent, old)
  redis.call('EXPIREAT', spent, math.ceil(exp))
  redis.call('HSET', s, 'prev', old, 'prev_until', string.format('%.6f', now + grace),
             'succ', redis.call('HGET', s, 'nbox'), 'rt', redis.call('HGET', s, 'nrt'))
  -- the old token's window is counted from now: nothing of a bearer rotation stays pending
  redis.call('HDEL', s, 'nrt', 'nrt_for', 'nbox', 'pend')
  redis.call('HINCRBY', s, 'gen', 1)
end
local function staged(s, presented, rt)
  return presented == redis.call('HGET', s, 'nrt') and redis.call('HGET', s, 'nrt_for') == rt
end
local function in_grace(s, presented, now)
  return presented == redis.call('HGET', s, 'prev')
    and now < tonumber(redis.call('HGET', s, 'prev_until') or '0')
end
"""

# KEYS: session, spent. ARGV: now, presented hash, grace, slot prefix.
# Is the presented refresh token live? Changes no token state, except that the staged
# successor, once presented, becomes current. Reuse deletes the session (the caller revokes).
_LOOKUP: Final = (
    _LUA_COMMON
    + _LUA_PROMOTE
    + """
local now, presented, grace, pfx = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local s = KEYS[1]
if redis.call('EXISTS', s) == 0 then return {'unknown'} end
local exp = tonumber(redis.call('HGET', s, 'expires_at'))
if now >= exp then return {'expired'} end
local rt = redis.call('HGET', s, 'rt')
local sid, idx = redis.call('HGET', s, 'sid'), redis.call('HGET', s, 'idx')
local dev = redis.call('HGET', s, 'devk')
local status
if presented == rt then
  status = 'current'
elseif staged(s, presented, rt) then
  promote(s, KEYS[2], now, grace, exp)
  status = 'promoted'
elseif in_grace(s, presented, now) then
  status = 'grace'
else
  return spent_or_unknown(s, KEYS[2], presented, pfx, sid, idx, dev)
end
redis.call('HSET', s, 'last_used_at', string.format('%.6f', now))
return {status, redis.call('HGETALL', s)}
"""
)

# KEYS: session, spent. ARGV: now, presented hash, new hash, new box (the new token sealed
# under the presented one), grace, slot prefix. Stages a successor for the presented token,
# or hands out the one already staged (concurrent or retried refreshes get the same).
_STAGE: Final = (
    _LUA_COMMON
    + _LUA_PROMOTE
    + """
local now, presented, newh, box = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local grace, pfx = tonumber(ARGV[5]), ARGV[6]
local s = KEYS[1]
if redis.call('EXISTS', s) == 0 then return {'unknown'} end
local exp = tonumber(redis.call('HGET', s, 'expires_at'))
local sid, idx = redis.call('HGET', s, 'sid'), redis.call('HGET', s, 'idx')
local dev = redis.call('HGET', s, 'devk')
if now >= exp then
  drop(pfx, sid, idx, dev)
  return {'expired'}
end
local rt = redis.call('HGET', s, 'rt')
if staged(s, presented, rt) then
  promote(s, KEYS[2], now, grace, exp)
  rt = presented
end
if presented == rt then
  redis.call('HSET', s, 'last_used_at', string.format('%.6f', now))
  if redis.call('HGET', s, 'nrt_for') == rt then
    return {'restaged', redis.call('HGETALL', s), redis.call('HGET', s, 'nbox')}
  end
  redis.call('HSET', s, 'nrt', newh, 'nrt_for', rt, 'nbox', box)
  return {'staged', redis.call('HGETALL', s)}
end
if in_grace(s, presented, now) then
  redis.call('HSET', s, 'last_used_at', string.format('%.6f', now))
  return {'grace', redis.call('HGETALL', s), redis.call('HGET', s, 'succ')}
end
return spent_or_unknown(s, KEYS[2], presented, pfx, sid, idx, dev)
"""
)


LOOKUP: Final = LuaScript(_LOOKUP)
STAGE: Final = LuaScript(_STAGE)


@dataclass(frozen=True, slots=True)
class LookupResult:
    status: LookupStatus
    session: Session | None = None  # set for live tokens and for reuse (what it was)


@dataclass(frozen=True, slots=True)
class StageResult:
    status: StageStatus
    session: Session | None = None
    box: bytes | None = None  # restaged / grace: the token to hand out, sealed (see above)


class CookieSessionStore(DurableStore):
    """The two operations browser sessions add to the session hashes (one script each).
    Writes that change a token's state wait for replica acknowledgement when `durability`
    asks (gateway.store.writes), like the bearer rotation."""

    @translated
    async def lookup(self, sid: str, presented_hash: str, *, grace: float) -> LookupResult:
        """Whether the presented refresh token is live for its session (see module doc)."""
        if not SID_RE.match(sid):
            return LookupResult("unknown")
        k = self._keys
        reply = await self._writes.run(
            LOOKUP,
            [k.session(sid), k.spent(sid)],
            [repr(self._clock()), presented_hash, repr(grace), k.session_prefix_of_sid(sid)],
            durable=_changed_tokens,
        )
        status: LookupStatus = reply[0].decode()
        if len(reply) < 2:
            return LookupResult(status)
        return LookupResult(status, _decode(_pairs(reply[1])))

    @translated
    async def stage(
        self, sid: str, presented_hash: str, new_hash: str, new_box: bytes, *, grace: float
    ) -> StageResult:
        """Stage `new_hash` as the successor of the presented token, or return the one
        already staged (its box) when there is one."""
        if not SID_RE.match(sid):
            return StageResult("unknown")
        k = self._keys
        reply = await self._writes.run(
            STAGE,
            [k.session(sid), k.spent(sid)],
            [
                repr(self._clock()),
                presented_hash,
                new_hash,
                new_box,
                repr(grace),
                k.session_prefix_of_sid(sid),
            ],
        )
        status: StageStatus = reply[0].decode()
        if len(reply) < 2:
            return StageResult(status)
        box = reply[2] if len(reply) > 2 else None
        return StageResult(status, _decode(_pairs(reply[1])), box)


def _changed_tokens(reply: list[bytes]) -> bool:
    """A lookup that promoted a staged token or ended a reused session wrote token state (a
    plain check only touched last_used_at, not worth a replica round trip)."""
    return reply[0] in (b"promoted", b"reuse")
