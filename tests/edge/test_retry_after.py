"""Every 503 the gateway answers says when to come back: Retry-After, with the JSON error body."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from gateway import errors
from gateway.appkeys import SERVICES
from gateway.config import Settings
from tests.support.clock import FakeClock
from tests.support.gateway_client import GatewayFactory, login
from tests.support.jwt_tokens import bearer

UNAVAILABLE = {
    "error": "temporarily_unavailable",
    "error_description": "the token store is temporarily unavailable",
}


def service_faults(cls: type[errors.GatewayError]) -> list[type[errors.GatewayError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(service_faults(sub))
    return found


@pytest.mark.parametrize("kind", service_faults(errors.ServiceFault), ids=lambda k: k.__name__)
def test_every_503_error_carries_retry_after(kind: type[errors.GatewayError]) -> None:
    error = kind()
    if error.status == 503:
        assert int(error.headers()["Retry-After"]) >= 1
    else:  # 502 and 504 describe the upstream, not when the gateway will be back
        assert "Retry-After" not in error.headers()


async def _store_down(
    gateway_factory: GatewayFactory, auth_settings: Settings, clock: FakeClock
) -> tuple[Any, fakeredis.FakeServer, dict[str, Any]]:
    server = fakeredis.FakeServer()
    client = await gateway_factory(
        auth_settings, redis=fakeredis.FakeAsyncRedis(server=server), clock=clock
    )
    body = await login(client)
    server.connected = False
    return client, server, body


async def test_redis_down_login_refresh_logout_are_503_with_retry_after(
    gateway_factory: GatewayFactory, auth_settings: Settings, clock: FakeClock
) -> None:
    client, _, body = await _store_down(gateway_factory, auth_settings, clock)
    attempts = [
        ("/auth/login", {"username": "bob", "password": "builder"}, {}),
        ("/auth/refresh", {"refresh_token": body["refresh_token"]}, {}),
        ("/auth/logout", {}, bearer(body["access_token"])),
    ]
    for path, payload, headers in attempts:
        resp = await client.post(path, json=payload, headers=headers)
        assert resp.status == 503, path
        assert resp.headers["Retry-After"] == "1", path
        assert await resp.json() == UNAVAILABLE, path


async def test_readyz_503_carries_retry_after(
    gateway_factory: GatewayFactory, auth_settings: Settings, clock: FakeClock
) -> None:
    client, _, _ = await _store_down(gateway_factory, auth_settings, clock)
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"


async def test_fail_closed_503_carries_retry_after(
    gateway_factory: GatewayFactory, auth_settings: Settings, clock: FakeClock
) -> None:
    client, _, body = await _store_down(gateway_factory, auth_settings, clock)
    client.app[SERVICES].resources.view.refusing = True  # what the watchdog sets past max_staleness
    resp = await client.get("/api", headers=bearer(body["access_token"]))
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"] == "temporarily_unavailable"
