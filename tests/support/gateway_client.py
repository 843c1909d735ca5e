"""The gateway under test on a loopback socket, as `gateway serve` runs it, and the first things a
client does with it: log in, wait until its answer for a token changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner

from gateway.runtime.runner import GatewayRunner
from tests.support.jwt_tokens import bearer


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


async def wait_for_status(client: Any, token: str, status: int, *, limit: float = 10.0) -> float:
    """Poll until the gateway answers `status` for the token; returns the seconds it took."""
    start = time.monotonic()
    while True:
        resp = await client.get("/api", headers=bearer(token))
        if resp.status == status:
            return time.monotonic() - start
        if time.monotonic() - start > limit:
            raise AssertionError(f"still {resp.status} after {limit}s, wanted {status}")
        await asyncio.sleep(0.005)
