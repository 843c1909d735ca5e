"""In-memory revocation view, and the sync that keeps it current from the store.

The view answers "is this token revoked?" with dict lookups only (the hot path does no I/O).
RevocationSync fills it: a full load after subscribing, pub/sub deltas, a cheap periodic
version check that triggers a full reload when a message was lost, a full reload after every
reconnect, and a watchdog that applies the fail mode when the view is staler than allowed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal, Protocol

from gateway.errors import InvalidToken, RevocationStale, StoreUnavailable
from gateway.store import Revocation, RevocationBatch, RevocationStore
from gateway.tokens import Principal

log = logging.getLogger("gateway.revocation")

Kind = Literal["jti", "sid", "sub"]
Clock = Callable[[], float]


class SessionLike(Protocol):
    @property
    def sid(self) -> str: ...
    @property
    def sub(self) -> str: ...
    @property
    def created_at(self) -> float: ...


class RevocationView:
    """Revoked jti/sid (until when) and per-user watermarks (tokens issued before are dead)."""

    def __init__(self, *, clock: Clock):
        self._clock = clock
        self._jti: dict[str, float] = {}
        self._sid: dict[str, float] = {}
        self._sub: dict[str, float] = {}  # sub → watermark
        self._sub_until: dict[str, float] = {}
        self.refusing = False  # set by the sync when stale past the bound in fail mode "closed"

    def apply(self, kind: Kind, ident: str, *, until: float, at: float | None = None) -> None:
        """Record one revocation (idempotent; a user watermark never moves back)."""
        if kind == "jti":
            self._jti[ident] = max(until, self._jti.get(ident, 0.0))
        elif kind == "sid":
            self._sid[ident] = max(until, self._sid.get(ident, 0.0))
        else:
            # iat has whole-second precision: floor the instant so a login in the same second
            # as the revoke-all still works (older sessions die by their sid revocations).
            instant = float(int(at if at is not None else until))
            self._sub[ident] = max(instant, self._sub.get(ident, 0.0))
            self._sub_until[ident] = max(until, self._sub_until.get(ident, 0.0))

    def apply_record(self, record: Revocation) -> None:
        self.apply(record.kind, record.id, until=record.until, at=record.at)

    def apply_batch(self, batch: RevocationBatch) -> None:
        """Bulk form of apply for full loads (a million records in one pass)."""
        for table, entries in ((self._jti, batch.jti), (self._sid, batch.sid)):
            if not table:
                table.update(entries)
                continue
            known = table.get
            for ident, until in entries.items():
                if until > known(ident, 0.0):
                    table[ident] = until
        for record in batch.users:
            self.apply_record(record)

    def check(self, principal: Principal) -> None:
        """Raise InvalidToken(revoked), or RevocationStale when refusing; else return."""
        if self.refusing:
            raise RevocationStale()
        if self._jti and principal.jti in self._jti:
            raise InvalidToken("the access token has been revoked", reason="revoked")
        if self._sid and principal.sid in self._sid:
            raise InvalidToken("the session has been revoked", reason="revoked")
        if self._sub:
            watermark = self._sub.get(principal.sub)
            # auth_time too: a token minted just after a revoke-all from an older session dies.
            if watermark is not None and min(principal.iat, principal.auth_time) < watermark:
                raise InvalidToken("the access token has been revoked", reason="revoked")

    def session_revoked(self, session: SessionLike) -> bool:
        """True when the session's sid is revoked or its user was revoked after it began."""
        if session.sid in self._sid:
            return True
        watermark = self._sub.get(session.sub)
        return watermark is not None and session.created_at < watermark

    def prune(self) -> int:
        """Forget entries whose protected tokens have all expired; returns how many."""
        now = self._clock()
        removed = 0
        for table in (self._jti, self._sid, self._sub_until):
            dead = [ident for ident, until in table.items() if until <= now]
            for ident in dead:
                del table[ident]
                if table is self._sub_until:
                    self._sub.pop(ident, None)
            removed += len(dead)
        return removed

    def entries(self, limit: int) -> list[tuple[str, str, float]]:
        """Up to `limit` (kind, id, until) rows, for the admin API."""
        rows: list[tuple[str, str, float]] = []
        for kind, table in (("jti", self._jti), ("sid", self._sid), ("sub", self._sub_until)):
            for ident, until in table.items():
                if len(rows) >= limit:
                    return rows
                rows.append((kind, ident, until))
        return rows

    def __len__(self) -> int:
        return len(self._jti) + len(self._sid) + len(self._sub)


class RevocationSync:
    """Keeps one RevocationView current from the store; see the module docstring."""

    def __init__(
        self,
        store: RevocationStore,
        view: RevocationView,
        *,
        clock: Clock,
        check_interval: float,
        max_staleness: float,
        fail_mode: Literal["closed", "open"],
        retry_delay: float = 0.2,
        max_retry_delay: float = 5.0,
    ):
        self._store = store
        self._view = view
        self._clock = clock
        self._check_interval = check_interval
        self._max_staleness = max_staleness
        self._fail_mode = fail_mode
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self.connected = False
        self.loaded = False
        self.fresh_at: float | None = None  # last instant the view was known to be current
        self.events_received = 0
        self.reloads = 0
        self._base = 0  # store version fully reflected by the view
        self._seen: set[int] = set()  # versions of feed messages applied above _base
        self._suspect_gap = False

    def staleness(self) -> float:
        """Seconds since the view was last known current (inf before the first load)."""
        if self.fresh_at is None:
            return float("inf")
        return max(0.0, self._clock() - self.fresh_at)

    async def run(self) -> None:
        """Subscribe, load, follow; on any store failure wait and start over (full reload)."""
        delay = self._retry_delay
        while True:
            try:
                await self._follow()
            except StoreUnavailable:
                if _being_cancelled():  # the store error stood in for our cancellation
                    raise asyncio.CancelledError() from None
                if self.connected:
                    log.warning("revocation feed lost; view frozen, reloading after reconnect")
                self.connected = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry_delay)
            else:  # pragma: no cover - _follow only returns by raising
                delay = self._retry_delay

    async def _follow(self) -> None:
        async with self._store.subscription() as feed:
            # Subscribed first, loaded second: nothing can fall between the load and the feed.
            await self.reload()
            self.connected = True
            next_check = time.monotonic() + self._check_interval
            while True:
                record = await feed.get(timeout=self._check_interval)
                if record is not None:
                    self._view.apply_record(record)
                    self.events_received += 1
                    if record.version > self._base:
                        self._seen.add(record.version)
                if time.monotonic() >= next_check:
                    await self._check_version()
                    next_check = time.monotonic() + self._check_interval

    async def reload(self) -> None:
        """Full load from the store (merge: revocations only ever end by expiring)."""
        version = await self._store.version()
        async for batch in self._store.batches():
            self._view.apply_batch(batch)
        self._view.prune()
        self._base = version
        self._seen = {v for v in self._seen if v > version}
        self._suspect_gap = False
        self.loaded = True
        self.reloads += 1
        self.fresh_at = self._clock()

    async def _check_version(self) -> None:
        """One GET: every version between the last load and the store's must have arrived."""
        version = await self._store.version()
        self.fresh_at = self._clock()
        self._view.prune()
        received = sum(1 for v in self._seen if v <= version)
        if version >= self._base and received == version - self._base:
            self._base = version
            self._seen = {v for v in self._seen if v > version}
            self._suspect_gap = False
            return
        # A message may still be in flight: reload only when the gap survives one interval.
        if self._suspect_gap or version < self._base:
            log.info("revocation feed missed updates (store v%d); reloading", version)
            await self.reload()
        else:
            self._suspect_gap = True

    async def watchdog(self, interval: float = 1.0) -> None:
        """Apply the fail mode while the view is staler than the bound; warn once per interval."""
        warned_at = 0.0
        while True:
            stale = self.staleness() > self._max_staleness
            self._view.refusing = stale and self._fail_mode == "closed"
            if stale and time.monotonic() - warned_at >= max(interval, 10.0):
                warned_at = time.monotonic()
                log.warning(
                    "revocation view is %.0fs stale (bound %.0fs): fail mode %s%s",
                    min(self.staleness(), 1e9),
                    self._max_staleness,
                    self._fail_mode,
                    " - refusing protected routes (503)"
                    if self._fail_mode == "closed"
                    else " - SERVING WITHOUT CURRENT REVOCATIONS",
                )
            await asyncio.sleep(interval)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
