"""Liveness and readiness probes."""

from __future__ import annotations

import math

from aiohttp import web

from gateway.appkeys import FEDERATION, REVOCATION_STORE, REVOCATION_SYNC, REVOCATIONS, SETTINGS
from gateway.authserver.federation.jwks import KeyState
from gateway.errors import StoreUnavailable


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: 200 while the process serves."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: 200 only when Redis answers and the revocation view is loaded; the
    identity providers' key state is reported alongside."""
    sync = request.app[REVOCATION_SYNC]
    try:
        redis_ok = await request.app[REVOCATION_STORE].ping()
    except StoreUnavailable:
        redis_ok = False
    staleness = sync.staleness()
    settings = request.app[SETTINGS].revocation
    stale = staleness > settings.max_staleness
    ready = redis_ok and sync.loaded
    body: dict[str, object] = {
        "status": "ready" if ready else "unavailable",
        "redis": "ok" if redis_ok else "unreachable",
        "revocations_loaded": sync.loaded,
        "revocations": len(request.app[REVOCATIONS]),
        "revocation_staleness_seconds": None if math.isinf(staleness) else round(staleness, 3),
        "fail_mode": settings.fail_mode,
    }
    if stale and settings.fail_mode == "open":
        body["warning"] = "serving WITHOUT current revocations (fail mode open)"
    federation = request.app.get(FEDERATION)
    if federation is not None:  # reported, never a reason to be unready: logins still work
        body["identity_providers"] = {
            p.name: _key_state(p.keys.state()) for p in federation.providers
        }
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
