"""The console's status panel: the revocation view, Redis, the upstream pools' targets, and
what the gateway's own counters say about refreshes and logins over the last minutes."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from gateway.config import RevocationSettings
from gateway.errors import StoreUnavailable
from gateway.observability.counter_history import WINDOWS, CounterHistory, Increase
from gateway.proxy.upstream_group import UpstreamGroup
from gateway.store import RevocationStore
from gateway.tokens.revocation_sync import RevocationSync
from gateway.tokens.revocation_view import RevocationView

FAMILIES: Final = (
    "gateway_refresh",
    "gateway_logins",
    "gateway_auth_rejections",
    "gateway_redis_errors",
    "gateway_fail_closed_refusals",
)
# Refresh outcomes always listed (others appear once counted); reuse is what to watch.
REFRESH_OUTCOMES: Final = ("rotated", "grace_replay", "reuse_detected", "expired", "unknown")
LOGIN_OUTCOMES: Final = ("success", "bad_credentials", "rate_limited")


@dataclass(frozen=True, slots=True)
class CounterRow:
    name: str
    counts: tuple[int, ...]  # one per window
    alert: bool = False


@dataclass(frozen=True, slots=True)
class Status:
    revocations: int
    loaded: bool
    following: bool
    staleness: float | None  # seconds; None before the first load
    max_staleness: float
    stale: bool
    refusing: bool
    fail_mode: str
    redis_reachable: bool
    windows: tuple[str, ...]
    covered: tuple[str, ...]  # what each window really covers (less right after start)
    refresh: tuple[CounterRow, ...]
    logins: tuple[CounterRow, ...]
    other: tuple[CounterRow, ...]
    pid: int
    uptime: float
    upstreams: tuple[PoolRow, ...] = ()


@dataclass(frozen=True, slots=True)
class TargetRow:
    url: str
    state: str  # up, backing_off, unhealthy
    in_flight: int
    failures: int
    retry_in: float | None  # seconds until a target backing off is tried again
    last_error: str | None


@dataclass(frozen=True, slots=True)
class PoolRow:
    name: str
    in_flight: int
    max_in_flight: int | None
    targets: tuple[TargetRow, ...]

    @property
    def up(self) -> int:
        return sum(t.state == "up" for t in self.targets)


class StatusPanel:
    def __init__(
        self,
        *,
        view: RevocationView,
        sync: RevocationSync,
        store: RevocationStore,
        history: CounterHistory,
        settings: RevocationSettings,
        started: float | None = None,
        upstreams: Mapping[str, UpstreamGroup] | None = None,
    ):
        self._view = view
        self._sync = sync
        self._store = store
        self._history = history
        self._settings = settings
        self._upstreams = upstreams or {}
        self._started = started if started is not None else time.monotonic()

    async def read(self) -> Status:
        try:
            reachable = await self._store.ping()
        except StoreUnavailable:
            reachable = False
        staleness = self._sync.staleness()
        increases = [self._history.increase(w) for w in WINDOWS]
        stale = staleness > self._settings.max_staleness
        return Status(
            revocations=len(self._view),
            loaded=self._sync.loaded,
            following=self._sync.connected,
            staleness=None if math.isinf(staleness) else staleness,
            max_staleness=self._settings.max_staleness,
            stale=stale,
            refusing=self._view.refusing,
            fail_mode=self._settings.fail_mode,
            redis_reachable=reachable,
            windows=tuple(_window_name(w) for w in WINDOWS),
            covered=tuple(_window_name(i.seconds) for i in increases),
            refresh=_rows(increases, "gateway_refresh_total", "outcome", REFRESH_OUTCOMES),
            logins=_login_rows(increases),
            other=_other_rows(increases),
            pid=os.getpid(),
            uptime=time.monotonic() - self._started,
            upstreams=tuple(_pool_row(g) for g in self._upstreams.values()),
        )


def _pool_row(group: UpstreamGroup) -> PoolRow:
    now = time.monotonic()
    return PoolRow(
        name=group.name,
        in_flight=group.in_flight,
        max_in_flight=group.max_in_flight,
        targets=tuple(
            TargetRow(
                url=t.url,
                state=t.state(now),
                in_flight=t.in_flight,
                failures=t.failures,
                retry_in=max(0.0, t.down_until - now) if t.state(now) == "backing_off" else None,
                last_error=t.last_error,
            )
            for t in group.targets
        ),
    )


def _window_name(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes >= 1 else f"{seconds:.0f} s"


def _rows(
    increases: list[Increase], sample: str, label: str, always: tuple[str, ...]
) -> tuple[CounterRow, ...]:
    per_window = [i.by_label(sample, label) for i in increases]
    names = list(always) + sorted({n for w in per_window for n in w} - set(always))
    return tuple(
        CounterRow(
            name,
            tuple(int(w.get(name, 0)) for w in per_window),
            alert=name == "reuse_detected" and any(w.get(name, 0) for w in per_window),
        )
        for name in names
    )


def _login_rows(increases: list[Increase]) -> tuple[CounterRow, ...]:
    rows = _rows(increases, "gateway_logins_total", "outcome", LOGIN_OUTCOMES)
    failed = tuple(
        sum(row.counts[i] for row in rows if row.name != "success") for i in range(len(increases))
    )
    return (*rows, CounterRow("all failures", failed, alert=any(failed)))


def _other_rows(increases: list[Increase]) -> tuple[CounterRow, ...]:
    def total(sample: str) -> tuple[int, ...]:
        return tuple(int(sum(i.by_label(sample, "").values())) for i in increases)

    rejections = total("gateway_auth_rejections_total")
    redis = total("gateway_redis_errors_total")
    refused = total("gateway_fail_closed_refusals_total")
    return (
        CounterRow("bearer tokens refused", rejections),
        CounterRow("requests failed on Redis", redis, alert=any(redis)),
        CounterRow("refused while stale (fail closed)", refused, alert=any(refused)),
    )
