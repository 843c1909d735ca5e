"""Revocation everywhere: two gateway instances on one real redis-server."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from gateway.app import create_app
from gateway.appkeys import SERVICES
from gateway.config import Settings
from gateway.store import connect_redis
from tests.support.admin_access import ADMIN, ADMIN_KEYS
from tests.support.gateway_client import GatewayClient, GatewayPairFactory, login, wait_for_status
from tests.support.jwt_tokens import bearer, mint
from tests.support.recording_upstream import Upstream
from tests.support.redis_servers import RedisServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.redis


@pytest.fixture
def cluster_settings(
    settings_factory: Callable[..., Settings], users_file: Path, redis_server: RedisServer
) -> Settings:
    return settings_factory(
        redis={"url": redis_server.url, "connect_timeout": 0.5, "socket_timeout": 0.5},
        auth={"users_file": str(users_file)},
        admin=ADMIN_KEYS,
        revocation={"check_interval": 0.2, "max_staleness": 2, "fail_mode": "closed"},
    )


# (A public, A admin, B public): two independent gateways sharing one Redis
Instances = tuple[GatewayClient, GatewayClient, GatewayClient]


@pytest.fixture
async def instances(
    gateway_pair_factory: GatewayPairFactory,
    aiohttp_client: AiohttpClient,
    cluster_settings: Settings,
) -> Instances:
    """(A public, A admin, B public): two independent gateways sharing one Redis."""
    a, a_admin = await gateway_pair_factory(cluster_settings)
    b = await aiohttp_client(create_app(cluster_settings))
    return a, a_admin, b


async def test_revoke_on_a_is_enforced_on_b(instances: Instances, upstream: Upstream) -> None:
    a, a_admin, b = instances
    body = await login(a)
    assert (await b.get("/api", headers=bearer(body["access_token"]))).status == 200
    resp = await a_admin.delete(f"/admin/sessions/{body['session_id']}", headers=ADMIN)
    assert resp.status == 200
    await wait_for_status(b, body["access_token"], 401)
    # and the refresh chain is dead on B too
    resp = await b.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 400


async def test_user_revocation_reaches_b(instances: Instances, key_files: dict[str, Path]) -> None:
    _, a_admin, b = instances
    # issued a few seconds before the revoke-all (the watermark has whole-second precision)
    token = mint(key_files, sub="carol", iat=int(time.time()) - 3)
    assert (await b.get("/api", headers=bearer(token))).status == 200
    resp = await a_admin.post("/admin/users/carol/revoke", headers=ADMIN)
    assert resp.status == 200
    await wait_for_status(b, token, 401)


@pytest.mark.slow
async def test_cli_revocation_reaches_running_instances(
    instances: Instances, cluster_settings: Settings, key_files: dict[str, Path], tmp_path: Path
) -> None:
    a, _, b = instances
    token = mint(key_files)
    assert (await a.get("/api", headers=bearer(token))).status == 200
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(cluster_settings.model_dump(mode="json")))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "revoke",
        "token",
        "--config",
        str(config),
        "--token",
        token,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"revoked token" in out
    await wait_for_status(a, token, 401)
    await wait_for_status(b, token, 401)
    assert token.encode() not in out + err


async def test_lost_pubsub_message_is_caught_by_the_version_check(
    instances: Instances, redis_server: RedisServer, key_files: dict[str, Path]
) -> None:
    _, _, b = instances
    token = mint(key_files, jti="lost-message-jti")
    assert (await b.get("/api", headers=bearer(token))).status == 200
    # Write a revocation the way the store does, but publish nothing: the message is "lost".
    raw = connect_redis(redis_server.url, connect_timeout=1, socket_timeout=1, max_connections=2)
    await raw.set("gw:rev:jti:lost-message-jti", repr(time.time() + 600), ex=600)
    await raw.incr("gw:revocations:version")
    await raw.aclose()
    await wait_for_status(b, token, 401)


async def test_redis_restart_then_revocation_made_meanwhile_is_enforced(
    instances: Instances,
    redis_server: RedisServer,
    key_files: dict[str, Path],
    cluster_settings: Settings,
) -> None:
    _, a_admin, b = instances
    token = mint(key_files, jti="during-outage")
    assert (await b.get("/api", headers=bearer(token))).status == 200
    redis_server.stop()
    resp = await b.get("/readyz")
    assert resp.status == 503
    redis_server.start()

    async def revoked() -> bool:
        resp = await a_admin.post(
            "/admin/revoke/token",
            json={"jti": "during-outage", "exp": time.time() + 600},
            headers=ADMIN,
        )
        assert resp.status in (200, 503), await resp.text()  # 503 until A has reconnected
        return resp.status == 200

    # Right after the restart, before B has necessarily re-subscribed:
    await eventually(revoked, what="A accepts the revocation")
    await wait_for_status(b, token, 401)
    resp = await b.get("/readyz")
    assert resp.status == 200


@pytest.mark.slow
async def test_fail_closed_when_stale(
    instances: Instances, redis_server: RedisServer, key_files: dict[str, Path], upstream: Upstream
) -> None:
    _, _, b = instances
    token = mint(key_files)
    assert (await b.get("/api", headers=bearer(token))).status == 200
    redis_server.stop()
    await wait_for_status(b, token, 503)  # past max_staleness (2 s): fail mode closed
    resp = await b.get("/api", headers=bearer(token))
    assert (await resp.json())["error"] == "temporarily_unavailable"
    assert (await b.get("/public/x")).status == 200  # public routes keep working
    count = len(upstream.received)
    redis_server.start()
    await wait_for_status(b, token, 200)
    assert len(upstream.received) == count + 1


@pytest.mark.slow
async def test_fail_open_keeps_serving_and_says_so(
    aiohttp_client: AiohttpClient,
    cluster_settings: Settings,
    redis_server: RedisServer,
    key_files: dict[str, Path],
) -> None:
    settings = cluster_settings.model_copy(
        update={"revocation": cluster_settings.revocation.model_copy(update={"fail_mode": "open"})}
    )
    b = await aiohttp_client(create_app(settings))
    token = mint(key_files)
    redis_server.stop()
    sync = b.app[SERVICES].resources.sync
    await eventually(lambda: sync.staleness() > 2, what="the revocation view is stale")
    resp = await b.get("/api", headers=bearer(token))
    assert resp.status == 200
    resp = await b.get("/readyz")
    assert resp.status == 503
    assert "WITHOUT current revocations" in (await resp.json())["warning"]


async def test_background_tasks_end_even_when_a_library_swallows_the_cancellation() -> None:
    from gateway.runtime.lifetimes import background

    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed == 0:  # what a timeout racing the cancel does inside redis-py
                    swallowed += 1
                    continue
                raise

    async with background(stubborn()):
        await asyncio.sleep(0)
    assert swallowed == 1  # cancelled again, and this time it ended
