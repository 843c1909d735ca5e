"""The demo's clients as config.yaml registers them, and the commands `make demo` prints for
them: deploy/demo_app.py (the code flow with PKCE, driven here by a scripted browser that
signs in on the login page) and client credentials for demo-batch / demo-batch-secret."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import fakeredis
import jwt
import pytest
import yaml
from aiohttp.test_utils import TestServer

from deploy.demo_upstream import make_app as demo_upstream
from gateway.config import Settings
from tests.support.oauth_clients import gateway_at
from tests.support.processes import clean_env
from tests.support.repository import DEPLOY, EXAMPLE_CONFIG

pytestmark = pytest.mark.slow  # runs the demo app in a child process


@pytest.fixture
async def echo_upstream() -> AsyncIterator[str]:
    server = TestServer(demo_upstream(), host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


@pytest.fixture
def demo_settings(
    browser_settings_factory: Callable[..., Settings], echo_upstream: str
) -> Callable[[str], Settings]:
    shipped = yaml.safe_load(EXAMPLE_CONFIG.read_text())

    def make(base: str) -> Settings:
        return browser_settings_factory(
            tokens={"issuer": base, "audience": "demo-api"},
            clients=shipped["clients"],
            routes=[{"prefix": "/", "upstream": echo_upstream}],
        )

    return make


async def sign_in_like_a_browser(url: str) -> str:
    """Follow the authorization URL to the login page, sign in as alice, follow the way back;
    the app's callback URL (its loopback server answers it)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(url, allow_redirects=False) as resp:
            assert resp.status == 302
            login = resp.headers["Location"]
        return_to = parse_qs(urlsplit(login).query)["return_to"][0]
        base = f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"
        async with browser.post(
            f"{base}/auth/browser/login",
            data={"username": "alice", "password": "wonderland", "return_to": return_to},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303, await resp.text()
        async with browser.get(f"{base}{return_to}", allow_redirects=False) as resp:
            callback = resp.headers["Location"]
        async with browser.get(callback) as resp:
            assert resp.status == 200
        return callback


async def test_the_demo_app_and_machine_commands(demo_settings: Callable[[str], Settings]) -> None:
    async with gateway_at(demo_settings, redis=fakeredis.FakeAsyncRedis()) as base:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(DEPLOY / "demo_app.py"),
            "--gateway",
            base,
            "--no-browser",
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
        assert process.stdout is not None
        url = ""
        while not url:
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            assert line, "the demo app exited before printing its URL"
            if line.strip().startswith(f"{base}/auth/authorize?"):
                url = line.strip()
        callback = await sign_in_like_a_browser(url)
        assert "code=gwac_" in callback
        output = (await asyncio.wait_for(process.stdout.read(), 30)).decode()
        assert await process.wait() == 0, output
        assert "the API saw X-User-Id 'alice'" in output
        assert "signed out" in output

        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": aiohttp.encode_basic_auth("demo-batch", "demo-batch-secret")}
            async with http.post(
                f"{base}/auth/token", data={"grant_type": "client_credentials"}, headers=auth
            ) as resp:
                body: dict[str, Any] = await resp.json()
            assert resp.status == 200, body
            claims = jwt.decode(body["access_token"], options={"verify_signature": False})
            assert (claims["sub"], claims["roles"]) == ("client:demo-batch", ["batch"])
