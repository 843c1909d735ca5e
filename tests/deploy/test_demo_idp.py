"""The demo identity provider (deploy/demo_idp.py) with config.yaml's provider entry: the
walk-through that `make demo` prints works (on free ports, with the demo users)."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import fakeredis
import jwt
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.config import AuthSettings, FederationSettings, Settings
from tests.support.gateway_client import GatewayFactory
from tests.support.identity_provider import ID_TOKEN_TYPE, TOKEN_EXCHANGE
from tests.support.jwt_tokens import bearer
from tests.support.processes import free_port
from tests.support.recording_upstream import Upstream
from tests.support.repository import DEPLOY, EXAMPLE_CONFIG


def demo_idp() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_idp", DEPLOY / "demo_idp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_demo_walkthrough_exchange(
    gateway_factory: GatewayFactory,
    settings: Settings,
    upstream: Upstream,
    aiohttp_client: AiohttpClient,
) -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    idp: TestClient[web.Request, web.Application] = await aiohttp_client(
        demo_idp().make_app(issuer), server_kwargs={"port": port}
    )
    shipped = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    federation = shipped["federation"]
    federation["providers"][0]["issuer"] = issuer
    demo = settings.model_copy(
        update={
            "federation": FederationSettings(**federation),
            "auth": AuthSettings(users_file=DEPLOY / "demo-users.yaml"),
        }
    )
    gateway = await gateway_factory(demo, redis=fakeredis.FakeAsyncRedis())

    async def exchange(username: str) -> dict[str, Any]:
        id_token = (await (await idp.post("/token", data={"username": username})).json())[
            "id_token"
        ]
        resp = await gateway.post(
            "/auth/token",
            data={
                "grant_type": TOKEN_EXCHANGE,
                "subject_token_type": ID_TOKEN_TYPE,
                "subject_token": id_token,
            },
        )
        body: dict[str, Any] = await resp.json()
        assert resp.status == 200, body
        return body

    carol = await exchange("carol")
    claims = jwt.decode(carol["access_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["roles"]) == ("demo-idp:carol", ["user", "reports"])
    assert (await gateway.get("/reports/q3", headers=bearer(carol["access_token"]))).status == 200
    assert upstream.headers_of()["x-user-id"] == ["demo-idp:carol"]
    alice = await exchange("alice")  # linked to the local alice in deploy/demo-users.yaml
    claims = jwt.decode(alice["access_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["roles"]) == ("alice", ["user"])
    bad = await idp.post("/token", data={"username": "Robert'); DROP"})
    assert bad.status == 400
