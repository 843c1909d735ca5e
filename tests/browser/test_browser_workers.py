"""Transparent refresh across worker processes: `gateway serve --workers 2` on a real Redis,
50 parallel requests on an expired access cookie all served, no reuse, the session alive."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.support.browser_cookies import ACCESS_COOKIE, REFRESH_COOKIE, browser_section
from tests.support.credential_files import write_users_file
from tests.support.gateway_client import GatewayProcessFactory
from tests.support.recording_upstream import Upstream
from tests.support.redis_servers import RedisServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow  # starts gateway processes


async def test_fifty_parallel_requests_on_an_expired_access_cookie_across_two_workers(
    gateway_process: GatewayProcessFactory,
    redis_server: RedisServer,
    upstream: Upstream,
    tmp_path: Path,
    seal_key_file: Path,
) -> None:
    _, base = await gateway_process(
        "--workers",
        "2",
        redis_url=redis_server.url,
        sections={
            "environment": "development",
            "tokens": {"access_ttl": 1, "leeway": 0},
            "auth": {"users_file": str(write_users_file(tmp_path / "users.yaml"))},
            "browser": browser_section(seal_key_file),
            "routes": [{"prefix": "/", "upstream": upstream.url}],
        },
    )
    # every request on a new connection, so both workers take their share
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as http:
        async with http.post(
            f"{base}/auth/browser/login", json={"username": "alice", "password": "wonderland"}
        ) as resp:
            assert resp.status == 200, await resp.text()
            expires = (await resp.json())["access_expires_at"]
            cookie = "; ".join(c.split(";")[0] for c in resp.headers.getall("Set-Cookie"))
        # real processes keep real time: wait until the access token has expired (leeway 0)
        await eventually(lambda: time.time() > expires + 1, 30, what="the access token expired")

        async def call(i: int) -> tuple[int, list[str]]:
            async with http.get(f"{base}/api/item/{i}", headers={"Cookie": cookie}) as resp:
                await resp.read()
                return resp.status, resp.headers.getall("Set-Cookie", [])

        answers = await asyncio.gather(*(call(i) for i in range(50)))
        assert [status for status, _ in answers] == [200] * 50
        assert all(
            [c.split("=")[0] for c in set_cookies] == [ACCESS_COOKIE] for _, set_cookies in answers
        )
        assert len([r for r in upstream.received if r.path.startswith("/api/item/")]) == 50

        async with http.get(f"{base}/metrics") as resp:
            metrics = await resp.text()
        assert "refresh_reused" not in metrics and "reuse_detected" not in metrics
        minted = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith('gateway_browser_refresh_total{outcome="minted"}')
        ]
        assert minted and 1 <= minted[0] <= 50
        # the session lives on: the same refresh cookie still refreshes
        refresh_only = cookie.split("; ")[1]
        assert refresh_only.startswith(f"{REFRESH_COOKIE}=")
        async with http.get(f"{base}/api/after", headers={"Cookie": refresh_only}) as resp:
            assert resp.status == 200
