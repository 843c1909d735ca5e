"""Throttled guessing: failed checks of a secret (an admin API key, an introspection client's
secret) are counted per client address, and once `limit` fall in one window every further
attempt from that address is refused with 429 and `Retry-After` until the window ends, before
any secret is compared (a right secret too, as for logins).

The count is kept in Redis (`store.RateLimiter`), shared by every worker and instance. While
Redis is unavailable the process counts on its own: a secret check never fails because the
store is away, and guessing is never unthrottled because it is.
"""

from __future__ import annotations

import contextlib
import math
from typing import Final

from gateway.config import RateLimit
from gateway.errors import RateLimited, StoreUnavailable
from gateway.store import RateLimiter
from gateway.typedefs import Clock

MAX_LOCAL_ADDRESSES: Final = 10_000  # addresses counted in the process at once (bounded)


class GuessThrottle:
    """Failed secret checks of one kind (`scope`) per client address; see the module."""

    def __init__(
        self,
        limiter: RateLimiter,
        local: LocalCounts,
        *,
        scope: str,
        limit: RateLimit,
        what: str,
    ):
        self._limiter = limiter
        self._local = local
        self._scope = scope
        self._limit = limit
        self._what = what  # "admin keys": said in the 429's description

    async def check(self, address: str | None) -> None:
        """Raise RateLimited when `address` has used up its failures in this window."""
        identity = address or "unknown"
        limit, window = self._limit.limit, self._limit.window
        try:
            blocked, retry = await self._limiter.peek(
                self._scope, identity, limit=limit, window=window
            )
        except StoreUnavailable:
            count, retry = self._local.count(self._scope, identity, window)
            blocked = count >= limit
        if blocked:
            raise RateLimited(f"too many wrong {self._what} from this address", retry_after=retry)

    async def failed(self, address: str | None) -> None:
        """Count one failed check from `address`."""
        identity = address or "unknown"
        limit, window = self._limit.limit, self._limit.window
        self._local.hit(self._scope, identity, window)  # kept warm for when Redis is away
        with contextlib.suppress(StoreUnavailable):  # then counted in the process only
            await self._limiter.hit(self._scope, identity, limit=limit, window=window)


class LocalCounts:
    """Fixed-window counts in this process per (scope, identity), for a bounded number of
    identities: the process's own count of failures while Redis is away. One per process
    (services.Resources), so a reloaded configuration keeps counting."""

    def __init__(self, clock: Clock):
        self._clock = clock
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}  # → (window index, count)

    def _window(self, window: int) -> tuple[int, int]:
        """(index of the current window, seconds until it ends)."""
        now = self._clock()
        index = int(now // window)
        return index, max(1, math.ceil((index + 1) * window - now))

    def hit(self, scope: str, identity: str, window: int) -> None:
        index, _ = self._window(window)
        key = (scope, identity)
        seen, count = self._counts.get(key, (index, 0))
        if key not in self._counts and len(self._counts) >= MAX_LOCAL_ADDRESSES:
            self._counts = {k: v for k, v in self._counts.items() if v[0] == index}
            if len(self._counts) >= MAX_LOCAL_ADDRESSES:
                return  # that many addresses at once: beyond what a per-address limit stops
        self._counts[key] = (index, count + 1 if seen == index else 1)

    def count(self, scope: str, identity: str, window: int) -> tuple[int, int]:
        """(failures in the current window, seconds until it ends)."""
        index, retry = self._window(window)
        seen, count = self._counts.get((scope, identity), (index, 0))
        return (count if seen == index else 0), retry
