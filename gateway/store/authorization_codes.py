"""Authorization codes (RFC 6749 §4.1): short-lived, single use, kept only as the SHA-256 of
the code with what it was issued for. Redeeming is one Lua script: the first redemption
takes the code; any later one finds it taken and learns which session the first opened, so
that session can be ended (RFC 6749 §4.1.2: a code used twice revokes what it issued).
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal

from gateway.store.boundary import translated
from gateway.store.writes import DurableStore, LuaScript

CODE_PREFIX: Final = "gwac_"
_CODE_LENGTH: Final = len(CODE_PREFIX) + 43
# How long a redeemed code is remembered: a replay within it still ends what it issued.
REPLAY_WINDOW: Final = 600

# KEYS: the code. ARGV: expires_at, ttl, the record's JSON.
_ISSUE: Final = LuaScript(
    """
redis.call('HSET', KEYS[1], 'exp', ARGV[1], 'data', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
)

# KEYS: the code. ARGV: now, replay window (s). The first call takes the code ('ok' with its
# record, or 'expired'); every later one marks it replayed and returns the session the first
# redemption opened ('' while it has not recorded one yet).
_REDEEM: Final = LuaScript(
    """
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return {'unknown'} end
if redis.call('HGET', k, 'used') == '1' then
  redis.call('HSET', k, 'replayed', '1')
  return {'replay', redis.call('HGET', k, 'sid') or ''}
end
redis.call('HSET', k, 'used', '1')
redis.call('EXPIRE', k, ARGV[2])
if tonumber(ARGV[1]) >= tonumber(redis.call('HGET', k, 'exp')) then return {'expired'} end
return {'ok', redis.call('HGET', k, 'data')}
"""
)

# KEYS: the code. ARGV: the session its redemption opened. 0 when a replay came first: the
# caller ends that session at once instead of handing out its tokens.
_OPENED: Final = LuaScript(
    """
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return 1 end
redis.call('HSET', k, 'sid', ARGV[1])
if redis.call('HGET', k, 'replayed') == '1' then return 0 end
return 1
"""
)

Outcome = Literal["ok", "expired", "unknown", "replay"]


@dataclass(frozen=True, slots=True)
class Redeemed:
    outcome: Outcome
    record: dict[str, Any] | None = None  # what the code was issued for ("ok")
    issued_sid: str | None = None  # the session the first redemption opened ("replay")


def new_authorization_code() -> str:
    """256 random bits, with a prefix that says what it is."""
    return CODE_PREFIX + secrets.token_urlsafe(32)


def code_digest(code: str) -> str | None:
    """SHA-256 (hex) of a well-formed code, None for anything else."""
    if len(code) != _CODE_LENGTH or not code.startswith(CODE_PREFIX):
        return None
    return hashlib.sha256(code.encode()).hexdigest()


class AuthorizationCodeStore(DurableStore):
    """Issue, redeem (once) and bind codes to the session their redemption opened."""

    @translated
    async def issue(self, code: str, record: dict[str, Any], *, ttl: float) -> None:
        """Keep `record` under the code's hash for `ttl` seconds."""
        digest = code_digest(code)
        assert digest is not None
        expires_at = self._clock() + ttl
        await self._writes.run(
            _ISSUE,
            [self._keys.authorization_code(digest)],
            [repr(expires_at), max(1, math.ceil(ttl)), json.dumps(record)],
        )

    @translated
    async def redeem(self, code: str) -> Redeemed:
        """Take the code: its record the first time, `replay` (and the session the first
        redemption opened) every later time, `expired` or `unknown` otherwise."""
        digest = code_digest(code)
        if digest is None:
            return Redeemed("unknown")
        reply = await self._writes.run(
            _REDEEM,
            [self._keys.authorization_code(digest)],
            [repr(self._clock()), REPLAY_WINDOW],
            durable=_taken,
        )
        outcome: Outcome = reply[0].decode()
        if outcome == "ok":
            return Redeemed("ok", record=json.loads(reply[1]))
        if outcome == "replay":
            return Redeemed("replay", issued_sid=reply[1].decode() or None)
        return Redeemed(outcome)

    @translated
    async def opened(self, code: str, sid: str) -> bool:
        """Record the session the code's redemption opened; False when the code was replayed
        meanwhile (that session must then end)."""
        digest = code_digest(code)
        assert digest is not None
        done = await self._writes.run(_OPENED, [self._keys.authorization_code(digest)], [sid])
        return bool(done)


def _taken(reply: list[Any]) -> bool:
    """Whether a redemption changed anything worth a replica's acknowledgement."""
    return bool(reply) and reply[0] != b"unknown"
