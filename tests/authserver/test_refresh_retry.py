"""A refresh whose answer was lost to a Redis fault can be retried with the same token: the
client gets the successor the rotation recorded (or a fresh rotation if there was none), and
reuse detection still ends a session whose spent token comes back after its successor was
handed out."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
from aiohttp import ClientResponse
from redis.asyncio import Redis

from gateway.config import Settings
from gateway.store import (
    RotateResult,
    SessionStore,
    connect_redis,
    new_refresh_token,
    refresh_token_hash,
)
from gateway.store.keyspace import KeySpace
from tests.support.clock import FakeClock
from tests.support.gateway_client import GatewayClient, GatewayFactory, login
from tests.support.gateway_settings import on_redis
from tests.support.redis_servers import RedisServer
from tests.support.stored_sessions import open_session, rotate_session
from tests.support.waiting import eventually

GRACE = 10.0


# ---- the store: pending successors, confirmation, reuse ----------------------------------


@pytest.fixture
def sessions(clock: FakeClock) -> SessionStore:
    return SessionStore(fakeredis.FakeAsyncRedis(), clock=clock)


async def rotate(
    store: SessionStore, sid: str, token: str, grace: float = GRACE
) -> tuple[RotateResult, str]:
    """One rotation attempt as the token service makes it, without confirming delivery."""
    return await rotate_session(store, sid, token, grace, delivered=False)


async def confirm(store: SessionStore, sid: str, successor: str, grace: float = GRACE) -> bool:
    return await store.confirm_delivery(
        sid=sid, successor_hash=refresh_token_hash(successor), grace=grace
    )


async def test_an_unconfirmed_successor_is_redelivered_however_late(
    sessions: SessionStore, clock: FakeClock
) -> None:
    sid, first = await open_session(sessions)
    rotated, second = await rotate(sessions, sid, first)  # its answer never reached the client
    assert rotated.outcome == "rotated" and rotated.pending
    clock.now += 3000  # long past the grace window
    again, successor = await rotate(sessions, sid, first)
    assert again.outcome == "redelivered" and again.pending
    assert successor == second  # the same successor: one chain
    assert again.session is not None and again.session.generation == 1
    assert await confirm(sessions, sid, second)  # handed out this time
    clock.now += GRACE + 1
    reuse, _ = await rotate(sessions, sid, first)
    assert reuse.outcome == "reuse"  # spent, and its successor was delivered
    assert await sessions.get(sid) is None


async def test_a_confirmed_successor_is_replayed_only_within_the_grace_window(
    sessions: SessionStore, clock: FakeClock
) -> None:
    sid, first = await open_session(sessions)
    _, second = await rotate(sessions, sid, first)
    clock.now += 5  # confirmation comes late: the window starts from it, not from the rotation
    assert await confirm(sessions, sid, second)
    clock.now += GRACE - 1
    replay, successor = await rotate(sessions, sid, first)
    assert replay.outcome == "grace" and not replay.pending
    assert successor == second
    assert not await confirm(sessions, sid, second)  # nothing pending: no second window
    clock.now += 2
    assert (await rotate(sessions, sid, first))[0].outcome == "reuse"


async def test_using_the_successor_ends_redelivery_of_the_spent_token(
    sessions: SessionStore, clock: FakeClock
) -> None:
    sid, first = await open_session(sessions)
    _, second = await rotate(sessions, sid, first)  # never confirmed
    rotated, third = await rotate(sessions, sid, second)  # the client had it after all
    assert rotated.outcome == "rotated"
    clock.now += GRACE + 1
    # the stolen first token, presented after its successor was used, ends the session
    assert (await rotate(sessions, sid, first))[0].outcome == "reuse"
    assert (await rotate(sessions, sid, third))[0].outcome == "unknown"


async def test_zero_grace_never_redelivers(sessions: SessionStore) -> None:
    sid, first = await open_session(sessions)
    rotated, _ = await rotate(sessions, sid, first, grace=0)
    assert not rotated.pending  # nothing to confirm: a spent token is reuse at once
    assert (await rotate(sessions, sid, first, grace=0))[0].outcome == "reuse"


async def test_confirming_touches_only_the_pending_successor(
    sessions: SessionStore, clock: FakeClock
) -> None:
    sid, first = await open_session(sessions)
    _, second = await rotate(sessions, sid, first)
    assert not await confirm(sessions, sid, new_refresh_token(sid))  # not its successor
    assert (await rotate(sessions, sid, first))[0].pending
    await sessions.delete(sid)
    assert not await confirm(sessions, sid, second)
    raw: Any = sessions._redis
    assert await raw.exists(KeySpace().session(sid)) == 0  # never recreated by a confirmation


async def test_concurrent_refreshes_confirm_one_window(
    sessions: SessionStore, clock: FakeClock
) -> None:
    sid, first = await open_session(sessions)
    results = await asyncio.gather(*(rotate(sessions, sid, first) for _ in range(20)))
    assert sorted(r.outcome for r, _ in results) == ["grace"] * 19 + ["rotated"]
    assert len({successor for _, successor in results}) == 1
    (successor,) = {successor for _, successor in results}
    confirmed = await asyncio.gather(*(confirm(sessions, sid, successor) for _ in range(20)))
    assert confirmed.count(True) == 1


# ---- through the gateway, on a real redis-server that stalls mid-rotation ----------------


@pytest.fixture
async def stalling(
    gateway_factory: GatewayFactory,
    auth_settings: Settings,
    redis_server: RedisServer,
    clock: FakeClock,
) -> AsyncIterator[tuple[GatewayClient, Redis]]:
    """The gateway on a real redis-server with short deadlines, and a raw client for checks."""
    settings = on_redis(auth_settings, redis_server.url, connect_timeout=0.3, socket_timeout=0.3)
    client = await gateway_factory(settings, clock=clock)
    raw = connect_redis(redis_server.url, connect_timeout=5, socket_timeout=5, max_connections=4)
    yield client, raw
    await raw.aclose()


async def generation(raw: Redis, sid: str) -> int:
    return int(await raw.hget(KeySpace().session(sid), "gen") or -1)


async def wait_for_generation(raw: Redis, sid: str, expected: int) -> None:
    """Until the session's rotation count is `expected` (a generous bound on a busy machine)."""

    async def reached() -> bool:
        return await generation(raw, sid) == expected

    await eventually(reached, 20, what=f"the session reaches generation {expected}")


async def refresh(client: GatewayClient, token: str) -> ClientResponse:
    return await client.post("/auth/refresh", json={"refresh_token": token})


@pytest.mark.redis
@pytest.mark.slow
async def test_refresh_retried_after_redis_froze_mid_rotation_gets_the_recorded_successor(
    stalling: tuple[GatewayClient, Redis], redis_server: RedisServer, clock: FakeClock
) -> None:
    client, raw = stalling
    body = await login(client)
    sid = body["session_id"]
    resp = await refresh(client, body["refresh_token"])  # the rotation script is loaded now
    assert resp.status == 200
    token = (await resp.json())["refresh_token"]
    assert await generation(raw, sid) == 1

    os.kill(redis_server.process.pid, signal.SIGSTOP)  # frozen: the rotation waits in its socket
    try:
        resp = await refresh(client, token)
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert (await resp.json())["error"] == "temporarily_unavailable"
    # Redis thawed and ran the rotation the gateway had given up on: the spent token's
    # successor exists, and nobody has seen it.
    await wait_for_generation(raw, sid, 2)

    clock.now += 120  # the client comes back long after the grace window
    resp = await refresh(client, token)
    assert resp.status == 200, await resp.text()
    retried = await resp.json()
    assert retried["session_id"] == sid
    assert await generation(raw, sid) == 2  # no second rotation: the recorded successor
    stored = await raw.hget(KeySpace().session(sid), "rt")
    assert isinstance(stored, bytes)
    assert stored.decode() == hashlib.sha256(retried["refresh_token"].encode()).hexdigest()

    resp = await refresh(client, retried["refresh_token"])  # the chain goes on
    assert resp.status == 200
    newest = (await resp.json())["refresh_token"]

    clock.now += 120  # the spent token, presented after its successor was used: reuse
    resp = await refresh(client, token)
    assert resp.status == 400
    assert "reuse" in (await resp.json())["error_description"]
    assert (await refresh(client, newest)).status == 400  # the session is over


@pytest.mark.redis
@pytest.mark.slow
async def test_refresh_retried_after_redis_paused_writes_rotates_normally(
    stalling: tuple[GatewayClient, Redis], clock: FakeClock
) -> None:
    client, raw = stalling
    body = await login(client)
    sid = body["session_id"]
    await raw.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
    try:
        resp = await refresh(client, body["refresh_token"])
    finally:
        await raw.execute_command("CLIENT", "UNPAUSE")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    # The paused client was dropped by the gateway's deadline: that rotation never ran.
    assert await generation(raw, sid) == 0

    clock.now += 120
    resp = await refresh(client, body["refresh_token"])
    assert resp.status == 200, await resp.text()
    assert await generation(raw, sid) == 1
    resp = await refresh(client, (await resp.json())["refresh_token"])
    assert resp.status == 200
