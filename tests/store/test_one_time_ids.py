"""One-time ids (replay guards): the first claim wins until the token's expiry, on fakeredis
and on a real redis-server; an unreachable store is a 503, never a second use."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from gateway.errors import StoreUnavailable
from gateway.store import OneTimeIds
from gateway.store.keyspace import KeySpace
from tests.support.clock import FakeClock
from tests.support.redis_servers import RedisServer


@pytest.fixture(params=["fakeredis", pytest.param("redis-server", marks=pytest.mark.redis)])
def redis(request: pytest.FixtureRequest) -> Any:
    if request.param == "fakeredis":
        return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    import redis.asyncio

    server: RedisServer = request.getfixturevalue("redis_server")
    return redis.asyncio.Redis.from_url(server.url)


async def test_the_first_claim_wins_and_every_replay_is_refused(redis: Any) -> None:
    clock = FakeClock()
    ids = OneTimeIds(redis, clock=clock)
    until = clock() + 120
    assert await ids.claim("assertion", "jti-1", until=until) is True
    assert await ids.claim("assertion", "jti-1", until=until) is False
    assert await ids.claim("assertion", "jti-1", until=until + 600) is False
    # the same id in another scope, and another id, are claims of their own
    assert await ids.claim("logout", "jti-1", until=until) is True
    assert await ids.claim("assertion", "jti-2", until=until) is True
    await redis.aclose()


async def test_a_claim_lasts_until_the_token_expires_never_less_than_a_second(redis: Any) -> None:
    clock = FakeClock()
    ids = OneTimeIds(redis, clock=clock)
    keys = KeySpace()
    await ids.claim("assertion", "long", until=clock() + 300)
    await ids.claim("assertion", "expired", until=clock() - 50)  # already past: kept 1 s
    assert 290 <= await redis.ttl(keys.one_time("assertion", "long")) <= 300
    assert await redis.ttl(keys.one_time("assertion", "expired")) == 1
    # the key never holds the client-chosen id itself
    assert all(b"long" not in key for key in await redis.keys("*"))
    await redis.aclose()


async def test_an_unreachable_store_is_unavailable_not_a_second_use() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    ids = OneTimeIds(fakeredis.FakeAsyncRedis(server=server), clock=FakeClock())
    with pytest.raises(StoreUnavailable):
        await ids.claim("assertion", "jti-1", until=FakeClock()() + 60)
