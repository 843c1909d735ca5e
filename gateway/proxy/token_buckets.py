"""Token buckets in a worker's memory: one table per configured limit, one bucket per key
value (a user, a session, an address, …). Nothing here waits or talks to Redis.

In shared mode (gateway.proxy.route_limits) a bucket holds the tokens Redis reserved for
this worker (its share of the shared bucket): they do not refill here, and what is left of
them goes back at the next sync, which reserves a new share. A key this worker has not
synced yet starts on `size / workers` tokens that nobody reserved, charged to the shared
bucket at the next sync: the only tokens admitted beyond the shared bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

# A bucket: [tokens, last refill (clock seconds), divisor (workers sharing the key),
# reserved (1.0: its tokens are a share Redis reserved; they do not refill here)].
TOKENS: Final = 0
STAMP: Final = 1
DIVISOR: Final = 2
RESERVED: Final = 3


@dataclass(frozen=True, slots=True)
class Report:
    """One key's account for a sync: tokens to give back to the shared bucket (negative:
    to charge it), and whether this worker wants a new share."""

    key: str
    give: float
    wants: bool


@dataclass(frozen=True, slots=True)
class BucketShape:
    """A limit's bucket: `size` tokens, refilled at `rate` tokens per second."""

    rate: float
    size: float

    def window(self) -> int:
        """Seconds an empty bucket takes to fill (the RateLimit-Policy window)."""
        return max(1, math.ceil(self.size / self.rate))


class BucketTable:
    """The buckets of one limit in this worker, at most `max_keys` of them."""

    def __init__(self, shape: BucketShape, *, max_keys: int):
        self.shape = shape
        self.max_keys = max_keys
        self.buckets: dict[str, list[float]] = {}
        self.pending: dict[str, int] = {}  # shared mode: admitted since the last sync
        self._recent: dict[str, int] = {}  # shared mode: key → syncs it is still refreshed for
        self.shared = False  # set by the limiter while shared mode syncs with Redis
        self.workers = 1  # shared mode: workers known to share this limit's keys

    def refill(self, key: str, now: float) -> list[float]:
        """The key's bucket, refilled up to now (a new one starts full)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_keys:
                self.evict(now)
            divisor = float(self.workers) if self.shared else 1.0
            bucket = self.buckets[key] = [self.shape.size / divisor, now, divisor, 0.0]
            return bucket
        elapsed = now - bucket[STAMP]
        if elapsed > 0 and not bucket[RESERVED]:
            divisor = bucket[DIVISOR]
            tokens = bucket[TOKENS] + elapsed * self.shape.rate / divisor
            cap = self.shape.size / divisor
            bucket[TOKENS] = tokens if tokens < cap else cap
            bucket[STAMP] = now
        return bucket

    def consume(self, key: str, bucket: list[float]) -> None:
        bucket[TOKENS] -= 1.0
        if self.shared:
            self.pending[key] = self.pending.get(key, 0) + 1

    def wait(self, bucket: list[float]) -> float:
        """Seconds until the bucket holds a whole token again."""
        missing = 1.0 - bucket[TOKENS]
        return max(0.0, missing * bucket[DIVISOR] / self.shape.rate)

    def until_full(self, bucket: list[float]) -> float:
        """Seconds until the (whole, shared) bucket would be full again."""
        missing = self.shape.size - max(0.0, bucket[TOKENS]) * bucket[DIVISOR]
        return max(0.0, missing / self.shape.rate)

    def evict(self, now: float) -> None:
        """Make room: buckets that have filled up again go first (forgetting them changes
        nothing), then the oldest, down to 90 % of the bound."""
        rate, size = self.shape.rate, self.shape.size
        for key, bucket in list(self.buckets.items()):
            divisor = bucket[DIVISOR]
            if bucket[RESERVED]:
                continue  # a share: it goes back to Redis at a sync, never dropped here
            if bucket[TOKENS] + (now - bucket[STAMP]) * rate / divisor >= size / divisor:
                del self.buckets[key]
        target = int(self.max_keys * 0.9)
        while len(self.buckets) > target:
            del self.buckets[next(iter(self.buckets))]

    # -- shared mode -----------------------------------------------------------------------

    def reports(self, rounds: int) -> list[Report]:
        """The keys to sync: those admitted since the last sync and within the last `rounds`
        syncs (they keep a share), and those idle longer (their share goes back, and the
        bucket is forgotten). Counting starts again."""
        pending, self.pending = self.pending, {}
        recent = self._recent
        out = []
        for key in list(recent):
            if key not in pending:
                recent[key] -= 1
                if recent[key] <= 0:
                    del recent[key]
                    bucket = self.buckets.pop(key, None)
                    if bucket is not None:
                        out.append(Report(key, self._give(bucket, 0), wants=False))
        for key in pending:
            recent[key] = rounds
        for key in recent:
            bucket = self.buckets.get(key)
            if bucket is not None:
                out.append(Report(key, self._give(bucket, pending.get(key, 0)), wants=True))
        return out

    @staticmethod
    def _give(bucket: list[float], used: int) -> float:
        """A reserved share's unused tokens go back; unreserved admissions are charged."""
        return max(0.0, bucket[TOKENS]) if bucket[RESERVED] else -float(used)

    def apply_share(self, key: str, share: float, sharing: int, now: float) -> None:
        """Redis reserved `share` tokens for this worker, one of `sharing` drawing on the key:
        they are the bucket now, less what was admitted while the answer was on its way."""
        bucket = self.buckets.get(key)
        if bucket is None:
            return  # evicted meanwhile
        bucket[TOKENS] = share - self.pending.get(key, 0)
        bucket[STAMP] = now
        bucket[DIVISOR] = float(max(1, sharing))
        bucket[RESERVED] = 1.0

    def go_local(self) -> None:
        """Redis is out of reach: every bucket counts alone again, with the full rate."""
        self.shared = False
        self.pending = {}
        self._recent = {}
        for bucket in self.buckets.values():
            if bucket[DIVISOR] != 1.0:
                bucket[TOKENS] = max(0.0, bucket[TOKENS]) * bucket[DIVISOR]
                bucket[DIVISOR] = 1.0
            bucket[RESERVED] = 0.0
