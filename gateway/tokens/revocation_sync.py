"""RevocationSync keeps a RevocationView current from the store: a full load after
subscribing, pub/sub deltas, a cheap periodic version check that triggers a full reload when
a message was lost, a full reload after every reconnect, and a watchdog that applies the
fail mode when the view is staler than allowed.

A record that cannot be read never un-revokes anything (fail closed): the id its key names is
revoked in the view for as long as the key lives (a key without an expiry: `horizon`, the
longest any token lives, from each load that still finds it), counted, and logged once. A
message that cannot be read makes the sync check the store's version at once, so a record
lost with it is loaded now rather than at the next check.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.errors import StoreUnavailable
from gateway.store import RevocationStore, UnreadableMessage, UnreadableRecord
from gateway.tokens.revocation_view import RevocationView
from gateway.typedefs import Clock, FailMode

log = logging.getLogger("gateway.revocation")


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
        fail_mode: FailMode,
        horizon: float = 31 * 86400,
        retry_delay: float = 0.2,
        max_retry_delay: float = 5.0,
    ):
        self._store = store
        self._view = view
        self._clock = clock
        self._check_interval = check_interval
        self._max_staleness = max_staleness
        self._fail_mode = fail_mode
        self.horizon = horizon  # the longest a token lives: refresh + access TTL + leeway
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
        # key → when a load first found it unreadable (its user watermark; logged then)
        self._unreadable: dict[str, float] = {}
        self.unreadable_records = 0
        self.unreadable_messages = 0
        self._message_logged_at: float | None = None

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
                if isinstance(record, UnreadableMessage):
                    self._unreadable_message(record)
                    # SECURITY: it may have been a revocation: if the store's version says a
                    # message is missing, reload now instead of after the next interval.
                    self._suspect_gap = True
                    next_check = time.monotonic()
                elif record is not None:
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
        unreadable: dict[str, float] = {}
        async for batch in self._store.batches():
            self._view.apply_batch(batch)
            for spoiled in batch.unreadable:
                unreadable[spoiled.key] = self._fail_closed(spoiled)
        self._unreadable = unreadable  # keys no longer unreadable are forgotten (and re-logged)
        self._view.prune()
        self._base = version
        self._seen = {v for v in self._seen if v > version}
        self._suspect_gap = False
        self.loaded = True
        self.reloads += 1
        self.fresh_at = self._clock()

    def _fail_closed(self, record: UnreadableRecord) -> float:
        """Revoke what an unreadable record's key names; returns when it was first found."""
        now = self._clock()
        first = self._unreadable.get(record.key)
        if first is None:
            first = now
            self.unreadable_records += 1
            log.error(
                "revocation record %s cannot be read (%s): its %s is treated as revoked",
                record.key,
                record.problem,
                "user" if record.kind == "sub" else record.kind,
            )
        # A key that never expires keeps its id revoked for a token's whole life past every
        # load that still finds it (revocations in the view only ever end by expiring).
        lifetime = record.ttl if record.ttl is not None else self.horizon
        # A user's watermark: the instant it was first found, which is no earlier than any
        # watermark the record could have held, and stays put across reloads.
        self._view.apply_unreadable(record.kind, record.ident, at=first, until=now + lifetime)
        return first

    def _unreadable_message(self, message: UnreadableMessage) -> None:
        self.unreadable_messages += 1
        now = time.monotonic()
        if self._message_logged_at is None or now - self._message_logged_at >= 60:
            self._message_logged_at = now
            log.error(
                "unreadable message on the revocation channel (%d bytes; %d so far): "
                "checking the store's version now",
                message.size,
                self.unreadable_messages,
            )

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
