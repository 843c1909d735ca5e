"""Upstream pools: the targets a route forwards to, which of them are in rotation, and which
one a request goes to (round robin or least in flight).

A target leaves the rotation when connecting to it fails (refused, reset, TLS refused,
connect timeout), a new connection to it is dropped before any answer, or it stops answering
(read timeout before the response head): for
`backoff` seconds, doubled for each failure in a row up to `max_backoff`; then it is tried
again by one request at a time, and one success brings it back for good. With active health
checks (gateway.proxy.health_checks) a target whose last check failed is out too, until a
check passes. A route whose upstream is a URL is a pool of one that never leaves the
rotation: it answers as it always did (502 per refused request).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal

from yarl import URL

from gateway.config import ProxySettings, UpstreamSettings
from gateway.proxy.upstream import Endpoint, TlsClient
from gateway.proxy.upstream_tls import tls_client
from gateway.typedefs import Clock

IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
TargetState = Literal["up", "backing_off", "unhealthy"]


class Target:
    """One target of a pool: where it is, its requests in flight and its health."""

    __slots__ = (
        "authority",
        "base_path",
        "checks_failing",
        "down_until",
        "endpoint",
        "failures",
        "failures_in_a_row",
        "in_flight",
        "last_error",
        "url",
    )

    def __init__(self, url: str, tls: TlsClient | None):
        parsed = URL(url)
        self.url = url
        self.endpoint = Endpoint.of(parsed, tls)
        self.authority = parsed.raw_authority
        self.base_path = parsed.raw_path.rstrip("/")
        self.in_flight = 0
        self.failures = 0  # counted for metrics: every failed attempt
        self.failures_in_a_row = 0
        self.down_until = 0.0  # monotonic; out of rotation (passive) before it
        self.checks_failing = False  # the last active health check failed
        self.last_error: str | None = None

    def available(self, now: float) -> bool:
        if self.checks_failing:
            return False
        if not self.failures_in_a_row:
            return True
        # Past its back-off a failed target is tried by one request at a time until one
        # succeeds: a target that still stalls holds one request, not a share of the load.
        return self.down_until <= now and not self.in_flight

    def state(self, now: float) -> TargetState:
        if self.checks_failing:
            return "unhealthy"
        return "backing_off" if self.down_until > now else "up"


class UpstreamGroup:
    """A pool of targets and its policy: balancing, back-off, retries, concurrency cap."""

    def __init__(
        self,
        name: str,
        targets: Sequence[Target],
        *,
        balance: Literal["round_robin", "least_in_flight"] = "round_robin",
        max_in_flight: int | None = None,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        retry_deadline: float = 60.0,
        named: bool = True,
        clock: Clock = time.monotonic,
    ):
        self.name = name
        self.targets = tuple(targets)
        self.least_in_flight = balance == "least_in_flight"
        self.max_in_flight = max_in_flight
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retry_deadline = retry_deadline
        # A named pool fails over, retries and takes failing targets out; a URL route's pool
        # of one answers each request as it always did.
        self.named = named
        self.in_flight = 0
        self.health_interval: float | None = None  # set when active checks run
        self._clock = clock
        self._next = 0
        self._single = self.targets[0] if len(self.targets) == 1 else None

    def __str__(self) -> str:
        return self.name

    @property
    def first(self) -> Target:
        return self.targets[0]

    def choose(self, tried: Sequence[Target] = ()) -> Target | None:
        """The target for the next attempt, among those in rotation and not tried yet."""
        single = self._single
        if single is not None and not self.named:
            return None if tried else single
        now = self._clock()
        targets = self.targets
        count = len(targets)
        start = self._next
        self._next = (start + 1) % count
        best: Target | None = None
        for offset in range(count):
            target = targets[(start + offset) % count]
            if not target.available(now) or target in tried:
                continue
            if not self.least_in_flight:
                return target
            if best is None or target.in_flight < best.in_flight:
                best = target
        return best

    def failed(self, target: Target, reason: str, *, eject: bool) -> None:
        """An attempt on `target` failed; `eject`: it leaves the rotation for its back-off."""
        target.failures += 1
        target.last_error = reason
        if not eject or not self.named:
            return
        target.failures_in_a_row += 1
        backoff = min(self.max_backoff, self.backoff * 2 ** (target.failures_in_a_row - 1))
        target.down_until = self._clock() + backoff

    def succeeded(self, target: Target) -> None:
        """An answer came from `target`: its back-off starts over."""
        if target.failures_in_a_row:
            target.failures_in_a_row = 0
            target.down_until = 0.0

    def retry_after(self) -> int:
        """Seconds until the first target out of rotation may be tried again (at least 1)."""
        now = self._clock()
        waits = [t.down_until - now for t in self.targets if not t.checks_failing]
        if self.health_interval is not None:
            waits.append(self.health_interval)  # the next check may bring one back
        return max(1, math.ceil(min(waits, default=1.0)))

    def snapshot(self) -> dict[str, object]:
        """The pool's state for /readyz and the console."""
        now = self._clock()
        states = [t.state(now) for t in self.targets]
        return {
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "targets_up": states.count("up"),
            "targets": [
                {
                    "url": t.url,
                    "state": state,
                    "in_flight": t.in_flight,
                    "failures": t.failures,
                    "retry_in_seconds": round(max(0.0, t.down_until - now), 3)
                    if state == "backing_off"
                    else None,
                    "last_error": t.last_error,
                }
                for t, state in zip(self.targets, states, strict=True)
            ],
        }


def upstream_groups(
    upstreams: Mapping[str, UpstreamSettings],
    proxy: ProxySettings,
    *,
    clock: Clock = time.monotonic,
) -> dict[str, UpstreamGroup]:
    """A pool per named upstream; TLS files are read here (ConfigError when they cannot be)."""
    default_deadline = proxy.connect_timeout + 2 * proxy.read_timeout
    groups = {}
    for name, u in upstreams.items():
        tls = tls_client(u.tls, key=f"upstreams.{name}.tls") if u.tls is not None else None
        group = UpstreamGroup(
            name,
            [Target(url, tls) for url in u.targets],
            balance=u.balance,
            max_in_flight=u.max_in_flight,
            backoff=u.backoff,
            max_backoff=u.max_backoff,
            retry_deadline=u.retry_deadline or default_deadline,
            clock=clock,
        )
        if u.health is not None:
            group.health_interval = u.health.interval
        groups[name] = group
    return groups


def url_group(url: str) -> UpstreamGroup:
    """A route's URL upstream as a pool of one (no failover, no back-off)."""
    return UpstreamGroup(url, [Target(url, None)], named=False)


def pools_snapshot(groups: Iterable[UpstreamGroup]) -> dict[str, dict[str, object]]:
    return {g.name: g.snapshot() for g in groups}
