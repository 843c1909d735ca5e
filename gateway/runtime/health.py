"""Liveness and readiness probes, and the metrics scrape, on the public listener."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from aiohttp import web

from gateway.config import RevocationSettings
from gateway.edge.own_routes import own_routes
from gateway.errors import StoreUnavailable
from gateway.observability.metrics import Metrics
from gateway.proxy.upstream_group import UpstreamGroup, pools_snapshot
from gateway.store import RevocationStore
from gateway.tokens.provider_keys import KeyState
from gateway.tokens.providers import Provider
from gateway.tokens.revocation_sync import RevocationSync
from gateway.tokens.revocation_view import RevocationView


class Health:
    """GET /healthz, /readyz and /metrics."""

    def __init__(
        self,
        *,
        store: RevocationStore,
        sync: RevocationSync,
        view: RevocationView,
        settings: RevocationSettings,
        providers: Sequence[Provider],
        metrics: Metrics,
        upstreams: Mapping[str, UpstreamGroup] | None = None,
    ):
        self._store = store
        self._sync = sync
        self._view = view
        self._settings = settings
        self._providers = providers
        self._metrics = metrics
        self._upstreams = upstreams or {}

    def routes(self) -> list[web.RouteDef]:
        return own_routes(
            ("GET", "/healthz", self.healthz),
            ("GET", "/readyz", self.readyz),
            ("GET", "/metrics", self._metrics.handler),
        )

    async def healthz(self, _request: web.Request) -> web.Response:
        """GET /healthz: 200 while the process serves."""
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        """GET /readyz: 200 only when Redis answers and the revocation view is loaded; the
        identity providers' key state (every configured one: exchange, sign-in, routes) and the
        upstream pools' targets are reported alongside."""
        sync = self._sync
        try:
            redis_ok = await self._store.ping()
        except StoreUnavailable:
            redis_ok = False
        staleness = sync.staleness()
        settings = self._settings
        stale = staleness > settings.max_staleness
        ready = redis_ok and sync.loaded
        body: dict[str, object] = {
            "status": "ready" if ready else "unavailable",
            "redis": "ok" if redis_ok else "unreachable",
            "revocations_loaded": sync.loaded,
            "revocations": len(self._view),
            "revocation_staleness_seconds": None if math.isinf(staleness) else round(staleness, 3),
            "fail_mode": settings.fail_mode,
        }
        if stale and settings.fail_mode == "open":
            body["warning"] = "serving WITHOUT current revocations (fail mode open)"
        if self._providers:  # reported, never a reason to be unready
            body["identity_providers"] = {
                p.name: _key_state(p.keys.state()) for p in self._providers
            }
        if self._upstreams:  # reported, never a reason to be unready (the backends' own)
            body["upstreams"] = pools_snapshot(self._upstreams.values())
        if ready:
            return web.json_response(body)
        return web.json_response(body, status=503, headers={"Retry-After": "1"})


def _key_state(state: KeyState) -> dict[str, object]:
    return {
        "keys": state.status,
        "key_count": state.keys,
        "age_seconds": None if state.age is None else round(state.age, 3),
        "last_error": state.last_error,
    }
