"""Store logic on fakeredis (Lua included): sessions, rotation, revocations, limits, audit."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import fakeredis
import pytest

from gateway.authserver.token_service import open_successor
from gateway.errors import StoreUnavailable
from gateway.store import (
    AuditLog,
    RateLimiter,
    RevocationStore,
    SessionStore,
    new_refresh_token,
    new_sid,
    parse_refresh_token,
    refresh_token_hash,
)
from gateway.store.keyspace import sub_key
from gateway.store.revocations import Revocation, UnreadableMessage, decode, encode
from tests.support.clock import FakeClock
from tests.support.stored_sessions import open_session, rotate_session


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def redis(server: fakeredis.FakeServer) -> Any:
    return fakeredis.FakeAsyncRedis(server=server)


@pytest.fixture
def sessions(redis: Any, clock: FakeClock) -> SessionStore:
    return SessionStore(redis, clock=clock)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "gwrt_",
        "garbage",
        "gwrt_0000-AAAA.x",
        "xxxx" + new_refresh_token(new_sid("a"))[4:],
        new_refresh_token(new_sid("a"))[:-1],
        "é" * 80,
        "a" * 10240,
        new_refresh_token(new_sid("a")).replace(".", "!"),
    ],
    # fixed ids: the random tokens would name the cases differently on every collection
    ids=[
        "empty",
        "prefix_only",
        "garbage",
        "short_parts",
        "wrong_prefix",
        "truncated",
        "non_ascii",
        "oversized",
        "bad_separator",
    ],
)
def test_malformed_refresh_tokens_parse_to_none(token: str) -> None:
    assert parse_refresh_token(token) is None


def test_refresh_token_format() -> None:
    sid = new_sid("alice")
    token = new_refresh_token(sid)
    assert token.startswith("gwrt_")
    assert parse_refresh_token(token) == sid
    assert len(token.rsplit(".", 1)[1]) == 43  # 32 random bytes = 256 bits


async def test_create_get_list(sessions: SessionStore) -> None:
    sid, _ = await open_session(sessions, device_id="laptop", roles=("user",))
    session = await sessions.get(sid)
    assert session is not None and session.sub == "alice" and session.roles == ("user",)
    assert [s.sid for s in await sessions.list_for_user("alice")] == [sid]
    assert await sessions.list_for_user("bob") == []


async def test_same_device_replaces_session(sessions: SessionStore) -> None:
    old, _ = await open_session(sessions, device_id="laptop")
    sid = new_sid("alice")
    result = await sessions.create(
        sub="alice", sid=sid, refresh_hash="h", lifetime=3600, device_id="laptop"
    )
    assert result.replaced_sid == old
    assert await sessions.get(old) is None
    assert [s.sid for s in await sessions.list_for_user("alice")] == [sid]


async def test_expired_index_entries_are_pruned(
    sessions: SessionStore, redis: Any, clock: FakeClock
) -> None:
    old, _ = await open_session(sessions)
    clock.now += 7200
    await open_session(sessions)
    (index,) = [k async for k in redis.scan_iter("*:sessions")]
    assert old.encode() not in await redis.zrange(index, 0, -1)


async def test_rotation_outcomes(sessions: SessionStore, clock: FakeClock) -> None:
    sid, first = await open_session(sessions)
    result, second = await rotate_session(sessions, sid, first)
    assert result.outcome == "rotated"
    assert result.session is not None and result.session.generation == 1
    replay, _ = await rotate_session(sessions, sid, first)
    assert replay.outcome == "grace" and replay.successor_box is not None
    assert open_successor(first, replay.successor_box, sid) == second
    # only the spent token opens it
    assert open_successor(second, replay.successor_box, sid) is None
    forged = "gwrt_" + sid + "." + "A" * 43
    assert (await rotate_session(sessions, sid, forged))[0].outcome == "unknown"
    assert await sessions.get(sid) is not None  # a forged token does not end the session
    clock.now += 11
    reuse, _ = await rotate_session(sessions, sid, first)
    assert reuse.outcome == "reuse"
    assert reuse.session is not None and reuse.session.sid == sid
    assert await sessions.get(sid) is None
    assert (await rotate_session(sessions, sid, second))[0].outcome == "unknown"


async def test_zero_grace_means_immediate_reuse(sessions: SessionStore) -> None:
    sid, first = await open_session(sessions)
    await rotate_session(sessions, sid, first, grace=0)
    assert (await rotate_session(sessions, sid, first, grace=0))[0].outcome == "reuse"


async def test_absolute_lifetime_is_never_extended(
    sessions: SessionStore, clock: FakeClock
) -> None:
    sid, token = await open_session(sessions)
    expires = (await sessions.get(sid)).expires_at  # type: ignore[union-attr]
    for _ in range(3):
        clock.now += 600
        result, token = await rotate_session(sessions, sid, token)
        assert result.session is not None and result.session.expires_at == expires
    clock.now = expires + 1
    assert (await rotate_session(sessions, sid, token))[0].outcome == "expired"


async def test_fifty_concurrent_rotations(sessions: SessionStore) -> None:
    sid, token = await open_session(sessions)
    results = await asyncio.gather(*(rotate_session(sessions, sid, token) for _ in range(50)))
    outcomes = [r.outcome for r, _ in results]
    assert outcomes.count("rotated") == 1 and outcomes.count("grace") == 49
    (winner,) = [successor for r, successor in results if r.outcome == "rotated"]
    replayed = {
        open_successor(token, r.successor_box or b"", sid)
        for r, _ in results
        if r.outcome == "grace"
    }
    assert replayed == {winner}  # one live chain
    assert (await sessions.get(sid)).generation == 1  # type: ignore[union-attr]


async def test_fifty_concurrent_rotations_without_grace(sessions: SessionStore) -> None:
    sid, token = await open_session(sessions)
    results = await asyncio.gather(
        *(rotate_session(sessions, sid, token, grace=0) for _ in range(50))
    )
    outcomes = [r.outcome for r, _ in results]
    assert outcomes.count("rotated") == 1
    assert set(outcomes) <= {"rotated", "reuse", "unknown"}
    assert await sessions.get(sid) is None


async def test_every_key_has_a_ttl_and_no_raw_token(
    sessions: SessionStore, redis: Any, clock: FakeClock
) -> None:
    sid, token = await open_session(sessions, device_id="d")
    _, second = await rotate_session(sessions, sid, token)
    revocations = RevocationStore(redis, clock=clock)
    await revocations.revoke_session(sid, until=clock.now + 60)
    await revocations.revoke_user("alice", at=clock.now, until=clock.now + 60)
    await revocations.revoke_jti("j", exp=clock.now + 60, leeway=30)
    await RateLimiter(redis, clock=clock).hit("s", "alice", limit=5, window=60)
    await AuditLog(redis, clock=clock).record(actor="a", action="b", target="c", source=None)
    async for key in redis.scan_iter("*"):
        assert await redis.ttl(key) > 0, key
        dump = await redis.dump(key)
        assert token.encode() not in dump and second.encode() not in dump


async def test_delete_and_delete_all(sessions: SessionStore) -> None:
    one, _ = await open_session(sessions, device_id="a")
    two, _ = await open_session(sessions, device_id="b")
    assert (await sessions.delete(one)).sid == one  # type: ignore[union-attr]
    assert await sessions.delete(one) is None
    assert await sessions.delete("not-a-sid") is None
    assert await sessions.delete_all_for_user("alice") == [two]
    assert await sessions.list_for_user("alice") == []


async def test_owner_matches_tokens_that_can_still_refresh(
    sessions: SessionStore, clock: FakeClock
) -> None:
    sid, first = await open_session(sessions)
    assert (await sessions.owner(sid, refresh_token_hash(first))) is not None
    _, second = await rotate_session(sessions, sid, first)
    assert await sessions.owner(sid, refresh_token_hash(second)) is not None
    # the spent token still fetches its successor within the grace window: it owns the session
    assert await sessions.owner(sid, refresh_token_hash(first)) is not None
    clock.now += 11
    assert await sessions.owner(sid, refresh_token_hash(first)) is None
    await rotate_session(sessions, sid, second, delivered=False)
    clock.now += 3600 - 12
    assert await sessions.owner(sid, refresh_token_hash(second)) is not None  # still pending
    assert await sessions.owner(sid, refresh_token_hash(first)) is None


async def test_revocation_records(redis: Any, clock: FakeClock) -> None:
    store = RevocationStore(redis, clock=clock)
    assert await store.revoke_jti("old", exp=clock.now - 100, leeway=30) is None  # no-op
    first = await store.revoke_user("alice", at=clock.now, until=clock.now + 100)
    again = await store.revoke_user("alice", at=clock.now - 50, until=clock.now + 100)
    assert again.at == first.at  # never moved back
    await store.revoke_session(new_sid("bob"), until=clock.now + 100)
    await store.revoke_jti("live", exp=clock.now + 100, leeway=30)
    records = await store.load_all()
    assert sorted(r.kind for r in records) == ["jti", "sid", "sub"]
    assert await store.version() == 4
    clock.now += 1000
    assert await store.load_all() == []  # past `until` everything is skipped


async def test_publish_and_listen(redis: Any, clock: FakeClock) -> None:
    store = RevocationStore(redis, clock=clock)
    async with store.subscription() as feed:
        await store.revoke_jti("x", exp=clock.now + 100, leeway=0)
        record = None
        for _ in range(50):
            record = await feed.get(timeout=0.05)
            if record is not None:
                break
        assert isinstance(record, Revocation) and record.id == "x" and record.version == 1


async def test_unreadable_message_is_reported_not_dropped(redis: Any, clock: FakeClock) -> None:
    store = RevocationStore(redis, clock=clock)
    async with store.subscription() as feed:
        await redis.publish("gw:revocations", b'{"kind":"sid","id":"x","until":"never"}')
        record = None
        for _ in range(50):
            record = await feed.get(timeout=0.05)
            if record is not None:
                break
        assert record == UnreadableMessage(39)


async def test_unreadable_records_are_reported_with_the_id_their_key_names(
    redis: Any, clock: FakeClock
) -> None:
    store = RevocationStore(redis, clock=clock)
    await store.revoke_jti("fine", exp=clock.now + 100, leeway=0)
    await redis.set("gw:rev:jti:garbage", b"\xffnot a number", ex=50)
    await redis.hset("gw:rev:sid:a-hash", "until", "1")
    await redis.set(f"gw:rev:sub:{sub_key('carol')}", b"{}")
    await redis.set("gw:rev:other:x", b"not ours")
    found = [batch async for batch in store.batches()]
    assert [r.id for b in found for r in b.records()] == ["fine"]
    unreadable = {(u.kind, u.ident): u for b in found for u in b.unreadable}
    assert set(unreadable) == {("jti", "garbage"), ("sid", "a-hash"), ("sub", sub_key("carol"))}
    assert unreadable["jti", "garbage"].ttl is not None
    assert 0 < unreadable["jti", "garbage"].ttl <= 50
    assert unreadable["sid", "a-hash"].ttl is None
    assert "hash" in unreadable["sid", "a-hash"].problem


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[]",
        b'{"kind":"jti"}',
        b'{"kind":"nope","id":"x","until":1}',
        b'{"kind":"jti","id":"","until":1}',
        b'{"kind":"jti","id":"x","until":"inf"}',
        b"x" * 5000,
    ],
)
def test_decode_rejects_garbage(data: bytes) -> None:
    assert decode(data) is None


def test_encode_decode_round_trip() -> None:
    record = Revocation("sub", "alice", 100.5, 50.0, 7)
    assert decode(encode(record)) == record


async def test_rate_limiter_windows(redis: Any, clock: FakeClock) -> None:
    limiter = RateLimiter(redis, clock=clock)
    results = [await limiter.hit("login", "1.2.3.4", limit=3, window=60) for _ in range(4)]
    assert [ok for ok, _ in results] == [True, True, True, False]
    assert await limiter.peek("login", "1.2.3.4", limit=3, window=60) == (True, results[-1][1])
    clock.now += 61
    assert (await limiter.hit("login", "1.2.3.4", limit=3, window=60))[0] is True


async def test_audit_newest_first(redis: Any, clock: FakeClock) -> None:
    audit = AuditLog(redis, clock=clock)
    for i in range(5):
        await audit.record(actor="k", action=f"a{i}", target="t", source="127.0.0.1")
    entries = await audit.recent(count=3)
    assert [e.action for e in entries] == ["a4", "a3", "a2"]
    older = await audit.recent(count=10, before=entries[-1].id)
    assert [e.action for e in older] == ["a1", "a0"]


async def test_every_public_coroutine_maps_redis_outages(clock: FakeClock) -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    redis = fakeredis.FakeAsyncRedis(server=server)
    sid = new_sid("alice")
    calls: dict[type, dict[str, dict[str, Any]]] = {
        SessionStore: {
            "create": dict(sub="a", sid=sid, refresh_hash="h", lifetime=10),
            "rotate": dict(sid=sid, presented_hash="h", new_hash="n", successor_box=b"b", grace=1),
            "confirm_delivery": dict(sid=sid, successor_hash="n", grace=1),
            "owner": dict(sid=sid, presented_hash="h"),
            "get": dict(sid=sid),
            "list_for_user": dict(sub="a"),
            "delete": dict(sid=sid),
            "delete_all_for_user": dict(sub="a"),
        },
        RevocationStore: {
            "revoke_jti": dict(jti="j", exp=clock.now + 10, leeway=0),
            "revoke_session": dict(sid=sid, until=clock.now + 10),
            "revoke_user": dict(sub="a", at=clock.now, until=clock.now + 10),
            "version": {},
            "load_all": {},
            "ping": {},
        },
        RateLimiter: {
            "hit": dict(scope="s", identity="i", limit=1, window=1),
            "peek": dict(scope="s", identity="i", limit=1, window=1),
            "reset": dict(scope="s", identity="i", window=1),
        },
        AuditLog: {
            "record": dict(actor="a", action="b", target="c", source=None),
            "recent": {},
        },
    }
    for cls, methods in calls.items():
        instance = cls(redis, clock=clock)
        public = {
            name
            for name, fn in inspect.getmembers(cls, inspect.iscoroutinefunction)
            if not name.startswith("_")
        }
        assert public == set(methods), cls  # a new coroutine needs a row here
        for name, kwargs in methods.items():
            with pytest.raises(StoreUnavailable):
                await getattr(instance, name)(**kwargs)
    with pytest.raises(StoreUnavailable):
        async with RevocationStore(redis, clock=clock).subscription():
            pass


async def test_revocation_load_skips_malformed_records(redis: Any, clock: FakeClock) -> None:
    store = RevocationStore(redis, clock=clock)
    live = repr(clock.now + 100)
    for key, value in {
        "gw:rev:jti:nan": "nan",
        "gw:rev:jti:inf": "inf",
        "gw:rev:jti:garbage": "not a number",
        "gw:rev:jti:past": repr(clock.now - 1),
        "gw:rev:sid:": live,  # no id
        "gw:rev:sub:bob": "not json",
        "gw:rev:other:x": live,
        "gw:rev:jti:good": live,
        "gw:rev:sid:good-sid": live,
    }.items():
        await redis.set(key, value)
    records = await store.load_all(batch=3)
    assert sorted((r.kind, r.id) for r in records) == [("jti", "good"), ("sid", "good-sid")]
