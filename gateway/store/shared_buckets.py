"""Rate-limit buckets shared by every worker and instance on one Redis, synced in batches.

No request waits on Redis: each worker admits from the share of a bucket Redis reserved
for it (gateway.proxy.token_buckets) and, every `rate_limiting.sync_interval`, settles its
keys in one pipeline. One script per key refills the shared bucket by Redis's own clock
(workers' clocks may disagree), takes back what is left of the worker's share (or charges
what it admitted before it had one: the bucket may go into debt, down to minus its size,
which later requests pay back), and reserves the worker's next share: what is left divided
among the workers drawing on the key. A heartbeat (a sorted set of the workers that synced
lately) tells a worker how many there are, for the keys it has not synced yet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from gateway.store.boundary import translated
from gateway.store.keyspace import KeySpace
from gateway.store.writes import LuaScript

# KEYS: the bucket (a hash). ARGV: tokens per millisecond, size, tokens given back (negative:
# charged), worker id, ms after which a worker that has not synced the key no longer counts,
# the key's lifetime (ms), 1 when the worker wants a share (0: it lets the key go), the
# workers alive (each one that has not synced the key yet may be admitting its first
# size / workers tokens on it: those are held back from the shares).
SYNC_BUCKET: Final = LuaScript(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, size = tonumber(ARGV[1]), tonumber(ARGV[2])
local give, stale = tonumber(ARGV[3]), tonumber(ARGV[5])
local worker = 'w:' .. ARGV[4]
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if tokens == nil or ts == nil then tokens, ts = size, now end
if now > ts then tokens = math.min(size, tokens + (now - ts) * rate) end
tokens = math.max(-size, math.min(size, tokens + give))
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[1], worker, now)
else
  redis.call('HDEL', KEYS[1], worker)
end
local fields = redis.call('HGETALL', KEYS[1])
local active = 0
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'w:' then
    if now - tonumber(fields[i + 1]) > stale then
      redis.call('HDEL', KEYS[1], fields[i])
    else
      active = active + 1
    end
  end
end
local share = 0
local alive = math.max(tonumber(ARGV[8]), active, 1)
local spare = tokens - (alive - active) * size / alive
if ARGV[7] == '1' and spare > 0 then
  share = spare / math.max(active, 1)
  tokens = tokens - share
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return {tostring(share), active}
"""
)
# KEYS: the workers' heartbeat (a sorted set). ARGV: worker id, ms after which a silent
# worker no longer counts.
HEARTBEAT: Final = LuaScript(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
"""
)


@dataclass(frozen=True, slots=True)
class Usage:
    """One worker's account of one key of one limit at a sync."""

    limit: str  # the limit's id (a digest of its route and settings)
    key: str  # the counted value (hashed into the key name)
    give: float  # tokens given back (what is left of its share), or charged when negative
    wants: bool  # whether it wants a new share (False: it no longer serves the key)
    rate: float  # tokens per second
    size: float
    lifetime: float  # seconds the shared bucket outlives its last sync


@dataclass(frozen=True, slots=True)
class Shared:
    """A worker's new share of a shared bucket, and how many workers draw on the key."""

    share: float
    workers: int


class SharedBuckets:
    """The shared buckets' scripts, one pipeline per sync."""

    def __init__(self, redis: Redis, *, prefix: str = "gw"):
        self._redis = redis
        self._keys = KeySpace(prefix)

    @translated
    async def sync(
        self, worker: str, usage: Sequence[Usage], *, stale: float, workers: int
    ) -> tuple[int, list[Shared]]:
        """(workers alive, this worker's new share of each bucket in `usage`, in order);
        `workers`: how many were alive at the last sync."""
        stale_ms = max(1, int(stale * 1000))
        try:
            results = await self._send(worker, usage, stale_ms, workers)
        except NoScriptError:
            for script in (HEARTBEAT, SYNC_BUCKET):  # a new or restarted Redis
                await self._redis.script_load(script.source)
            results = await self._send(worker, usage, stale_ms, workers)
        workers = int(results[0])
        return workers, [Shared(float(r[0]), int(r[1])) for r in results[1:]]

    async def _send(
        self, worker: str, usage: Sequence[Usage], stale_ms: int, workers: int
    ) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.evalsha(HEARTBEAT.sha, 1, self._keys.bucket_workers(), worker, stale_ms)
        for item in usage:
            lifetime_ms = max(stale_ms, int(item.lifetime * 1000))
            pipe.evalsha(
                SYNC_BUCKET.sha,
                1,
                self._keys.shared_bucket(item.limit, item.key),
                repr(item.rate / 1000),
                repr(item.size),
                repr(item.give),
                worker,
                stale_ms,
                lifetime_ms,
                1 if item.wants else 0,
                workers,
            )
        results: list[Any] = await pipe.execute()
        return results


def limit_id(*parts: object) -> str:
    """A limit's id in key names: the same on every instance with the same settings."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]
