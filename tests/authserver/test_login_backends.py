"""Credential sources: bcrypt hashes in the user file, delegation to the backend's login, RS256."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import bcrypt
import fakeredis
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import Settings
from gateway.tokens.keys import generate_key_material, write_secret_file
from tests.support.gateway_client import GatewayFactory
from tests.support.jwt_tokens import bearer
from tests.support.processes import free_port
from tests.support.recording_upstream import Upstream

LEGACY_USERS = {"dave": "letmein"}


async def legacy_login(request: web.Request) -> web.Response:
    body = await request.json()
    if LEGACY_USERS.get(body.get("login")) == body.get("secret"):
        return web.json_response({"user": {"id": "u-42", "groups": ["staff"]}})
    return web.json_response({"error": "nope"}, status=401)


async def test_bcrypt_hashes_are_accepted(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    users = tmp_path / "users.yaml"
    hashed = bcrypt.hashpw(b"old-system-pass", bcrypt.gensalt(rounds=4)).decode()
    users.write_text(yaml.safe_dump({"users": {"erin": {"password_hash": hashed}}}))
    client = await gateway_factory(
        settings_factory(auth={"users_file": str(users)}), redis=fakeredis.FakeAsyncRedis()
    )
    ok = await client.post("/auth/login", json={"username": "erin", "password": "old-system-pass"})
    assert ok.status == 200
    bad = await client.post("/auth/login", json={"username": "erin", "password": "nope"})
    assert bad.status == 401


@pytest.fixture
async def legacy_backend() -> AsyncIterator[str]:
    """The legacy backend's own login endpoint (dave/letmein), on loopback."""
    legacy = web.Application()
    legacy.router.add_post("/login", legacy_login)
    server = TestServer(legacy, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}/login"
    await server.close()


async def login_through_backend(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    backend: dict[str, str],
    upstream: Upstream,
) -> dict[str, list[str]]:
    """Log dave in through the backend and return what the upstream sees of him."""
    client = await gateway_factory(
        settings_factory(auth={"backend": backend}), redis=fakeredis.FakeAsyncRedis()
    )
    resp = await client.post("/auth/login", json={"username": "dave", "password": "letmein"})
    assert resp.status == 200
    await client.get("/api", headers=bearer((await resp.json())["access_token"]))
    wrong = await client.post("/auth/login", json={"username": "dave", "password": "wrong"})
    assert wrong.status == 401
    assert (await wrong.json())["error"] == "invalid_grant"
    return upstream.headers_of()


@pytest.mark.parametrize(
    ("fields", "user_id"),
    [
        ({"subject_field": "user.id", "roles_field": "user.groups"}, "u-42"),
        # roles_field alone: the subject is the username, the roles still come from the answer
        ({"roles_field": "user.groups"}, "dave"),
    ],
    ids=["subject-and-roles", "roles-only"],
)
async def test_login_delegated_to_the_legacy_backend(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstream: Upstream,
    legacy_backend: str,
    fields: dict[str, str],
    user_id: str,
) -> None:
    backend = {"url": legacy_backend, "username_field": "login", "password_field": "secret"}
    seen = await login_through_backend(
        gateway_factory, settings_factory, {**backend, **fields}, upstream
    )
    assert seen["x-user-id"] == [user_id]
    assert seen["x-user-roles"] == ["staff"]


async def test_login_backend_down_is_503(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings]
) -> None:
    backend = {"url": f"http://127.0.0.1:{free_port()}/login", "timeout": 1}
    client = await gateway_factory(
        settings_factory(auth={"backend": backend}), redis=fakeredis.FakeAsyncRedis()
    )
    resp = await client.post("/auth/login", json={"username": "dave", "password": "letmein"})
    assert resp.status == 503
    assert (await resp.json())["error"] == "temporarily_unavailable"


async def test_rs256_signing_and_verification(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    key = tmp_path / "rs.pem"
    write_secret_file(key, generate_key_material("RS256"))
    users = tmp_path / "users.yaml"
    users.write_text(
        yaml.safe_dump(
            {
                "users": {
                    "frank": {
                        "password_hash": bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
                    }
                }
            }
        )
    )
    settings = settings_factory(
        keys={
            "active": "rs1",
            "algorithms": ["RS256"],
            "items": [{"kid": "rs1", "alg": "RS256", "private_key_file": str(key)}],
        },
        auth={"users_file": str(users)},
    )
    client = await gateway_factory(settings, redis=fakeredis.FakeAsyncRedis())
    resp = await client.post("/auth/login", json={"username": "frank", "password": "pw"})
    token = (await resp.json())["access_token"]
    assert (await client.get("/api", headers=bearer(token))).status == 200
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    assert [(k["kid"], k["kty"], k["alg"]) for k in jwks["keys"]] == [("rs1", "RSA", "RS256")]
