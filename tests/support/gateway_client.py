"""The gateway under test on a loopback socket, as `gateway serve` runs it, and the first things a
client does with it: log in, wait until its answer for a token changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner

from gateway.runtime.runner import GatewayRunner
from tests.support.jwt_tokens import bearer
from tests.support.waiting import eventually


class GatewayTestServer(TestServer):
    """TestServer with the runner `gateway serve` uses (connection layer, fast lane)."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return GatewayRunner(self.app, **kwargs)


GatewayFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


async def login(
    client: Any, user: str = "alice", password: str = "wonderland", **extra: Any
) -> Any:
    """POST /auth/login and return the token response (asserting 200)."""
    resp = await client.post("/auth/login", json={"username": user, "password": password, **extra})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def wait_for_status(
    client: TestClient[Any, Any], token: str, status: int, *, timeout: float = 10.0
) -> None:
    """Until the gateway answers `status` for `token` on a protected route (a revocation or an
    outage reaching it)."""

    async def answers() -> bool:
        resp = await client.get("/api", headers=bearer(token))
        return resp.status == status

    await eventually(answers, timeout, what=f"GET /api with the token answers {status}")
