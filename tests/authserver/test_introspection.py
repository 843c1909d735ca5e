"""Token introspection (RFC 7662) through the running gateway: who may ask, what it says,
and that asking never changes a token's fate."""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp
import fakeredis
import pytest
from aiohttp import ClientResponse

from gateway.authserver.introspection import client_secret_hash
from gateway.config import Settings
from tests.support.admin_access import ADMIN, ADMIN_KEYS
from tests.support.clock import FakeClock
from tests.support.gateway_client import (
    GatewayClient,
    GatewayFactory,
    GatewayPair,
    GatewayPairFactory,
    login,
)
from tests.support.jwt_tokens import bearer, mint
from tests.support.oauth_clients import password_client
from tests.support.waiting import eventually

SECRET = "svc-secret-0123456789"
OTHER_SECRET = "other-secret-0123456789"
CLIENTS = [
    {"id": "svc", "hash": client_secret_hash(SECRET)},
    {"id": "other", "hash": client_secret_hash(OTHER_SECRET)},
]


def basic(client_id: str = "svc", secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(client_id, secret)}


@pytest.fixture
def introspection_settings(auth_settings: Settings) -> Settings:
    return auth_settings.model_copy(
        update={
            "introspection": Settings(introspection={"clients": CLIENTS}).introspection,  # type: ignore[arg-type]
            "admin": Settings(admin=ADMIN_KEYS).admin,  # type: ignore[arg-type]
            "clients": [password_client("mobile")],
        }
    )


@pytest.fixture
async def gateway_pair(
    gateway_pair_factory: GatewayPairFactory,
    introspection_settings: Settings,
    fake_server: fakeredis.FakeServer,
    clock: FakeClock,
) -> GatewayPair:
    """(public client, admin client) of one gateway on fakeredis with a fake clock."""
    redis = fakeredis.FakeAsyncRedis(server=fake_server)
    return await gateway_pair_factory(introspection_settings, redis=redis, clock=clock)


@pytest.fixture
async def gateway(gateway_pair: GatewayPair) -> GatewayClient:
    return gateway_pair[0]


async def introspect(client: GatewayClient, token: str, **headers: str) -> ClientResponse:
    return await client.post("/auth/introspect", data={"token": token}, headers=headers or basic())


async def test_a_live_access_token(gateway: GatewayClient, clock: FakeClock) -> None:
    body = await login(gateway, client_id="mobile")
    resp = await introspect(gateway, body["access_token"])
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    answer = await resp.json()
    assert answer["active"] is True
    assert answer["token_type"] == "Bearer"
    assert (answer["sub"], answer["sid"], answer["client_id"]) == (
        "alice",
        body["session_id"],
        "mobile",
    )
    assert answer["exp"] == body["access_token_expires_at"]
    assert answer["roles"] == ["user"]
    assert answer["aud"] == "test-api" and answer["iss"] == "http://gateway.test"


async def test_a_live_refresh_token_is_read_never_spent(
    gateway: GatewayClient, clock: FakeClock
) -> None:
    body = await login(gateway)
    for _ in range(3):
        answer = await (await introspect(gateway, body["refresh_token"])).json()
        assert answer["active"] is True
        assert answer["token_type"] == "refresh_token"
        assert answer["sid"] == body["session_id"]
        assert answer["exp"] == body["refresh_token_expires_at"]
    # introspection did not rotate it: the client's refresh works as usual
    resp = await gateway.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 200
    rotated = await resp.json()
    # the spent token is inactive, and asking about it is not reuse: the session lives on
    clock.now += 11
    assert await (await introspect(gateway, body["refresh_token"])).json() == {"active": False}
    resp = await gateway.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert resp.status == 200


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "gwrt_12345678-AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "a.b.c",
    ],
    ids=["garbage", "unknown_refresh_token", "not_a_jws"],
)
async def test_unknown_tokens_are_inactive(gateway: GatewayClient, token: str) -> None:
    resp = await introspect(gateway, token)
    assert resp.status == 200
    assert await resp.json() == {"active": False}


async def test_expired_revoked_and_foreign_tokens_are_inactive_without_a_reason(
    gateway_pair: GatewayPair, clock: FakeClock, key_files: dict[str, Path]
) -> None:
    gateway, admin = gateway_pair
    body = await login(gateway)
    other = await login(gateway, user="bob", password="builder")
    resp = await admin.post(
        "/admin/revoke/token", json={"token": body["access_token"]}, headers=ADMIN
    )
    assert resp.status == 200
    assert await (await introspect(gateway, body["access_token"])).json() == {"active": False}
    await gateway.post("/auth/logout", headers=bearer(other["access_token"]))
    for token in (other["access_token"], other["refresh_token"]):
        assert await (await introspect(gateway, token)).json() == {"active": False}
    forged = mint(key_files, iss="https://elsewhere.example")
    assert await (await introspect(gateway, forged)).json() == {"active": False}
    fresh = await login(gateway, user="bob", password="builder")
    clock.now += 901 + 30  # past exp and leeway
    assert await (await introspect(gateway, fresh["access_token"])).json() == {"active": False}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer whatever"},
        basic("svc", "wrong-secret"),
        basic("nobody", SECRET),
        basic("other", SECRET),  # another client's secret
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b"svc-without-colon").decode()},
    ],
    ids=[
        "no_credentials",
        "bearer",
        "wrong_secret",
        "unknown_client",
        "secret_of_another_client",
        "bad_base64",
        "no_colon",
    ],
)
async def test_callers_must_be_configured_clients(
    gateway: GatewayClient, headers: dict[str, str]
) -> None:
    body = await login(gateway)
    resp = await gateway.post(
        "/auth/introspect", data={"token": body["access_token"]}, headers=headers
    )
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="gateway"'
    answer = await resp.json()
    assert answer["error"] == "invalid_client"
    assert "active" not in answer


async def test_public_clients_may_not_introspect(gateway: GatewayClient) -> None:
    body = await login(gateway)
    resp = await gateway.post(
        "/auth/introspect", data={"token": body["access_token"], "client_id": "svc"}
    )
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_client"


async def test_the_token_parameter_is_required(gateway: GatewayClient) -> None:
    resp = await gateway.post("/auth/introspect", data={"token_type_hint": "x"}, headers=basic())
    assert resp.status == 400
    assert await resp.json() == {
        "error": "invalid_request",
        "error_description": "token is required",
    }


async def test_rate_limited_per_client(
    gateway_factory: GatewayFactory, introspection_settings: Settings, clock: FakeClock
) -> None:
    limited = {"clients": CLIENTS, "rate_limit": {"limit": 3, "window": 60}}
    settings = introspection_settings.model_copy(
        update={"introspection": Settings(introspection=limited).introspection}  # type: ignore[arg-type]
    )
    gateway = await gateway_factory(
        settings, redis=fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), clock=clock
    )
    token = (await login(gateway))["access_token"]
    for _ in range(3):
        assert (await introspect(gateway, token)).status == 200
    resp = await introspect(gateway, token)
    assert resp.status == 429
    assert (await resp.json())["error"] == "rate_limited"
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await introspect(gateway, token, **basic("other", OTHER_SECRET))).status == 200
    clock.now += 60
    assert (await introspect(gateway, token)).status == 200


async def test_guessing_client_secrets_is_throttled(
    gateway_factory: GatewayFactory, introspection_settings: Settings, clock: FakeClock
) -> None:
    guarded = {"clients": CLIENTS, "failures_per_ip": {"limit": 3, "window": 120}}
    settings = introspection_settings.model_copy(
        update={"introspection": Settings(introspection=guarded).introspection}  # type: ignore[arg-type]
    )
    server = fakeredis.FakeServer()
    gateway = await gateway_factory(
        settings, redis=fakeredis.FakeAsyncRedis(server=server), clock=clock
    )
    token = (await login(gateway))["access_token"]
    for guess in ("guess-1", "guess-2", "guess-3"):
        resp = await introspect(gateway, token, **basic("svc", guess))
        assert resp.status == 401
    for headers in (basic("svc", "guess-4"), basic(), basic("other", OTHER_SECRET)):
        resp = await introspect(gateway, token, **headers)
        assert resp.status == 429
        assert (await resp.json())["error"] == "rate_limited"
        assert 1 <= int(resp.headers["Retry-After"]) <= 120
    clock.now += 120
    assert (await introspect(gateway, token)).status == 200
    # with Redis away the count goes on in the process
    server.connected = False
    try:
        for guess in ("guess-5", "guess-6", "guess-7"):
            assert (await introspect(gateway, token, **basic("svc", guess))).status == 401
        assert (await introspect(gateway, token)).status == 429
    finally:
        server.connected = True


@pytest.mark.slow  # waits for the revocation watchdog's real interval
async def test_stale_revocations_fail_closed_never_a_stale_true(
    gateway: GatewayClient, fake_server: fakeredis.FakeServer, clock: FakeClock
) -> None:
    body = await login(gateway)
    fake_server.connected = False
    clock.now += 31  # past revocation.max_staleness while Redis is unreachable

    async def refused() -> bool:
        resp = await introspect(gateway, body["access_token"])
        if resp.status == 503:
            return True
        assert (await resp.json())["active"] is True  # until then, never a stale answer
        return False

    # the watchdog applies the fail mode within its interval
    await eventually(refused, 15, what="introspection refuses once the view is stale")
    resp = await introspect(gateway, body["access_token"])
    assert resp.status == 503
    assert await resp.json() == {
        "error": "temporarily_unavailable",
        "error_description": "revocation state is stale; refusing protected requests",
    }
    resp = await introspect(gateway, body["refresh_token"])
    assert resp.status == 503


async def test_metadata_lists_the_endpoint(gateway: GatewayClient, client: GatewayClient) -> None:
    metadata = await (await gateway.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["introspection_endpoint"] == "http://gateway.test/auth/introspect"
    assert metadata["introspection_endpoint_auth_methods_supported"] == ["client_secret_basic"]
    plain = await (await client.get("/.well-known/oauth-authorization-server")).json()
    assert "introspection_endpoint" not in plain  # no clients configured there


def test_secret_hashes_are_sha256() -> None:
    import hashlib

    assert client_secret_hash("x") == "sha256:" + hashlib.sha256(b"x").hexdigest()


def test_check_config_masks_client_hashes() -> None:
    from gateway.cli.serve_commands import masked

    data = masked(Settings(introspection={"clients": CLIENTS}))  # type: ignore[arg-type]
    hashes = [c["hash"] for c in data["introspection"]["clients"]]  # type: ignore[index]
    assert hashes and all(h.endswith("...(masked)") for h in hashes)
    assert client_secret_hash(SECRET) not in str(data)


@pytest.mark.slow  # runs the CLI in a child process
def test_cli_creates_a_client_secret_and_its_entry() -> None:
    from tests.support.gateway_cli import run_cli

    result = run_cli("introspection-client", "create", "--id", "billing")
    assert result.returncode == 0, result.stderr
    secret = result.stdout.split(": ", 1)[1].splitlines()[0].strip()
    assert secret.startswith("gwis_") and len(secret) > 40
    assert f"{{id: billing, hash: {client_secret_hash(secret)}}}" in result.stdout
    bad = run_cli("introspection-client", "create", "--id", "no spaces")
    assert bad.returncode == 2 and "--id may hold" in bad.stderr
