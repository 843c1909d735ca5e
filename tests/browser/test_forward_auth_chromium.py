"""Browser sessions through nginx in forward-auth mode, in a real browser: headless Chromium
against Debian's nginx (deploy/nginx/'s configuration), which asks the gateway about every
request to the demo's "legacy web app" and sends the sign-in pages to the gateway. The
gateway serves on this test's event loop; Selenium's blocking calls run in a thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from deploy.demo_upstream import make_app as legacy_web_app
from gateway.config import Settings
from tests.support.browser_cookies import ACCESS_COOKIE, REFRESH_COOKIE
from tests.support.gateway_client import GatewayFactory
from tests.support.nginx_front import NginxFrontFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT = 30.0  # seconds any one condition may take on a loaded machine
TTL = 3  # access token lifetime, seconds


@pytest.fixture
async def legacy_app() -> AsyncIterator[str]:
    server = TestServer(legacy_web_app(), host="127.0.0.1")
    await server.start_server()
    yield f"127.0.0.1:{server.port}"
    await server.close()


async def on_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition, message=what)


def cookie_store(driver: Any) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in driver.get_cookies()}


def text_of(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def sign_in(driver: Any, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def fire_parallel_requests(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "fire").click()
    wait_for(
        driver,
        lambda d: d.find_element(By.ID, "summary").get_attribute("data-done") == "1",
        "the 20 parallel requests to finish",
    )
    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#statuses li")]


async def test_sign_in_refresh_and_sign_out_through_nginx(
    browser: Any,
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    nginx_front: NginxFrontFactory,
    legacy_app: str,
) -> None:
    from selenium.webdriver.common.by import By

    settings = browser_settings_factory(
        forward_auth={"enabled": True},
        routes=[{"prefix": "/", "upstream": f"http://{legacy_app}"}],
        tokens={
            "issuer": "http://gateway.test",
            "audience": "test-api",
            "access_ttl": TTL,
            "leeway": 0,
        },
    )
    gateway = await gateway_factory(settings)
    front = await nginx_front(f"127.0.0.1:{gateway.server.port}", legacy_app)
    base = front.url

    # a protected page without a session: nginx sends the browser to the gateway's login page
    await on_thread(browser.get, f"{base}/app/")
    assert browser.current_url == f"{base}/auth/browser/login?return_to=%2Fapp%2F"

    # sign in (through nginx to the gateway): back on the page, which nginx served after
    # the gateway's decision, with the identity it vouched for and none of its cookies
    await on_thread(sign_in, browser, "bob", "builder")
    await on_thread(wait_for, browser, lambda d: d.current_url == f"{base}/app/", "back on /app/")
    assert await on_thread(text_of, browser, "x-user-id") == "bob"
    assert await on_thread(text_of, browser, "x-user-roles") == "user,reports"
    assert await on_thread(text_of, browser, "cookie") == "(none)"
    store = await on_thread(cookie_store, browser)
    assert {ACCESS_COOKIE, REFRESH_COOKIE} <= set(store)

    # past the access lifetime: the decision refreshes, nginx passes the new access cookie
    await on_thread(
        wait_for, browser, lambda d: ACCESS_COOKIE not in cookie_store(d), "the cookie to expire"
    )
    await on_thread(browser.refresh)
    assert await on_thread(text_of, browser, "x-user-id") == "bob"
    assert ACCESS_COOKIE in await on_thread(cookie_store, browser)
    await on_thread(
        wait_for, browser, lambda d: ACCESS_COOKIE not in cookie_store(d), "it to expire again"
    )
    assert await on_thread(fire_parallel_requests, browser) == ["200"] * 20

    # sign out: both cookies gone, the next navigation goes to the login page again
    await on_thread(lambda: browser.find_element(By.ID, "signout").click())
    await on_thread(
        wait_for, browser, lambda d: "/auth/browser/login" in d.current_url, "the login page"
    )
    store = await on_thread(cookie_store, browser)
    assert ACCESS_COOKIE not in store and REFRESH_COOKIE not in store
    await on_thread(browser.get, f"{base}/app/")
    assert browser.current_url == f"{base}/auth/browser/login?return_to=%2Fapp%2F"
