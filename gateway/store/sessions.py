"""Sessions and refresh-token rotation; each state change is one Lua script in one slot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from gateway.store.boundary import translated
from gateway.store.keyspace import SID_RE
from gateway.store.writes import DurableStore, LuaScript

Outcome = Literal["rotated", "grace", "redelivered", "reuse", "expired", "unknown"]

# Lua helpers shared by the scripts: delete one session (and its index/device entries).
_LUA_COMMON: Final = """
local unpack = unpack or table.unpack
local function drop(pfx, sid, idx, dev)
  local skey = pfx .. 'session:' .. sid
  local device = redis.call('HGET', skey, 'device_id')
  redis.call('DEL', skey, pfx .. 'spent:' .. sid)
  if idx then redis.call('ZREM', idx, sid) end
  if dev and device and device ~= '' and redis.call('HGET', dev, device) == sid then
    redis.call('HDEL', dev, device)
  end
end
local function extend(key, target)
  local ttl = redis.call('TTL', key)
  if ttl < target then redis.call('EXPIRE', key, target) end
end
-- A token that is neither current nor replayable: one of the session's spent tokens means
-- reuse (the session ends; what it held goes back for the alarm), anything else is unknown.
local function spent_or_unknown(s, spent, presented, pfx, sid, idx, dev)
  if redis.call('SISMEMBER', spent, presented) == 1 then
    local before = redis.call('HGETALL', s)
    drop(pfx, sid, idx, dev)
    return {'reuse', before}
  end
  return {'unknown'}
end
"""

# KEYS: session, spent, index, devices. ARGV: now, expires_at, sid, device_id, slot prefix,
# then field/value pairs of the new session.
_CREATE: Final = (
    _LUA_COMMON
    + """
local now, exp, sid, device, pfx = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  drop(pfx, old, KEYS[3], KEYS[4])
end
local replaced = ''
if device ~= '' then
  local old = redis.call('HGET', KEYS[4], device)
  if old and redis.call('EXISTS', pfx .. 'session:' .. old) == 1 then
    drop(pfx, old, KEYS[3], KEYS[4])
    replaced = old
  end
  redis.call('HSET', KEYS[4], device, sid)
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('EXPIREAT', KEYS[1], math.ceil(exp))
redis.call('ZADD', KEYS[3], exp, sid)
local ttl = math.ceil(exp - now)
extend(KEYS[3], ttl)
if redis.call('EXISTS', KEYS[4]) == 1 then extend(KEYS[4], ttl) end
return replaced
"""
)

# KEYS: session, spent. ARGV: now, presented hash, new hash, successor box, grace, slot prefix.
# A rotation leaves its successor "pending" (pend = 1) until the gateway confirms it could hand
# it out (_CONFIRM); until then the spent token fetches the same successor again, however late
# (a rotation whose answer was lost to a Redis timeout costs no session). Once confirmed, the
# grace window runs from the confirmation, and the spent token presented after it is reuse.
_ROTATE: Final = (
    _LUA_COMMON
    + """
local now, presented, newh, box = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local grace, pfx = tonumber(ARGV[5]), ARGV[6]
local s = KEYS[1]
if redis.call('EXISTS', s) == 0 then return {'unknown'} end
local idx, dev = redis.call('HGET', s, 'idx'), redis.call('HGET', s, 'devk')
local exp = tonumber(redis.call('HGET', s, 'expires_at'))
local sid = redis.call('HGET', s, 'sid')
if now >= exp then
  drop(pfx, sid, idx, dev)
  return {'expired'}
end
if presented == redis.call('HGET', s, 'rt') then
  redis.call('SADD', KEYS[2], presented)
  redis.call('EXPIREAT', KEYS[2], math.ceil(exp))
  redis.call('HSET', s, 'prev', presented, 'prev_until', string.format('%.6f', now + grace),
             'succ', box, 'rt', newh, 'last_used_at', string.format('%.6f', now))
  if grace > 0 then redis.call('HSET', s, 'pend', '1') else redis.call('HDEL', s, 'pend') end
  redis.call('HINCRBY', s, 'gen', 1)
  return {'rotated', redis.call('HGETALL', s)}
end
if grace > 0 and presented == redis.call('HGET', s, 'prev') then
  local replay
  if now < tonumber(redis.call('HGET', s, 'prev_until') or '0') then
    replay = 'grace'
  elseif redis.call('HGET', s, 'pend') == '1' then
    replay = 'redelivered'
  end
  if replay then
    -- a write on every replay: a WAIT after it covers the rotation it replays
    redis.call('HSET', s, 'last_used_at', string.format('%.6f', now))
    return {replay, redis.call('HGETALL', s)}
  end
end
return spent_or_unknown(s, KEYS[2], presented, pfx, sid, idx, dev)
"""
)

# KEYS: session. ARGV: delivered successor's hash, now, grace. The successor could be handed
# out: it is no longer pending, and the grace window of the token it replaced starts now.
_CONFIRM: Final = """
local s = KEYS[1]
if redis.call('HGET', s, 'pend') == '1' and redis.call('HGET', s, 'rt') == ARGV[1] then
  redis.call('HSET', s, 'prev_until', string.format('%.6f', tonumber(ARGV[2]) + tonumber(ARGV[3])))
  redis.call('HDEL', s, 'pend')
  return 1
end
return 0
"""

# KEYS: session. ARGV: slot prefix. Deletes one session; returns what it held.
_DELETE: Final = (
    _LUA_COMMON
    + """
local s = KEYS[1]
local before = redis.call('HGETALL', s)
if #before == 0 then return before end
local sid, idx = redis.call('HGET', s, 'sid'), redis.call('HGET', s, 'idx')
local dev = redis.call('HGET', s, 'devk')
drop(ARGV[1], sid, idx, dev)
return before
"""
)

# KEYS: index, devices. ARGV: slot prefix. Deletes every session of the user.
_DELETE_ALL: Final = (
    _LUA_COMMON
    + """
local sids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, sid in ipairs(sids) do drop(ARGV[1], sid, nil, nil) end
redis.call('DEL', KEYS[1], KEYS[2])
return sids
"""
)


CREATE: Final = LuaScript(_CREATE)
ROTATE: Final = LuaScript(_ROTATE)
CONFIRM: Final = LuaScript(_CONFIRM)
DELETE: Final = LuaScript(_DELETE)
DELETE_ALL: Final = LuaScript(_DELETE_ALL)


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    sub: str
    created_at: float
    last_used_at: float
    expires_at: float
    device_id: str | None = None
    device_name: str | None = None
    client_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    roles: tuple[str, ...] = ()
    scope: str | None = None
    extra_claims: dict[str, Any] = field(default_factory=dict)
    generation: int = 0


@dataclass(frozen=True, slots=True)
class CreateResult:
    session: Session
    replaced_sid: str | None


@dataclass(frozen=True, slots=True)
class RotateResult:
    outcome: Outcome
    session: Session | None = None
    successor_box: bytes | None = None  # the sealed successor, for "grace" and "redelivered"
    pending: bool = False  # the successor awaits confirm_delivery


class SessionStore(DurableStore):
    """One hash per session; refresh tokens only as SHA-256 hashes; TTL = absolute lifetime.

    Creating, rotating and deleting wait for replica acknowledgement when `durability` asks
    (see gateway.store.writes); confirming a delivery does not (lost, it only leaves the
    successor redeliverable until it is used)."""

    @translated
    async def create(
        self,
        *,
        sub: str,
        sid: str,
        refresh_hash: str,
        lifetime: float,
        device_id: str | None = None,
        device_name: str | None = None,
        client_id: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        roles: Sequence[str] = (),
        scope: str | None = None,
        extra_claims: dict[str, Any] | None = None,
    ) -> CreateResult:
        """Write a new session atomically; the same device's previous session is removed."""
        now = self._clock()
        k = self._keys
        session = Session(
            sid=sid,
            sub=sub,
            created_at=now,
            last_used_at=now,
            expires_at=now + lifetime,
            device_id=device_id,
            device_name=device_name,
            client_id=client_id,
            ip=ip,
            user_agent=user_agent,
            roles=tuple(roles),
            scope=scope,
            extra_claims=dict(extra_claims or {}),
        )
        fields = [
            *_encode(session),
            *("rt", refresh_hash, "gen", "0"),
            *("idx", k.user_sessions(sub), "devk", k.user_devices(sub)),
        ]
        replaced = await self._writes.run(
            CREATE,
            [k.session(sid), k.spent(sid), k.user_sessions(sub), k.user_devices(sub)],
            [
                *(repr(now), repr(session.expires_at), sid, device_id or ""),
                *(k.session_prefix(sub), *fields),
            ],
        )
        replaced_sid = replaced.decode() if replaced else None
        return CreateResult(session, replaced_sid or None)

    @translated
    async def rotate(
        self,
        *,
        sid: str,
        presented_hash: str,
        new_hash: str,
        successor_box: bytes,
        grace: float,
        now: float | None = None,
    ) -> RotateResult:
        """Spend the presented refresh token and record its successor, in one step.

        The successor stays pending (`pending`) until `confirm_delivery`: a spent token whose
        successor is pending gets it again ("redelivered"), however late, as long as the
        grace window is not 0."""
        if not SID_RE.match(sid):
            return RotateResult("unknown")
        k = self._keys
        moment = self._clock() if now is None else now
        reply = await self._writes.run(
            ROTATE,
            [k.session(sid), k.spent(sid)],
            [
                repr(moment),
                presented_hash,
                new_hash,
                successor_box,
                repr(grace),
                k.session_prefix_of_sid(sid),
            ],
            durable=_wrote,
        )
        outcome: Outcome = reply[0].decode()
        if len(reply) < 2:
            return RotateResult(outcome)
        raw = _pairs(reply[1])
        box = raw.get(b"succ") if outcome in ("grace", "redelivered") else None
        return RotateResult(outcome, _decode(raw), box, pending=raw.get(b"pend") == b"1")

    @translated
    async def confirm_delivery(
        self, *, sid: str, successor_hash: str, grace: float, now: float | None = None
    ) -> bool:
        """The pending successor could be handed out: the token it replaced gets `grace`
        seconds from now, then counts as reuse. False when nothing was pending for it."""
        if not SID_RE.match(sid):
            return False
        moment = self._clock() if now is None else now
        done = await self._writes.run(
            CONFIRM,
            [self._keys.session(sid)],
            [successor_hash, repr(moment), repr(grace)],
            durable=False,
        )
        return bool(done)

    @translated
    async def owner(self, sid: str, presented_hash: str) -> Session | None:
        """The live session this refresh token can still refresh: its current token, or the
        spent one while that still fetches its successor (pending or within grace)."""
        if not SID_RE.match(sid):
            return None
        raw = _pairs_from_dict(await self._redis.hgetall(self._keys.session(sid)))
        now = self._clock()
        presented = presented_hash.encode()
        if not raw or not (raw.get(b"rt") == presented or _replayable(raw, presented, now)):
            return None
        session = _decode(raw)
        return session if session.expires_at > now else None

    @translated
    async def get(self, sid: str) -> Session | None:
        if not SID_RE.match(sid):
            return None
        raw = _pairs_from_dict(await self._redis.hgetall(self._keys.session(sid)))
        if not raw:
            return None
        session = _decode(raw)
        return session if session.expires_at > self._clock() else None

    @translated
    async def list_for_user(self, sub: str) -> list[Session]:
        """Live sessions of `sub`, oldest first."""
        now = self._clock()
        index = self._keys.user_sessions(sub)
        sids = await self._redis.zrangebyscore(index, f"({now!r}", "+inf")
        pipe = self._redis.pipeline(transaction=False)
        for sid in sids:
            pipe.hgetall(self._keys.session(_text(sid)))
        sessions = [_decode(_pairs_from_dict(raw)) for raw in await pipe.execute() if raw]
        return sorted(sessions, key=lambda s: s.created_at)

    @translated
    async def delete(self, sid: str) -> Session | None:
        """Remove one session (and its index/device entries); what it was, or None."""
        if not SID_RE.match(sid):
            return None
        k = self._keys
        reply = await self._writes.run(
            DELETE, [k.session(sid)], [k.session_prefix_of_sid(sid)], durable=bool
        )
        return _decode(_pairs(reply)) if reply else None

    @translated
    async def delete_all_for_user(self, sub: str) -> list[str]:
        k = self._keys
        reply = await self._writes.run(
            DELETE_ALL,
            [k.user_sessions(sub), k.user_devices(sub)],
            [k.session_prefix(sub)],
            durable=bool,
        )
        return [sid.decode() for sid in reply]


def _replayable(raw: dict[bytes, bytes], presented: bytes, now: float) -> bool:
    """Whether the rotation script would hand this spent token its successor again."""
    if raw.get(b"prev") != presented:
        return False
    return raw.get(b"pend") == b"1" or now < float(raw.get(b"prev_until") or 0)


def _wrote(reply: list[Any]) -> bool:
    """Whether a rotation attempt changed anything (an unknown token changes nothing)."""
    return bool(reply) and reply[0] != b"unknown"


def _encode(session: Session) -> list[str]:
    pairs: dict[str, str] = {
        "sid": session.sid,
        "sub": session.sub,
        "created_at": repr(session.created_at),
        "last_used_at": repr(session.last_used_at),
        "expires_at": repr(session.expires_at),
        "roles": json.dumps(list(session.roles)),
        "claims": json.dumps(session.extra_claims),
    }
    for name in ("device_id", "device_name", "client_id", "ip", "user_agent", "scope"):
        value = getattr(session, name)
        if value is not None:
            pairs[name] = value
    return [item for pair in pairs.items() for item in pair]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _pairs_from_dict(raw: dict[Any, Any]) -> dict[bytes, bytes]:
    return {(k if isinstance(k, bytes) else str(k).encode()): v for k, v in raw.items()}


def _decode(raw: dict[bytes, bytes]) -> Session:
    def text(name: str) -> str | None:
        value = raw.get(name.encode())
        return value.decode() if value is not None else None

    return Session(
        sid=text("sid") or "",
        sub=text("sub") or "",
        created_at=float(text("created_at") or 0),
        last_used_at=float(text("last_used_at") or 0),
        expires_at=float(text("expires_at") or 0),
        device_id=text("device_id"),
        device_name=text("device_name"),
        client_id=text("client_id"),
        ip=text("ip"),
        user_agent=text("user_agent"),
        roles=tuple(json.loads(text("roles") or "[]")),
        scope=text("scope"),
        extra_claims=json.loads(text("claims") or "{}"),
        generation=int(text("gen") or 0),
    )
