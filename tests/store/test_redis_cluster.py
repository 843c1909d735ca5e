"""Redis Cluster: every atomic operation stays in one slot; the gateway runs on three masters."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient
from redis.crc import key_slot

from gateway.app import create_app
from gateway.config import Settings
from gateway.store.keyspace import KeySpace, new_sid
from tests.support.admin_access import ADMIN, ADMIN_KEYS
from tests.support.gateway_client import GatewayPairFactory, login, wait_for_status
from tests.support.jwt_tokens import bearer, mint
from tests.support.redis_topology import ClusterSet


@pytest.mark.parametrize("sub", ["alice", "bob@example.com", "ü-user", "x" * 200])
def test_each_atomic_operation_keys_share_one_slot(sub: str) -> None:
    keys = KeySpace("gw")
    sid = new_sid(sub)
    # create/rotate/delete session scripts, and the per-user purge script
    touched = [keys.session(sid), keys.spent(sid), keys.user_sessions(sub), keys.user_devices(sub)]
    # keys a script builds from its prefix argument (other sessions of the same user)
    touched.append(keys.session_prefix(sub) + "session:" + new_sid(sub))
    assert len({key_slot(k.encode()) for k in touched}) == 1
    assert keys.session_prefix_of_sid(sid) == keys.session_prefix(sub)


def test_users_spread_over_slots() -> None:
    keys = KeySpace("gw")
    slots = {key_slot(keys.user_sessions(f"user-{n}").encode()) for n in range(200)}
    assert len(slots) > 150  # hash tags per user, not one hot slot for everyone


@pytest.mark.redis
@pytest.mark.slow
async def test_gateway_on_a_three_master_cluster(
    aiohttp_client: AiohttpClient,
    gateway_pair_factory: GatewayPairFactory,
    settings_factory: Callable[..., Settings],
    users_file: Path,
    redis_cluster: ClusterSet,
    key_files: dict[str, Path],
) -> None:
    settings = settings_factory(
        redis={"url": redis_cluster.url},
        auth={"users_file": str(users_file)},
        admin=ADMIN_KEYS,
        revocation={"check_interval": 0.2, "max_staleness": 5},
    )
    a, a_admin = await gateway_pair_factory(settings)
    b = await aiohttp_client(create_app(settings))
    assert (await a.get("/readyz")).status == 200

    body = await login(a, device_id="laptop")
    resp = await b.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 200
    rotated = await resp.json()
    # the spent token replayed after the grace window would revoke; inside it, no logout
    assert (await b.get("/api", headers=bearer(rotated["access_token"]))).status == 200
    listed = await (await a.get("/auth/sessions", headers=bearer(rotated["access_token"]))).json()
    assert [s["sid"] for s in listed["sessions"]] == [body["session_id"]]

    # revocations written on A reach B through cluster pub/sub
    resp = await a_admin.delete(f"/admin/sessions/{body['session_id']}", headers=ADMIN)
    assert resp.status == 200
    await wait_for_status(b, rotated["access_token"], 401)
    token = mint(key_files, sub="carol", iat=int(time.time()) - 3)
    assert (await b.get("/api", headers=bearer(token))).status == 200
    assert (await a_admin.post("/admin/users/carol/revoke", headers=ADMIN)).status == 200
    await wait_for_status(b, token, 401)

    # a fresh instance loads the revocations from every master (SCAN on each node)
    c = await aiohttp_client(create_app(settings))
    assert (await c.get("/api", headers=bearer(token))).status == 401
    assert (await c.get("/api", headers=bearer(rotated["access_token"]))).status == 401
