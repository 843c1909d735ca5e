"""The gateway under test on a loopback socket, as `gateway serve` runs it, and the first things a
client does with it: log in, wait until its answer for a token changes."""

from __future__ import annotations

import subprocess
from typing import Any, Protocol, TypeAlias

from aiohttp import web
from aiohttp.abc import AbstractCookieJar
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner

from gateway.config import Settings
from gateway.runtime.runner import GatewayRunner
from tests.support.jwt_tokens import bearer
from tests.support.waiting import eventually


class GatewayTestServer(TestServer):
    """TestServer with the runner `gateway serve` uses (connection layer, fast lane)."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return GatewayRunner(self.app, **kwargs)


# The gateway's public or admin application behind a test client (aiohttp's TestClient is
# generic in the request and application types it serves).
GatewayClient: TypeAlias = TestClient[web.Request, web.Application]


class GatewayFactory(Protocol):
    """The `gateway_factory` fixture: the gateway from `settings` on a loopback socket;
    other keywords (redis=, clock=, …) go to `create_app`."""

    async def __call__(
        self, settings: Settings, *, cookie_jar: AbstractCookieJar | None = None, **kwargs: Any
    ) -> GatewayClient: ...


# (public client, admin client) of one gateway: its two listeners' applications
GatewayPair: TypeAlias = tuple[GatewayClient, GatewayClient]


class GatewayPairFactory(Protocol):
    """The `gateway_pair_factory` fixture: one gateway's public and admin clients."""

    async def __call__(self, settings: Settings, **kwargs: Any) -> GatewayPair: ...


class GatewayProcessFactory(Protocol):
    """The `gateway_process` fixture: `gateway serve ARGS` in a child process, returned with its
    base URL once /healthz answers; `sections` replace whole sections of its configuration and
    other keywords go to its `proxy` section."""

    async def __call__(
        self,
        *args: str,
        redis_url: str = "memory://",
        sections: dict[str, Any] | None = None,
        **proxy: Any,
    ) -> tuple[subprocess.Popen[bytes], str]: ...


async def login(
    client: GatewayClient, user: str = "alice", password: str = "wonderland", **extra: Any
) -> dict[str, Any]:
    """POST /auth/login and return the token response (asserting 200)."""
    resp = await client.post("/auth/login", json={"username": user, "password": password, **extra})
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def wait_for_status(
    client: GatewayClient, token: str, status: int, *, timeout: float = 10.0
) -> None:
    """Until the gateway answers `status` for `token` on a protected route (a revocation or an
    outage reaching it)."""

    async def answers() -> bool:
        resp = await client.get("/api", headers=bearer(token))
        return resp.status == status

    await eventually(answers, timeout, what=f"GET /api with the token answers {status}")
