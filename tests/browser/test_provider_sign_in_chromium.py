"""Sign-in at a real OpenID provider in a real browser: Debian's Chromium, driven by Selenium,
against the demo provider (deploy/demo_op.py: oidc-provider-mock from PyPI, in its own
process) and two gateway instances on one real redis-server, in front of the demo's "legacy
web app". Pick the provider on the login page, sign in on the provider's own form, land back
with the identity the upstream sees; transparent refresh; silent re-login once the session's
cookies are gone; the login page once the provider's session has ended; logout through the
provider's end-session page; a back-channel logout refused on the second instance too.

Screenshots go to the test's folder; with SIGN_IN_SCREENSHOTS=<folder> (`make screenshots`)
to that folder (docs/).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from deploy.demo_upstream import make_app as legacy_web_app
from gateway.app import create_app
from gateway.config import Settings
from gateway.runtime.runner import GatewayRunner
from tests.support.browser_cookies import ACCESS_COOKIE, REFRESH_COOKIE
from tests.support.gateway_settings import on_redis
from tests.support.processes import clean_env, free_port, stop_processes, wait_for_port
from tests.support.redis_servers import RedisServer
from tests.support.repository import DEPLOY
from tests.support.waiting import eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.redis]

WAIT = 30.0  # seconds any one condition may take on a loaded machine
TTL = 3  # access token lifetime, seconds
CLIENT_ID = "gateway-demo"


@pytest.fixture
async def legacy_app() -> AsyncIterator[str]:
    server = TestServer(legacy_web_app(), host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


@pytest.fixture
def ports() -> tuple[int, int, int]:
    """The provider's and the two gateway instances' ports."""
    return free_port(), free_port(), free_port()


@pytest.fixture
def demo_op(tmp_path: Path, ports: tuple[int, int, int]) -> Iterator[str]:
    """deploy/demo_op.py in its own process; it posts back-channel logouts to instance one."""
    op, first, _ = ports
    backchannel = f"{CLIENT_ID}=http://127.0.0.1:{first}/auth/backchannel-logout"
    with (tmp_path / "demo-op.log").open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                str(DEPLOY / "demo_op.py"),
                *("--port", str(op), "--backchannel-logout", backchannel),
            ],
            env=clean_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(op, process)
        yield f"http://127.0.0.1:{op}"
    finally:
        stop_processes([process])


@pytest.fixture
async def instances(
    browser_settings_factory: Callable[..., Settings],
    redis_server: RedisServer,
    demo_op: str,
    legacy_app: str,
    ports: tuple[int, int, int],
    tmp_path: Path,
) -> AsyncIterator[tuple[str, str]]:
    """Two gateway instances (one configuration, one Redis) on their own ports."""
    secret = tmp_path / "demo-op-secret"
    secret.write_text("demo-op-client-secret\n")
    _, first, second = ports
    settings = browser_settings_factory(
        browser={"public_url": f"http://127.0.0.1:{first}"},
        routes=[{"prefix": "/", "upstream": legacy_app}],
        tokens={"issuer": "http://gateway.test", "audience": "test-api", "access_ttl": TTL},
        federation={
            "providers": [
                {
                    "name": "demo-op",
                    "issuer": demo_op,
                    "discovery": True,
                    "audiences": [CLIENT_ID],
                    "roles": {
                        "default": ["user"],
                        "from_claim": "groups",
                        "map": {"staff": ["reports"]},
                    },
                    "copy_claims": ["email"],
                    "login": {
                        "client_id": CLIENT_ID,
                        "client_secret_file": str(secret),
                        "display_name": "Demo OP",
                    },
                }
            ]
        },
    )
    settings = on_redis(settings, redis_server.url)
    runners = []
    for port in (first, second):
        runner = GatewayRunner(create_app(settings), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    try:
        yield f"http://127.0.0.1:{first}", f"http://127.0.0.1:{second}"
    finally:
        for runner in runners:
            await runner.cleanup()


async def on_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition, message=what)


def screenshot(driver: Any, tmp_path: Path, name: str) -> None:
    folder = Path(os.environ.get("SIGN_IN_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(folder / name))


def text_of(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def click(driver: Any, css: str) -> None:
    from selenium.webdriver.common.by import By

    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, css), f"{css} on the page")
    driver.find_element(By.CSS_SELECTOR, css).click()


def cookie_names(driver: Any) -> set[str]:
    return {c["name"] for c in driver.get_cookies()}


def cookie_header(driver: Any) -> str:
    return "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())


async def metric(base: str, series: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def api_status(base: str, cookies: str) -> int:
    headers = {"Cookie": cookies, "Accept": "application/json"}
    jar = aiohttp.DummyCookieJar()
    async with (
        aiohttp.ClientSession(cookie_jar=jar) as http,
        http.get(f"{base}/app/api/ping", headers=headers) as resp,
    ):
        return resp.status


async def test_sign_in_at_the_provider_in_chromium(
    browser: Any, instances: tuple[str, str], demo_op: str, tmp_path: Path
) -> None:
    base, second = instances

    def sign_in_at_the_provider(as_user: str = "ada") -> None:
        click(browser, "#provider-demo-op")
        wait_for(browser, lambda d: d.current_url.startswith(demo_op), "the provider's form")
        click(browser, f"button[name=sub][value={as_user}]")
        wait_for(browser, lambda d: d.current_url == f"{base}/app/", "back on /app/")

    # the login page offers the provider beside the password form
    await on_thread(browser.get, f"{base}/app/")
    assert "/auth/browser/login?return_to=%2Fapp%2F" in browser.current_url
    assert await on_thread(text_of, browser, "provider-demo-op") == "Sign in with Demo OP"
    await on_thread(screenshot, browser, tmp_path, "sign-in-providers.png")

    # the provider's own form, then back with the identity the upstream sees
    await on_thread(click, browser, "#provider-demo-op")
    await on_thread(wait_for, browser, lambda d: d.current_url.startswith(demo_op), "provider")
    assert "code_challenge_method=S256" in browser.current_url
    await on_thread(screenshot, browser, tmp_path, "sign-in-provider-form.png")
    await on_thread(click, browser, "button[name=sub][value=ada]")
    await on_thread(wait_for, browser, lambda d: d.current_url == f"{base}/app/", "on /app/")
    assert await on_thread(text_of, browser, "x-user-id") == "demo-op:ada"
    assert await on_thread(text_of, browser, "x-user-roles") == "user,reports"
    await on_thread(screenshot, browser, tmp_path, "sign-in-landed.png")
    assert {ACCESS_COOKIE, REFRESH_COOKIE, "gw_idp"} <= await on_thread(cookie_names, browser)

    # past the access lifetime: refreshed transparently
    await on_thread(
        wait_for, browser, lambda d: ACCESS_COOKIE not in cookie_names(d), "access cookie gone"
    )
    await on_thread(browser.refresh)
    assert await on_thread(text_of, browser, "x-user-id") == "demo-op:ada"

    # the session's cookies gone: a navigation comes back signed in, with no form
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        await on_thread(browser.delete_cookie, name)
    await on_thread(browser.get, f"{base}/app/")
    await on_thread(wait_for, browser, lambda d: d.current_url == f"{base}/app/", "silently")
    assert await on_thread(text_of, browser, "x-user-id") == "demo-op:ada"
    silent = 'gateway_provider_logins_total{event="silent_completed",provider="demo-op"}'
    assert await metric(base, silent) == 1

    # the provider's session ends (signed out at the provider): it tells the gateway over
    # the back channel, and the next navigation, silent first, ends on the login page
    await on_thread(browser.get, f"{demo_op}/oauth2/end_session")
    await on_thread(click, browser, "form[action='/oauth2/end_session/confirm'] button")
    await on_thread(wait_for, browser, lambda d: "Session" in d.page_source, "ended there")
    ended = 'gateway_backchannel_logouts_total{outcome="ended",provider="demo-op"}'
    await eventually(lambda: _metric_is(base, ended, 1), WAIT, what="the back-channel logout")
    await on_thread(browser.get, f"{base}/app/")
    await on_thread(
        wait_for, browser, lambda d: "/auth/browser/login?return_to=" in d.current_url, "login"
    )
    needs_user = 'gateway_provider_logins_total{event="silent_needs_user",provider="demo-op"}'
    assert await metric(base, needs_user) == 1

    # logout reaches the provider's end-session page, then the login page
    await on_thread(sign_in_at_the_provider)
    await on_thread(click, browser, "#signout")
    await on_thread(
        wait_for,
        browser,
        lambda d: d.current_url.startswith(f"{demo_op}/oauth2/end_session"),
        "the provider's end-session page",
    )
    assert "id_token_hint=" in browser.current_url
    await on_thread(click, browser, "form[action='/oauth2/end_session/confirm'] button")
    await on_thread(
        wait_for, browser, lambda d: d.current_url == f"{base}/auth/browser/login", "login page"
    )
    assert not {ACCESS_COOKIE, REFRESH_COOKIE, "gw_idp"} & await on_thread(cookie_names, browser)

    # a back-channel logout token for the session: the second instance refuses it too
    await on_thread(browser.get, f"{base}/app/")
    await on_thread(sign_in_at_the_provider)
    cookies = await on_thread(cookie_header, browser)
    assert await api_status(second, cookies) == 200
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{demo_op}/demo/logout-token", data={"sub": "ada", "aud": CLIENT_ID}
        ) as resp:
            token = (await resp.json())["logout_token"]
        async with http.post(
            f"{base}/auth/backchannel-logout", data={"logout_token": token}
        ) as resp:
            assert resp.status == 200, await resp.text()

    async def refused_on_the_second() -> bool:
        return await api_status(second, cookies) == 401

    await eventually(refused_on_the_second, 5, what="the second instance answers 401")


async def _metric_is(base: str, series: str, value: float) -> bool:
    return await metric(base, series) == value
