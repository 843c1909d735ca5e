"""Admin listener: key authentication, revocations, sessions and the audit trail."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from yarl import URL

from gateway.config import Settings
from tests.support.admin_access import ADMIN, ADMIN_KEY, ADMIN_KEYS
from tests.support.clock import FakeClock
from tests.support.gateway_client import GatewayPair, GatewayPairFactory, login
from tests.support.gateway_settings import on_redis
from tests.support.jwt_tokens import bearer, mint
from tests.support.recording_upstream import Upstream


@pytest.fixture
def admin_settings(settings_factory: Callable[..., Settings], users_file: Path) -> Settings:
    return settings_factory(
        auth={"users_file": str(users_file)},
        admin=ADMIN_KEYS,
    )


@pytest.fixture
async def pair(
    gateway_pair_factory: GatewayPairFactory, admin_settings: Settings, clock: FakeClock
) -> GatewayPair:
    """(public client, admin client) sharing one gateway's components."""
    return await gateway_pair_factory(admin_settings, redis=fakeredis.FakeAsyncRedis(), clock=clock)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {ADMIN_KEY}"},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "wrong", "scheme", "empty"],
)
async def test_admin_key_required(pair: GatewayPair, headers: dict[str, str]) -> None:
    _, admin = pair
    resp = await admin.get("/admin/revocations", headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_client"


async def test_admin_api_absent_on_public_listener(pair: GatewayPair, upstream: Upstream) -> None:
    public, _ = pair
    for path in ("/admin/revocations", "/admin", "/x/../admin/audit", "/%61dmin/audit"):
        resp = await public.get(URL(path, encoded=True), headers=ADMIN)
        assert resp.status == 404, path
        assert (await resp.json())["error"] == "not_found"
    assert upstream.received == []


async def test_revoke_access_token_by_token_and_by_jti(
    pair: GatewayPair, key_files: dict[str, Path], upstream: Upstream
) -> None:
    public, admin = pair
    body = await login(public)
    resp = await admin.post(
        "/admin/revoke/token", json={"token": body["access_token"]}, headers=ADMIN
    )
    assert resp.status == 200
    assert (await resp.json())["revoked"] is True
    resp = await public.get("/api", headers=bearer(body["access_token"]))
    assert resp.status == 401
    assert "revoked" in resp.headers["WWW-Authenticate"]

    token = mint(key_files, jti="jti-by-id-1")
    resp = await admin.post(
        "/admin/revoke/token", json={"jti": "jti-by-id-1", "exp": time.time() + 600}, headers=ADMIN
    )
    assert resp.status == 200
    resp = await public.get("/api", headers=bearer(token))
    assert resp.status == 401
    assert upstream.received == []


@pytest.mark.parametrize(
    "payload",
    [
        {"token": "not-a-jwt"},
        {"token": 7},
        {"jti": "bad jti with spaces", "exp": 2e9},
        {"jti": "ok", "exp": "soon"},
        {"jti": "ok"},
        [1, 2],
    ],
)
async def test_revoke_token_bad_bodies(pair: GatewayPair, payload: Any) -> None:
    _, admin = pair
    resp = await admin.post("/admin/revoke/token", json=payload, headers=ADMIN)
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"


async def test_revoke_token_body_not_json(pair: GatewayPair) -> None:
    _, admin = pair
    resp = await admin.post(
        "/admin/revoke/token", data=b"{nope", headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert resp.status == 400


async def test_revoking_an_expired_token_is_a_noop(
    pair: GatewayPair, key_files: dict[str, Path]
) -> None:
    _, admin = pair
    expired = mint(key_files, iat=int(time.time()) - 7200, nbf=None, exp=int(time.time()) - 3600)
    resp = await admin.post("/admin/revoke/token", json={"token": expired}, headers=ADMIN)
    assert resp.status == 200
    assert (await resp.json())["revoked"] is False
    resp = await admin.get("/admin/revocations", headers=ADMIN)
    assert (await resp.json())["total"] == 0


async def test_revoke_session(pair: GatewayPair) -> None:
    public, admin = pair
    body = await login(public, device_id="laptop")
    resp = await admin.delete("/admin/sessions/deadbeef-AAAAAAAAAAAAAAAAAAAAAA", headers=ADMIN)
    assert resp.status == 404
    resp = await admin.delete("/admin/sessions/../../etc", headers=ADMIN)
    assert resp.status == 404
    resp = await admin.delete(f"/admin/sessions/{body['session_id']}", headers=ADMIN)
    assert resp.status == 200
    resp = await public.get("/api", headers=bearer(body["access_token"]))
    assert resp.status == 401
    resp = await public.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 400


async def test_revoke_user_then_login_again(
    pair: GatewayPair, key_files: dict[str, Path], clock: FakeClock
) -> None:
    public, admin = pair
    first = await login(public, device_id="a")
    second = await login(public, device_id="b")
    # a token minted elsewhere for the same user, earlier than the revocation
    sessionless = mint(key_files, sub="alice", iat=int(clock.now) - 5, nbf=int(clock.now) - 5)
    resp = await admin.post("/admin/users/alice/revoke", headers=ADMIN)
    assert resp.status == 200
    assert (await resp.json())["sessions_revoked"] == 2
    for token in (first["access_token"], second["access_token"], sessionless):
        resp = await public.get("/api", headers=bearer(token))
        assert resp.status == 401
    resp = await admin.get("/admin/users/alice/sessions", headers=ADMIN)
    assert (await resp.json())["sessions"] == []
    again = await login(public)
    resp = await public.get("/api", headers=bearer(again["access_token"]))
    assert resp.status == 200


async def test_revoke_unknown_user_is_documented_noop(pair: GatewayPair) -> None:
    _, admin = pair
    resp = await admin.post("/admin/users/nobody/revoke", headers=ADMIN)
    assert resp.status == 200
    assert (await resp.json())["sessions_revoked"] == 0


async def test_user_sessions_and_revocations_listing(pair: GatewayPair) -> None:
    public, admin = pair
    body = await login(public, device_id="laptop", device_name="Laptop")
    resp = await admin.get("/admin/users/alice/sessions", headers=ADMIN)
    sessions = (await resp.json())["sessions"]
    assert [s["sid"] for s in sessions] == [body["session_id"]]
    await admin.delete(f"/admin/sessions/{body['session_id']}", headers=ADMIN)
    resp = await admin.get("/admin/revocations", headers=ADMIN)
    items = (await resp.json())["revocations"]
    assert {"kind": "sid", "id": body["session_id"]}.items() <= items[0].items()
    resp = await admin.get("/admin/revocations?limit=0", headers=ADMIN)
    assert resp.status == 400


async def test_audit_trail_newest_first(pair: GatewayPair) -> None:
    public, admin = pair
    body = await login(public)
    await admin.post("/admin/revoke/token", json={"token": body["access_token"]}, headers=ADMIN)
    await admin.delete(f"/admin/sessions/{body['session_id']}", headers=ADMIN)
    await admin.post("/admin/users/alice/revoke", headers=ADMIN)
    resp = await admin.get("/admin/audit", headers=ADMIN)
    entries = (await resp.json())["entries"]
    assert [e["action"] for e in entries] == ["revoke_user", "revoke_session", "revoke_token"]
    assert {e["actor"] for e in entries} == {"admin-key:ops"}
    assert entries[1]["target"] == body["session_id"]
    assert entries[0]["source"] == "127.0.0.1"
    assert body["access_token"] not in await resp.text()


# ---- a client fault is a 4xx, never a 503 that blames Redis ------------------------------


@pytest.fixture(
    params=["fakeredis", pytest.param("redis-server", marks=[pytest.mark.redis, pytest.mark.slow])]
)
async def any_store_pair(
    request: pytest.FixtureRequest,
    gateway_pair_factory: GatewayPairFactory,
    admin_settings: Settings,
) -> GatewayPair:
    """(public, admin) of one gateway on fakeredis, and on a real redis-server."""
    if request.param == "fakeredis":
        return await gateway_pair_factory(admin_settings, redis=fakeredis.FakeAsyncRedis())
    server = request.getfixturevalue("redis_server")
    return await gateway_pair_factory(on_redis(admin_settings, server.url))


BAD_CURSORS = [
    "garbage",
    "1-2-3",
    "-1-0",
    "18446744073709551616-0",  # past 64 bits: Redis refuses it
    "99999999999999999999999-0",
    "1-18446744073709551616",
    "1 -0",
    "",
    "\u0661-0",  # a digit, but not an ASCII one
    "1796683828969",  # milliseconds alone: the trail's ids are whole
]


@pytest.mark.parametrize("before", BAD_CURSORS)
async def test_a_malformed_audit_cursor_is_400(any_store_pair: GatewayPair, before: str) -> None:
    _, admin = any_store_pair
    await admin.post("/admin/users/alice/revoke", headers=ADMIN)
    resp = await admin.get("/admin/audit", params={"before": before}, headers=ADMIN)
    if before == "":  # no cursor: the newest entries
        assert resp.status == 200
        return
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"] == "invalid_request"


async def test_well_formed_cursors_page_back(any_store_pair: GatewayPair) -> None:
    _, admin = any_store_pair
    for sub in ("a", "b", "c"):
        await admin.post(f"/admin/users/{sub}/revoke", headers=ADMIN)
    entries = (await (await admin.get("/admin/audit", headers=ADMIN)).json())["entries"]
    older = await admin.get("/admin/audit", params={"before": entries[0]["id"]}, headers=ADMIN)
    assert [e["target"] for e in (await older.json())["entries"]] == ["b", "a"]
    for before in ("0-0", "18446744073709551615-18446744073709551615", entries[-1]["id"]):
        resp = await admin.get("/admin/audit", params={"before": before}, headers=ADMIN)
        assert resp.status == 200, before


@pytest.mark.parametrize(
    ("path", "name"),
    [("/admin/audit", "count"), ("/admin/revocations", "limit")],
)
@pytest.mark.parametrize("value", ["\u00b2", "\u0661", "9" * 5000, "0", "-1", "1e3", " 5"])
async def test_an_out_of_range_number_is_400(
    pair: GatewayPair, path: str, name: str, value: str
) -> None:
    _, admin = pair
    resp = await admin.get(path, params={name: value}, headers=ADMIN)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"] == "invalid_request"


@pytest.mark.parametrize(
    "body",
    [
        b'{"jti": "x", "exp": 1e999}',
        b'{"jti": "x", "exp": Infinity}',
        b'{"jti": "x", "exp": NaN}',
        b'{"jti": "x", "exp": 1e300}',
        b'{"jti": "x", "exp": 1' + b"0" * 400 + b"}",
        b'{"jti": "x", "exp": 99999999999999}',
    ],
)
async def test_an_out_of_range_expiry_is_400(any_store_pair: GatewayPair, body: bytes) -> None:
    _, admin = any_store_pair
    resp = await admin.post(
        "/admin/revoke/token", data=body, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"] == "invalid_request"
    # nothing was written: the trail has no revocation
    entries = (await (await admin.get("/admin/audit", headers=ADMIN)).json())["entries"]
    assert entries == []
