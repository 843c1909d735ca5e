"""A revocation record that cannot be read never un-revokes a token: the key's id is treated
as revoked (fail closed), counted and logged once, and everything else keeps being served."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from redis.asyncio import Redis

from gateway.appkeys import SERVICES
from gateway.config import Settings
from gateway.store import connect_redis
from tests.support.admin_access import ADMIN, ADMIN_KEYS
from tests.support.gateway_client import (
    GatewayClient,
    GatewayFactory,
    GatewayPairFactory,
    wait_for_status,
)
from tests.support.gateway_settings import on_redis
from tests.support.jwt_tokens import bearer, mint
from tests.support.redis_servers import RedisServer
from tests.support.waiting import eventually

# How a record can be unreadable: another Redis type, or a string that is no record.
Spoiler = Callable[[Redis, str], Awaitable[Any]]


async def as_hash(raw: Redis, key: str) -> None:
    await raw.hset(key, "until", repr(time.time() + 600))
    await raw.expire(key, 600)


async def as_list(raw: Redis, key: str) -> None:
    await raw.rpush(key, "garbage")


async def as_garbage(raw: Redis, key: str) -> None:
    await raw.set(key, b"\xff\x00not a record", ex=600)


async def as_infinity(raw: Redis, key: str) -> None:
    await raw.set(key, "inf", ex=600)


async def as_nan(raw: Redis, key: str) -> None:
    await raw.set(key, "nan")


SPOILERS = [as_hash, as_list, as_garbage, as_infinity, as_nan]


def sub_key(sub: str) -> str:
    return hashlib.sha256(sub.encode()).hexdigest()[:32]


@dataclass
class Store:
    """The Redis a test's gateway runs on, and a client of its own to spoil records with."""

    raw: Redis
    url: str | None = None  # a real redis-server's; None: fakeredis, shared through `server`
    server: fakeredis.FakeServer | None = None

    def app(self, settings: Settings, **revocation: Any) -> tuple[Settings, dict[str, Any]]:
        """Settings and create_app keywords for a gateway on this store."""
        if revocation:
            section = settings.revocation.model_copy(update=revocation)
            settings = settings.model_copy(update={"revocation": section})
        if self.url is not None:
            return on_redis(settings, self.url, connect_timeout=0.5, socket_timeout=0.5), {}
        return settings, {"redis": fakeredis.FakeAsyncRedis(server=self.server)}


@pytest.fixture(
    params=["fakeredis", pytest.param("redis-server", marks=[pytest.mark.redis, pytest.mark.slow])]
)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """fakeredis (unit), and a real redis-server (integration)."""
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()
        yield Store(fakeredis.FakeAsyncRedis(server=server), server=server)
        return
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    raw = connect_redis(redis_server.url, connect_timeout=1, socket_timeout=1, max_connections=4)
    yield Store(raw, url=redis_server.url)
    await raw.aclose()


async def start(
    factory: GatewayFactory, settings: Settings, store: Store, **revocation: Any
) -> GatewayClient:
    configured, kwargs = store.app(settings, **revocation)
    return await factory(configured, **kwargs)


def unreadable_count(gateway: GatewayClient) -> float:
    metrics = gateway.app[SERVICES].resources.metrics
    totals = metrics.counter_totals(["gateway_revocation_unreadable"])
    return sum(totals.values())


@pytest.mark.parametrize("spoil", SPOILERS, ids=lambda s: s.__name__)
async def test_unreadable_session_record_at_load_revokes_that_session_only(
    gateway_factory: GatewayFactory,
    settings: Settings,
    store: Store,
    key_files: dict[str, Path],
    spoil: Spoiler,
) -> None:
    await spoil(store.raw, "gw:rev:sid:spoiled-session")
    gateway = await start(gateway_factory, settings, store)
    spoiled = mint(key_files, sid="spoiled-session")
    resp = await gateway.get("/api", headers=bearer(spoiled))
    assert resp.status == 401
    assert "revoked" in resp.headers["WWW-Authenticate"]
    # everything else is served
    assert (await gateway.get("/api", headers=bearer(mint(key_files)))).status == 200
    assert (await gateway.get("/readyz")).status == 200
    assert unreadable_count(gateway) == 1


@pytest.mark.parametrize("spoil", SPOILERS, ids=lambda s: s.__name__)
async def test_unreadable_token_record_at_load_revokes_that_token(
    gateway_factory: GatewayFactory,
    settings: Settings,
    store: Store,
    key_files: dict[str, Path],
    spoil: Spoiler,
) -> None:
    await spoil(store.raw, "gw:rev:jti:spoiled-jti")
    gateway = await start(gateway_factory, settings, store)
    spoiled = mint(key_files, jti="spoiled-jti")
    assert (await gateway.get("/api", headers=bearer(spoiled))).status == 401
    assert (await gateway.get("/api", headers=bearer(mint(key_files)))).status == 200


@pytest.mark.parametrize("spoil", SPOILERS, ids=lambda s: s.__name__)
async def test_unreadable_user_record_revokes_the_users_earlier_tokens(
    gateway_factory: GatewayFactory,
    settings: Settings,
    store: Store,
    key_files: dict[str, Path],
    spoil: Spoiler,
) -> None:
    # the key names the user by a hash: the view matches tokens by the same hash
    await spoil(store.raw, f"gw:rev:sub:{sub_key('carol')}")
    gateway = await start(gateway_factory, settings, store)
    earlier = mint(key_files, sub="carol", iat=int(time.time()) - 5)
    assert (await gateway.get("/api", headers=bearer(earlier))).status == 401
    assert (await gateway.get("/api", headers=bearer(mint(key_files, sub="dave")))).status == 200
    # as after a revoke-all: tokens issued from then on work
    later = mint(key_files, sub="carol", iat=int(time.time()) + 2)
    assert (await gateway.get("/api", headers=bearer(later))).status == 200


async def test_user_record_under_another_users_key_is_unreadable(
    gateway_factory: GatewayFactory,
    settings: Settings,
    store: Store,
    key_files: dict[str, Path],
) -> None:
    # a well-formed record for dave stored under carol's key: carol's revocation is lost
    # unless the key counts as unreadable
    now = time.time()
    record = {"kind": "sub", "id": "dave", "until": now + 600, "at": now}
    await store.raw.set(f"gw:rev:sub:{sub_key('carol')}", json.dumps(record), ex=600)
    gateway = await start(gateway_factory, settings, store)
    carol = mint(key_files, sub="carol", iat=int(now) - 5)
    assert (await gateway.get("/api", headers=bearer(carol))).status == 401


async def test_unreadable_record_found_while_running_is_logged_once(
    gateway_factory: GatewayFactory,
    settings: Settings,
    store: Store,
    key_files: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = await start(gateway_factory, settings, store, check_interval=0.1)
    token = mint(key_files, sid="spoiled-later")
    assert (await gateway.get("/api", headers=bearer(token))).status == 200
    caplog.set_level(logging.WARNING, logger="gateway.revocation")
    await store.raw.hset("gw:rev:sid:spoiled-later", "until", "soon")
    await store.raw.expire("gw:rev:sid:spoiled-later", 600)
    sync = gateway.app[SERVICES].resources.sync
    # a revocation whose message was lost: the version check reloads, and reloads again
    for _ in range(3):
        reloads = sync.reloads
        await store.raw.incr("gw:revocations:version")
        await eventually(lambda: sync.reloads > reloads, what="a reload")  # noqa: B023
    await wait_for_status(gateway, token, 401)
    assert (await gateway.get("/api", headers=bearer(mint(key_files)))).status == 200
    lines = [r for r in caplog.records if "spoiled-later" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert unreadable_count(gateway) == 1


async def test_unreadable_message_makes_the_view_catch_up_at_once(
    gateway_factory: GatewayFactory,
    settings: Settings,
    store: Store,
    key_files: dict[str, Path],
) -> None:
    # The version check is far away: only the feed can tell the view that it missed a record.
    gateway = await start(gateway_factory, settings, store, check_interval=60)
    token = mint(key_files, jti="sent-unreadably")
    assert (await gateway.get("/api", headers=bearer(token))).status == 200
    await store.raw.set("gw:rev:jti:sent-unreadably", repr(time.time() + 600), ex=600)
    await store.raw.incr("gw:revocations:version")
    unreadable = b'{"kind":"jti","id":"sent-unreadably","until":"x"}'
    await store.raw.publish("gw:revocations", unreadable)
    await wait_for_status(gateway, token, 401, timeout=5)
    assert unreadable_count(gateway) == 1


async def test_revoking_a_user_whose_record_is_unreadable_rewrites_it(
    gateway_pair_factory: GatewayPairFactory,
    settings_factory: Callable[..., Settings],
    store: Store,
) -> None:
    await as_hash(store.raw, f"gw:rev:sub:{sub_key('erin')}")
    configured, kwargs = store.app(settings_factory(admin=ADMIN_KEYS))
    _, admin = await gateway_pair_factory(configured, **kwargs)
    resp = await admin.post("/admin/users/erin/revoke", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    assert await store.raw.type(f"gw:rev:sub:{sub_key('erin')}") == b"string"
