"""Rate limits on proxied traffic (`routes[].limits`): token buckets per key value, checked
after the route's policy admitted the request and before anything reaches the upstream.

`RouteLimiter` lives as long as the process (gateway.services' Resources): its bucket
tables survive a configuration reload as long as a limit keeps its route and settings. In
`rate_limiting.mode: shared` its `run()` task syncs the tables with Redis in batches
(gateway.store.shared_buckets); while Redis is out of reach every worker counts alone again,
with the whole rate, and never refuses a request for want of Redis.

Over a limit: 429 rate_limited with Retry-After and the IETF draft's RateLimit-Policy and
RateLimit fields (draft-ietf-httpapi-ratelimit-headers: `"<name>";q=<quota>;w=<window>` and
`"<name>";r=<remaining>;t=<reset>`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gateway.config import RateLimitingSettings, RouteLimitSettings, RouteSettings
from gateway.edge.request_view import RequestView
from gateway.errors import RateLimited, StoreUnavailable
from gateway.observability.metrics import Metrics
from gateway.proxy.headers import ProxyTrust
from gateway.proxy.token_buckets import TOKENS, BucketShape, BucketTable
from gateway.store.shared_buckets import SharedBuckets, Usage, limit_id
from gateway.typedefs import Clock

if TYPE_CHECKING:
    from gateway.tokens.verifier import Principal

log = logging.getLogger("gateway.proxy")

STALE_SYNCS: Final = 4  # a worker silent for this many sync intervals no longer shares a key
_SCALARS: Final = (str, int, float)


@dataclass(frozen=True, slots=True)
class Limit:
    """One configured limit of a route, bound to its bucket table."""

    name: str  # the RateLimit-Policy name: the key, numbered when a route repeats it
    kind: str  # sub, client_id, session, ip, claim
    claim: str | None  # for claim:<name>
    table: BucketTable
    policy_field: str  # its RateLimit-Policy item


class RouteLimits:
    """A route's limits: every one must have a token, or none is taken and the answer is 429."""

    def __init__(self, route: str, limits: Sequence[Limit], limiter: RouteLimiter):
        self.route = route
        self.limits = tuple(limits)
        self._limiter = limiter
        self._policy = ", ".join(limit.policy_field for limit in self.limits)
        self._refused = {
            limit.kind: limiter.metrics.rate_limited.labels(route, limit.kind)
            for limit in self.limits
        }

    def take(self, principal: Principal | None, request: RequestView) -> None:
        """Count the request against every limit; raises RateLimited (nothing counted) when
        one of them has no token left."""
        now = self._limiter.clock()
        buckets = []
        refused: list[tuple[Limit, list[float]]] = []
        for limit in self.limits:
            key = self._limiter.key(limit, principal, request)
            bucket = limit.table.refill(key, now)
            if bucket[TOKENS] < 1.0:
                refused.append((limit, bucket))
            buckets.append((limit, key, bucket))
        if refused:
            raise self._refusal(refused, buckets)
        for limit, key, bucket in buckets:
            limit.table.consume(key, bucket)

    def _refusal(
        self,
        refused: list[tuple[Limit, list[float]]],
        buckets: list[tuple[Limit, str, list[float]]],
    ) -> RateLimited:
        wait = max(limit.table.wait(bucket) for limit, bucket in refused)
        for limit, _ in refused:
            self._refused[limit.kind].inc()
        states = ", ".join(
            f'"{limit.name}";r={max(0, math.floor(bucket[TOKENS]))};'
            f"t={math.ceil(limit.table.until_full(bucket))}"
            for limit, _, bucket in buckets
        )
        return RateLimited(
            f"rate limit of route {self.route} exceeded ({refused[0][0].name})",
            retry_after=max(1, math.ceil(wait)),
            headers={"RateLimit-Policy": self._policy, "RateLimit": states},
        )


class RouteLimiter:
    """Every route's bucket tables in this worker, and in shared mode their sync with Redis."""

    def __init__(
        self,
        settings: RateLimitingSettings,
        *,
        metrics: Metrics,
        clock: Clock,
        shared: SharedBuckets | None = None,
    ):
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self._shared_store = shared if settings.mode == "shared" else None
        self._tables: dict[str, tuple[BucketTable, float]] = {}  # id → (table, lifetime s)
        self._trust = ProxyTrust(())
        self._worker = os.urandom(8).hex()  # each worker is one sharer in Redis
        self._workers = 1
        self._fallback = False
        self.syncs = 0

    # -- building (configure) --------------------------------------------------------------

    def trust(self, trust: ProxyTrust) -> None:
        """Whose X-Forwarded-For names the client (`ip` keys): the configuration's proxies."""
        self._trust = trust

    def for_route(self, route: RouteSettings) -> RouteLimits | None:
        """The route's limits, their tables kept from an earlier configuration when the
        route and the limit's settings are the same."""
        if not route.limits:
            return None
        limits = []
        names: dict[str, int] = {}
        for settings in route.limits:
            count = names[settings.key] = names.get(settings.key, 0) + 1
            name = settings.key if count == 1 else f"{settings.key}#{count}"
            limits.append(self._limit(route.route_name, name, settings))
        return RouteLimits(route.route_name, limits, self)

    def _limit(self, route: str, name: str, settings: RouteLimitSettings) -> Limit:
        shape = BucketShape(rate=settings.rate / settings.per, size=float(settings.size))
        ident = limit_id(route, name, settings.key, shape.rate, shape.size)
        known = self._tables.get(ident)
        if known is None:
            table = BucketTable(shape, max_keys=self.settings.max_keys)
            table.shared = self._shared_store is not None and not self._fallback
            table.workers = self._workers
            self._tables[ident] = (table, settings.refill_seconds())
        else:
            table = known[0]
        kind, _, claim = settings.key.partition(":")
        field = f'"{name}";q={settings.size};w={shape.window()}'
        return Limit(name, kind, claim or None, table, field)

    # -- the request path ------------------------------------------------------------------

    def key(self, limit: Limit, principal: Principal | None, request: RequestView) -> str:
        """The value a limit counts this request under; the client's address when the
        request has none (anonymous, or no such claim)."""
        kind = limit.kind
        if principal is not None:
            if kind == "sub":
                return principal.sub
            if kind == "session":
                return principal.sid
            if kind != "ip":
                value: Any = principal.claims.get(
                    "client_id" if kind == "client_id" else limit.claim or ""
                )
                if isinstance(value, _SCALARS) and not isinstance(value, bool):
                    return str(value)
        address = self._trust.client(request.remote, request.headers)
        return address if kind == "ip" else "\x00ip " + address  # never a user's own value

    # -- shared mode -----------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """Whether the buckets are shared through Redis now (not fallen back to local)."""
        return self._shared_store is not None and not self._fallback

    async def run(self) -> None:
        """Shared mode: sync every sync_interval; local mode: keep the tables in bounds."""
        interval = self.settings.sync_interval
        while True:
            await asyncio.sleep(interval)
            if self._shared_store is not None:
                await self.sync()
            else:
                now = self.clock()
                for table, _ in self._tables.values():
                    if len(table.buckets) > table.max_keys:
                        table.evict(now)

    async def sync(self) -> None:
        """One batch: what every table admitted since the last sync, to Redis and back."""
        store = self._shared_store
        if store is None:
            return
        batch: list[tuple[BucketTable, str]] = []
        usage: list[Usage] = []
        for ident, (table, lifetime) in self._tables.items():
            shape = table.shape
            for report in table.reports(STALE_SYNCS - 1):
                batch.append((table, report.key))
                usage.append(
                    Usage(
                        ident,
                        report.key,
                        report.give,
                        report.wants,
                        shape.rate,
                        shape.size,
                        lifetime,
                    )
                )
        stale = self.settings.sync_interval * STALE_SYNCS
        try:
            workers, states = await store.sync(
                self._worker, usage, stale=stale, workers=self._workers
            )
        except StoreUnavailable:
            self.metrics.rate_limit_syncs.labels("failed").inc()
            if not self._fallback:
                log.warning("rate limits: Redis unavailable, each worker counts alone for now")
                self._fallback = True
                for table, _ in self._tables.values():
                    table.go_local()
            return
        self.syncs += 1
        self.metrics.rate_limit_syncs.labels("ok").inc()
        if self._fallback:
            log.info("rate limits: shared through Redis again")
            self._fallback = False
        self._workers = workers
        now = self.clock()
        for table, _ in self._tables.values():
            table.shared = True
            table.workers = workers
        for (table, key), state in zip(batch, states, strict=True):
            table.apply_share(key, state.share, state.workers, now)
