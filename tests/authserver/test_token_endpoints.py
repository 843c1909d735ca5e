"""Token service through the running gateway: login, refresh rotation, reuse, logout, sessions."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from gateway.config import Settings
from gateway.store import connect_redis
from tests.support.clock import FakeClock
from tests.support.gateway_client import GatewayClient, GatewayFactory, login
from tests.support.gateway_settings import on_redis
from tests.support.jwt_tokens import bearer
from tests.support.recording_upstream import Upstream
from tests.support.redis_servers import RedisServer

TOKEN_FIELDS = {
    "access_token",
    "token_type",
    "expires_in",
    "refresh_token",
    "refresh_expires_in",
    "access_token_expires_at",
    "refresh_token_expires_at",
    "session_id",
}


async def test_login_returns_the_spec_token_response(
    client: GatewayClient, clock: FakeClock
) -> None:
    body = await login(client, device_id="laptop", device_name="Alice's laptop")
    assert set(body) == TOKEN_FIELDS
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["access_token_expires_at"] == int(clock.now) + 900
    assert body["refresh_token"].startswith("gwrt_")
    assert body["refresh_token_expires_at"] - int(clock.now) in range(
        30 * 86400 - 1, 30 * 86400 + 1
    )


async def test_login_with_oauth_password_form(client: GatewayClient) -> None:
    resp = await client.post(
        "/auth/login", data={"grant_type": "password", "username": "bob", "password": "builder"}
    )
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"


async def test_access_token_from_login_reaches_upstream(
    client: GatewayClient, upstream: Upstream
) -> None:
    body = await login(client, user="bob", password="builder")
    resp = await client.get("/reports/q3", headers=bearer(body["access_token"]))
    assert resp.status == 200
    seen = upstream.headers_of()
    assert seen["x-user-id"] == ["bob"]
    assert seen["x-user-roles"] == ["user,reports"]
    assert seen["x-session-id"] == [body["session_id"]]


@pytest.mark.parametrize(
    ("user", "password"), [("alice", "wrong"), ("nobody", "wonderland")], ids=["wrong", "unknown"]
)
async def test_bad_credentials_are_one_401(client: GatewayClient, user: str, password: str) -> None:
    resp = await client.post("/auth/login", json={"username": user, "password": password})
    assert resp.status == 401
    assert await resp.json() == {
        "error": "invalid_grant",
        "error_description": "invalid username or password",
    }


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"username": "alice"},
        {"password": "x"},
        {"username": "", "password": "x"},
        {"username": "alice", "password": 5},
        {"username": ["alice"], "password": "x"},
    ],
)
async def test_missing_or_empty_login_fields(
    client: GatewayClient, payload: dict[str, Any]
) -> None:
    resp = await client.post("/auth/login", json=payload)
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"


async def test_non_json_body_with_json_content_type(client: GatewayClient) -> None:
    resp = await client.post(
        "/auth/login", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"


async def test_one_mebibyte_login_body_is_413(client: GatewayClient) -> None:
    resp = await client.post(
        "/auth/login",
        data=io.BytesIO(b'{"username": "' + b"a" * (1 << 20) + b'"}'),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 413
    assert (await resp.json())["error"] == "payload_too_large"


@pytest.mark.parametrize("path", ["/auth/token", "/auth/login", "/auth/refresh"])
async def test_unsupported_grant_type(client: GatewayClient, path: str) -> None:
    resp = await client.post(path, data={"grant_type": "client_credentials", "refresh_token": "x"})
    assert resp.status == 400
    assert (await resp.json())["error"] == "unsupported_grant_type"


async def test_token_endpoint_without_grant_type(client: GatewayClient) -> None:
    resp = await client.post("/auth/token", data={"username": "alice"})
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"


async def test_refresh_rotates_and_old_access_token_keeps_working(client: GatewayClient) -> None:
    first = await login(client)
    resp = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status == 200
    second = await resp.json()
    assert set(second) == TOKEN_FIELDS
    assert second["refresh_token"] != first["refresh_token"]
    assert second["session_id"] == first["session_id"]
    # rotation never extends the absolute lifetime
    assert second["refresh_token_expires_at"] == first["refresh_token_expires_at"]
    resp = await client.post(
        "/refresh", data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}
    )
    assert resp.status == 200


@pytest.mark.parametrize(
    ("token", "error"),
    [
        ("", "invalid_request"),
        ("garbage", "invalid_grant"),
        ("gwrt_0000000-short.x", "invalid_grant"),
        ("gwrt_deadbeef-AAAAAAAAAAAAAAAAAAAAAA." + "A" * 43, "invalid_grant"),
    ],
    ids=["empty", "garbage", "malformed", "unknown"],
)
async def test_bad_refresh_tokens(client: GatewayClient, token: str, error: str) -> None:
    resp = await client.post("/auth/refresh", json={"refresh_token": token})
    assert resp.status == 400
    assert (await resp.json())["error"] == error


async def test_forged_refresh_token_naming_a_real_session_does_not_end_it(
    client: GatewayClient,
) -> None:
    body = await login(client)
    forged = "gwrt_" + body["session_id"] + "." + "A" * 43
    resp = await client.post("/auth/refresh", json={"refresh_token": forged})
    assert resp.status == 400
    resp = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 200


async def test_expired_session_refresh_is_invalid_grant(
    client: GatewayClient, clock: FakeClock
) -> None:
    body = await login(client)
    clock.now += 30 * 86400 + 1
    resp = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"


async def test_refresh_token_is_not_an_access_token(
    client: GatewayClient, upstream: Upstream
) -> None:
    body = await login(client)
    resp = await client.get("/api", headers=bearer(body["refresh_token"]))
    assert resp.status == 401
    assert upstream.received == []


async def test_access_token_is_not_a_refresh_token(client: GatewayClient) -> None:
    body = await login(client)
    resp = await client.post("/auth/refresh", json={"refresh_token": body["access_token"]})
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"


async def test_reuse_after_grace_revokes_the_session(
    client: GatewayClient, clock: FakeClock, upstream: Upstream
) -> None:
    first = await login(client)
    resp = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    second = await resp.json()
    clock.now += 11  # past the 10 s grace window
    resp = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status == 400
    assert "reuse" in (await resp.json())["error_description"]
    # the newest refresh token and every access token of the session are dead
    resp = await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert resp.status == 400
    for access in (first["access_token"], second["access_token"]):
        resp = await client.get("/api", headers=bearer(access))
        assert resp.status == 401
        assert "revoked" in resp.headers["WWW-Authenticate"]
    assert upstream.received == []


async def test_concurrent_refreshes_within_grace_keep_one_chain(client: GatewayClient) -> None:
    body = await login(client)
    results = await asyncio.gather(
        *(
            client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
            for _ in range(50)
        )
    )
    assert [r.status for r in results] == [200] * 50
    successors = {(await r.json())["refresh_token"] for r in results}
    assert len(successors) == 1  # one live chain
    (successor,) = successors
    resp = await client.post("/auth/refresh", json={"refresh_token": successor})
    assert resp.status == 200


async def test_concurrent_refreshes_without_grace_exactly_one_wins(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    users_file: Path,
    clock: FakeClock,
) -> None:
    settings = settings_factory(
        auth={"users_file": str(users_file)}, tokens={"refresh_reuse_grace": 0}
    )
    client = await gateway_factory(settings, redis=fakeredis.FakeAsyncRedis(), clock=clock)
    body = await login(client)
    results = await asyncio.gather(
        *(
            client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
            for _ in range(50)
        )
    )
    statuses = sorted(r.status for r in results)
    assert statuses.count(200) == 1
    assert statuses.count(400) == 49


async def test_logout_kills_access_and_refresh(client: GatewayClient, upstream: Upstream) -> None:
    body = await login(client)
    resp = await client.post("/auth/logout", headers=bearer(body["access_token"]))
    assert resp.status == 204
    resp = await client.get("/api", headers=bearer(body["access_token"]))
    assert resp.status == 401
    resp = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 400
    assert upstream.received == []


async def test_logout_with_refresh_token_only(client: GatewayClient) -> None:
    body = await login(client)
    resp = await client.post("/auth/logout", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 204
    resp = await client.get("/auth/sessions", headers=bearer(body["access_token"]))
    assert resp.status == 401


async def test_logout_without_credentials_is_401(client: GatewayClient) -> None:
    resp = await client.post("/auth/logout")
    assert resp.status == 401


async def test_sessions_per_device_and_replacement(client: GatewayClient) -> None:
    laptop = await login(client, device_id="laptop", device_name="Laptop")
    phone = await login(client, device_id="phone", device_name="Phone")
    resp = await client.get("/auth/sessions", headers=bearer(phone["access_token"]))
    sessions = (await resp.json())["sessions"]
    assert {s["device_id"] for s in sessions} == {"laptop", "phone"}
    assert [s["current"] for s in sessions if s["device_id"] == "phone"] == [True]
    # logging in again on the same device replaces that device's session
    laptop2 = await login(client, device_id="laptop")
    resp = await client.get("/auth/sessions", headers=bearer(laptop2["access_token"]))
    sessions = (await resp.json())["sessions"]
    assert len(sessions) == 2
    assert laptop["session_id"] not in {s["sid"] for s in sessions}
    resp = await client.get("/api", headers=bearer(laptop["access_token"]))
    assert resp.status == 401


async def test_delete_own_and_foreign_session(client: GatewayClient) -> None:
    alice_laptop = await login(client, device_id="laptop")
    alice_phone = await login(client, device_id="phone")
    bob = await login(client, user="bob", password="builder")
    resp = await client.delete(
        f"/auth/sessions/{bob['session_id']}", headers=bearer(alice_laptop["access_token"])
    )
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
    resp = await client.get("/api", headers=bearer(bob["access_token"]))
    assert resp.status == 200
    resp = await client.delete(
        f"/auth/sessions/{alice_phone['session_id']}", headers=bearer(alice_laptop["access_token"])
    )
    assert resp.status == 204
    resp = await client.get("/api", headers=bearer(alice_phone["access_token"]))
    assert resp.status == 401


async def test_revoke_endpoint_rfc7009(client: GatewayClient) -> None:
    body = await login(client)
    resp = await client.post("/auth/revoke", data={"token": "unknown-token"})
    assert resp.status == 200
    resp = await client.post("/auth/revoke", data={"token": body["access_token"]})
    assert resp.status == 200
    resp = await client.get("/api", headers=bearer(body["access_token"]))
    assert resp.status == 401
    resp = await client.post("/auth/revoke", data={"token": body["refresh_token"]})
    assert resp.status == 200
    resp = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 400
    resp = await client.post("/auth/revoke", data={})
    assert resp.status == 400


async def test_metadata_document(client: GatewayClient, auth_settings: Settings) -> None:
    resp = await client.get("/.well-known/oauth-authorization-server")
    meta = await resp.json()
    assert meta["issuer"] == auth_settings.tokens.issuer
    assert meta["token_endpoint"].endswith("/auth/token")
    assert meta["revocation_endpoint"].endswith("/auth/revoke")
    assert "refresh_token" in meta["grant_types_supported"]


async def test_login_rate_limits(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings], users_file: Path
) -> None:
    settings = settings_factory(
        auth={
            "users_file": str(users_file),
            "rate_limits": {
                "per_ip": {"limit": 100, "window": 60},
                "failures_per_username": {"limit": 3, "window": 60},
            },
        }
    )
    client = await gateway_factory(settings, redis=fakeredis.FakeAsyncRedis())
    for _ in range(3):
        resp = await client.post("/auth/login", json={"username": "alice", "password": "bad"})
        assert resp.status == 401
    resp = await client.post("/auth/login", json={"username": "alice", "password": "wonderland"})
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"] == "rate_limited"
    # another user is not affected
    resp = await client.post("/auth/login", json={"username": "bob", "password": "builder"})
    assert resp.status == 200


async def test_store_outage_is_503_and_leaves_nothing(
    gateway_factory: GatewayFactory,
    auth_settings: Settings,
    fake_server: fakeredis.FakeServer,
    clock: FakeClock,
) -> None:
    client = await gateway_factory(
        auth_settings, redis=fakeredis.FakeAsyncRedis(server=fake_server), clock=clock
    )
    body = await login(client)
    fake_server.connected = False
    resp = await client.post("/auth/login", json={"username": "bob", "password": "builder"})
    assert resp.status == 503
    assert await resp.json() == {
        "error": "temporarily_unavailable",
        "error_description": "the token store is temporarily unavailable",
    }
    resp = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 503
    fake_server.connected = True
    # the refresh that failed did not spend the token; bob has no session
    resp = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 200
    check = fakeredis.FakeAsyncRedis(server=fake_server)
    keys = [k.decode() async for k in check.scan_iter("*")]
    assert sum(":session:" in k for k in keys) == 1  # alice's only: bob's login left nothing


@pytest.mark.redis
async def test_real_redis_outage_is_503_and_leaves_nothing(
    gateway_factory: GatewayFactory,
    auth_settings: Settings,
    redis_server: RedisServer,
    upstream: Upstream,
) -> None:
    settings = on_redis(auth_settings, redis_server.url, connect_timeout=0.3, socket_timeout=0.3)
    client = await gateway_factory(settings)
    body = await login(client)
    redis_server.stop()
    resp = await client.post("/auth/login", json={"username": "bob", "password": "builder"})
    assert resp.status == 503
    text = await resp.text()
    assert "temporarily_unavailable" in text and "Connection" not in text
    resp = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 503
    redis_server.start()
    resp = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 200, await resp.text()  # the failed attempt spent nothing
    raw = connect_redis(redis_server.url, connect_timeout=1, socket_timeout=1, max_connections=2)
    keys = [k.decode() async for k in raw.scan_iter("gw:*")]
    await raw.aclose()
    assert sum(":session:" in k for k in keys) == 1  # alice's only: bob's login left nothing


async def test_redis_never_holds_a_raw_refresh_token_and_every_key_has_a_ttl(
    gateway_factory: GatewayFactory,
    auth_settings: Settings,
    fake_server: fakeredis.FakeServer,
) -> None:
    client = await gateway_factory(
        auth_settings, redis=fakeredis.FakeAsyncRedis(server=fake_server)
    )
    first = await login(client, device_id="laptop")
    resp = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    second = await resp.json()
    await client.post("/auth/logout", headers=bearer(second["access_token"]))
    await client.post("/auth/login", json={"username": "alice", "password": "bad"})  # counters
    await login(client, device_id="phone")  # a live session too
    raw: Any = fakeredis.FakeAsyncRedis(server=fake_server)
    dump = b""
    async for key in raw.scan_iter("*"):
        assert await raw.ttl(key) > 0, key
        kind = await raw.type(key)
        if kind == b"string":
            dump += await raw.get(key) or b""
        elif kind == b"hash":
            dump += b"".join(k + v for k, v in (await raw.hgetall(key)).items())
        elif kind == b"set":
            dump += b"".join(await raw.smembers(key))
    for token in (first["refresh_token"], second["refresh_token"]):
        assert token.encode() not in dump
        assert token.split(".")[1].encode() not in dump


async def test_logout_with_an_expired_access_token_and_the_refresh_token(
    client: GatewayClient, clock: FakeClock
) -> None:
    body = await login(client)
    clock.now += 900 + 31  # access_ttl and leeway over: the access token has expired
    resp = await client.post(
        "/auth/logout",
        json={"refresh_token": body["refresh_token"]},
        headers=bearer(body["access_token"]),
    )
    assert resp.status == 204
    resp = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"


async def test_logout_with_only_an_expired_access_token_is_401(
    client: GatewayClient, clock: FakeClock
) -> None:
    body = await login(client)
    clock.now += 900 + 31
    resp = await client.post("/auth/logout", headers=bearer(body["access_token"]))
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_token"
    assert "expired" in resp.headers["WWW-Authenticate"]
    # nothing was ended: the refresh token still works
    resp = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 200
