"""Browser sessions in a real browser: headless Chromium against the gateway (in browser
mode, served on this test's event loop) in front of the demo's "legacy web app".

Selenium's calls block, so they run in a thread (`asyncio.to_thread`) while the gateway
serves on the loop. Every wait is on a condition with a generous deadline.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from deploy.demo_upstream import make_app as legacy_web_app
from gateway.config import Settings
from tests.support.browser_cookies import ACCESS_COOKIE, REFRESH_COOKIE
from tests.support.gateway_client import GatewayFactory
from tests.support.repository import DOCS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT = 30.0  # seconds any one condition may take on a loaded machine
TTL = 3  # access token lifetime in these tests, seconds
RECEIVED = web.AppKey("received", list)


@pytest.fixture
async def legacy_app() -> AsyncIterator[tuple[str, list[tuple[str, str]]]]:
    """The demo upstream, recording (method, path) of what reaches it."""
    received: list[tuple[str, str]] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        received.append((request.method, request.path))
        return await handler(request)

    app = legacy_web_app()
    app.middlewares.append(record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}", received
    await server.close()


async def on_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition, message=what)


def screenshot(driver: Any, tmp_path: Path, name: str) -> None:
    """Kept with the test's files; written to docs/ when UPDATE_SCREENSHOTS is set."""
    driver.save_screenshot(str(tmp_path / name))
    if os.environ.get("UPDATE_SCREENSHOTS"):
        driver.save_screenshot(str(DOCS / name))


def cookie_store(driver: Any) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in driver.get_cookies()}


def both_cookies(driver: Any) -> dict[str, dict[str, Any]] | None:
    """The cookie store once it holds both cookies (the short-lived access cookie may have
    expired on a slow machine: reloading the page has the gateway set a new one)."""
    store = cookie_store(driver)
    if ACCESS_COOKIE not in store:
        driver.refresh()
        store = cookie_store(driver)
    return store if {ACCESS_COOKIE, REFRESH_COOKIE} <= set(store) else None


def sign_in(driver: Any, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def text_of(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def fire_parallel_requests(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "fire").click()
    wait_for(
        driver,
        lambda d: d.find_element(By.ID, "summary").get_attribute("data-done") == "1",
        "the 20 parallel requests to finish",
    )
    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#statuses li")]


async def metrics_of(base: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as resp:
        return await resp.text()


def metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_sign_in_refresh_parallel_fetches_devices_and_sign_out(
    browser: Any,
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    legacy_app: tuple[str, list[tuple[str, str]]],
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    upstream_url, received = legacy_app
    settings = browser_settings_factory(
        routes=[{"prefix": "/", "upstream": upstream_url}],
        tokens={
            "issuer": "http://gateway.test",
            "audience": "test-api",
            "access_ttl": TTL,
            "leeway": 0,
        },
    )
    client = await gateway_factory(settings)
    base = str(client.make_url("")).rstrip("/")

    # a protected page without a session: the login page, keeping where we were going
    await on_thread(browser.get, f"{base}/app/")
    assert "/auth/browser/login?return_to=%2Fapp%2F" in browser.current_url
    assert await on_thread(text_of, browser, "username") == ""
    await on_thread(screenshot, browser, tmp_path, "browser-login.png")
    assert ("GET", "/app/") not in received

    # sign in: back on the page, the upstream saw who it is
    await on_thread(sign_in, browser, "bob", "builder")
    await on_thread(wait_for, browser, lambda d: d.current_url == f"{base}/app/", "back on /app/")
    assert await on_thread(text_of, browser, "x-user-id") == "bob"
    assert await on_thread(text_of, browser, "x-user-roles") == "user,reports"
    assert await on_thread(text_of, browser, "cookie") == "(none)"  # ours never reach it

    # scripts cannot read the cookies; the browser keeps both, with their flags
    assert ACCESS_COOKIE not in await on_thread(browser.execute_script, "return document.cookie")
    store = await on_thread(wait_for, browser, both_cookies, "both cookies in the store")
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        assert store[name]["httpOnly"] is True
        assert store[name]["sameSite"] == "Lax"
        assert store[name]["path"] == "/"
        assert not store[name]["domain"].startswith(".")  # host-only
    assert store[REFRESH_COOKIE]["expiry"] - time.time() > 29 * 86400  # the session's life
    assert store[ACCESS_COOKIE]["expiry"] - time.time() <= TTL + 1

    # past the access lifetime: the browser drops the access cookie, the gateway refreshes
    await on_thread(
        wait_for,
        browser,
        lambda d: ACCESS_COOKIE not in cookie_store(d),
        "the access cookie to expire",
    )
    await on_thread(browser.refresh)
    assert await on_thread(text_of, browser, "x-user-id") == "bob"  # served, refreshed
    await on_thread(
        wait_for, browser, lambda d: ACCESS_COOKIE not in cookie_store(d), "it to expire again"
    )
    statuses = await on_thread(fire_parallel_requests, browser)
    assert statuses == ["200"] * 20
    metrics = await metrics_of(base)
    assert metric(metrics, 'gateway_browser_refresh_total{outcome="minted"}') >= 2
    assert "refresh_reused" not in metrics and "reuse_detected" not in metrics

    # your devices: this browser and a phone; sign the phone out
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as phone:
        async with phone.post(
            f"{base}/auth/browser/login",
            json={"username": "bob", "password": "builder", "device_name": "Bob's phone"},
            headers={"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Safari/604.1"},
        ) as resp:
            assert resp.status == 200
            phone_cookies = "; ".join(c.split(";")[0] for c in resp.headers.getall("Set-Cookie"))
        await on_thread(browser.get, f"{base}/auth/browser/devices")
        rows = await on_thread(browser.find_elements, By.CSS_SELECTOR, "tbody tr")
        assert len(rows) == 2
        assert "this device" in rows[0].text and "Headless Chrome on Linux" in rows[0].text
        assert "Bob's phone" in rows[1].text
        await on_thread(screenshot, browser, tmp_path, "browser-devices.png")
        button = await on_thread(rows[1].find_element, By.CSS_SELECTOR, "button")
        await on_thread(button.click)
        await on_thread(
            wait_for,
            browser,
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "tbody tr")) == 1,
            "the phone to leave the list",
        )
        async with phone.get(f"{base}/app/api/x", headers={"Cookie": phone_cookies}) as resp:
            assert resp.status == 401

    # sign out: the cookies are gone, the next navigation goes to the login page
    await on_thread(browser.get, f"{base}/app/")
    await on_thread(lambda: browser.find_element(By.ID, "signout").click())
    await on_thread(
        wait_for, browser, lambda d: "/auth/browser/login" in d.current_url, "login page"
    )
    store = await on_thread(cookie_store, browser)
    assert ACCESS_COOKIE not in store and REFRESH_COOKIE not in store
    await on_thread(browser.get, f"{base}/app/")
    assert "/auth/browser/login?return_to=%2Fapp%2F" in browser.current_url


async def test_another_origin_cannot_act_with_the_cookies(
    browser: Any,
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    legacy_app: tuple[str, list[tuple[str, str]]],
) -> None:
    from selenium.webdriver.common.by import By

    upstream_url, received = legacy_app
    client = await gateway_factory(
        browser_settings_factory(routes=[{"prefix": "/", "upstream": upstream_url}])
    )
    base = str(client.make_url("")).rstrip("/")

    async def attacker(_request: web.Request) -> web.Response:
        return web.Response(
            content_type="text/html",
            text=f"""<!doctype html><title>elsewhere</title>
<form id="transfer" method="post" action="{base}/app/api/transfer">
  <input name="amount" value="1000"><button id="go" type="submit">win a prize</button>
</form>
<script>
window.probe = () => fetch("{base}/app/api/transfer-by-fetch",
  {{method: "POST", credentials: "include", body: "amount=1000"}})
  .then(r => "status " + r.status, e => "failed: " + e.name);
</script>""",
        )

    evil_app = web.Application()
    evil_app.router.add_get("/", attacker)
    evil = TestServer(evil_app, host="127.0.0.1")  # another port: another origin, same site
    await evil.start_server()
    try:
        await on_thread(browser.get, f"{base}/app/")
        await on_thread(sign_in, browser, "alice", "wonderland")
        await on_thread(wait_for, browser, lambda d: d.current_url == f"{base}/app/", "signed in")
        await on_thread(browser.get, f"http://127.0.0.1:{evil.port}/")
        # a credentialed fetch: sent with the cookies (same site), refused by the gateway
        outcome = await on_thread(browser.execute_async_script, "window.probe().then(arguments[0])")
        assert outcome.startswith("failed")  # no CORS answer for the page either
        # a form post: the browser shows the gateway's refusal
        await on_thread(lambda: browser.find_element(By.ID, "go").click())
        await on_thread(wait_for, browser, lambda d: "access_denied" in d.page_source, "the 403")
        assert "/app/api/transfer" in browser.current_url
        assert not [path for _, path in received if "transfer" in path]
        metrics = await metrics_of(base)
        assert metric(metrics, 'gateway_csrf_rejections_total{reason="same-site"}') == 2
        # and the session itself is untouched
        await on_thread(browser.get, f"{base}/app/")
        assert await on_thread(text_of, browser, "x-user-id") == "alice"
    finally:
        await evil.close()
