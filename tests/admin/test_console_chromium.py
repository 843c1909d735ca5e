"""The admin console in headless Chromium, against a gateway on a real redis-server: sign in,
find alice, revoke one of her sessions and see her next request answered 401; a wrong key,
a cross-site form post and a hostile device name.

Screenshots of the session list and the audit trail go to the test's folder; with
CONSOLE_SCREENSHOTS=<folder> (`make screenshots`) to that folder (docs/).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import create_apps
from gateway.config import Settings
from gateway.runtime.runner import GatewayRunner
from tests.support.admin_access import ADMIN_KEY, ADMIN_KEYS, CONSOLE, HOSTILE
from tests.support.jwt_tokens import bearer
from tests.support.oauth_clients import password_client
from tests.support.processes import free_port
from tests.support.recording_upstream import Upstream
from tests.support.redis_servers import RedisServer

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.redis]

WAIT = 20.0  # seconds any page may take on a loaded machine
LAPTOP_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
PHONE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile"


@dataclass
class RunningGateway:
    public: str
    admin: str
    http: aiohttp.ClientSession

    async def login(self, device_id: str, device_name: str, user_agent: str) -> dict[str, Any]:
        body = {
            "username": "alice",
            "password": "wonderland",
            "device_id": device_id,
            "device_name": device_name,
            "client_id": "web-app",
        }
        headers = {"User-Agent": user_agent}
        async with self.http.post(f"{self.public}/auth/login", json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
            result: dict[str, Any] = await r.json()
            return result

    async def status_for(self, token: str) -> int:
        async with self.http.get(f"{self.public}/api/me", headers=bearer(token)) as resp:
            await resp.read()
            return resp.status


@pytest.fixture
async def running(
    settings_factory: Callable[..., Settings],
    users_file: Path,
    redis_server: RedisServer,
    upstream: Upstream,
) -> AsyncIterator[RunningGateway]:
    """The gateway's two listeners on free loopback ports, as `gateway serve` runs them."""
    settings = settings_factory(
        auth={"users_file": str(users_file)},
        admin=ADMIN_KEYS,
        redis={"url": redis_server.url},
        clients=[password_client("web-app")],  # the client its logins name
        # a pool whose second target never answers: the status page shows it out of rotation
        upstreams={
            "legacy": {
                "targets": [upstream.url, f"http://127.0.0.1:{free_port()}"],
                "health": {"path": "/", "interval": 1, "timeout": 0.5},
            }
        },
    )
    public_app, admin_app = create_apps(settings)
    public = GatewayRunner(public_app, access_log=None)
    admin = GatewayRunner(admin_app, access_log=None)
    await public.setup()
    await admin.setup()
    ports = free_port(), free_port()
    await web.TCPSite(public, "127.0.0.1", ports[0]).start()
    await web.TCPSite(admin, "127.0.0.1", ports[1]).start()
    try:
        async with aiohttp.ClientSession() as http:
            yield RunningGateway(
                f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}", http
            )
    finally:
        await admin.cleanup()
        await public.cleanup()


def wait_until(driver: Any, condition: Callable[[Any], Any]) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(condition)


def by_id(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return wait_until(driver, lambda d: d.find_element(By.ID, element_id))


def sign_in(driver: Any, admin: str, key: str) -> None:
    """Open the console (redirected to the form), type the key, submit with Enter."""
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{admin}{CONSOLE}")
    wait_until(driver, lambda d: d.current_url.endswith("/signin"))
    field = by_id(driver, "key")
    assert driver.switch_to.active_element == field  # focused: type right away
    field.send_keys(key + Keys.ENTER)


def screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert driver.save_screenshot(str(path))
    return path


async def test_a_wrong_key_is_refused(browser: Any, running: RunningGateway) -> None:
    def script() -> tuple[str, str]:
        sign_in(browser, running.admin, "gwadm_not-the-key")
        error = by_id(browser, "signin-error").text
        browser.get(f"{running.admin}{CONSOLE}users?sub=alice")  # still signed out
        wait_until(browser, lambda d: d.current_url.endswith("/signin"))
        return error, browser.current_url

    error, url = await asyncio.to_thread(script)
    assert error == "invalid admin API key"
    assert url == f"{running.admin}{CONSOLE}signin"


async def test_sign_in_find_alice_and_revoke_one_session(
    browser: Any, running: RunningGateway, tmp_path: Path
) -> None:
    laptop = await running.login("laptop-7f3a", "Alice's laptop", LAPTOP_UA)
    phone = await running.login("phone-19c2", "Alice's phone", PHONE_UA)
    assert await running.status_for(laptop["access_token"]) == 200

    def find_alice() -> list[str]:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        sign_in(browser, running.admin, ADMIN_KEY)
        assert by_id(browser, "key-id").text == "ops"
        by_id(browser, "view-size")
        screenshot(browser, tmp_path, "console-status.png")
        browser.find_element(By.LINK_TEXT, "Users").click()
        by_id(browser, "sub").send_keys("alice" + Keys.ENTER)
        rows = wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#sessions tbody tr"))
        screenshot(browser, tmp_path, "console-sessions.png")
        return [row.get_attribute("data-sid") for row in rows]

    sids = await asyncio.to_thread(find_alice)
    assert set(sids) == {laptop["session_id"], phone["session_id"]}

    def revoke_laptop() -> str:
        from selenium.webdriver.common.by import By

        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-sid="{laptop["session_id"]}"]')
        row.find_element(By.LINK_TEXT, "Revoke…").click()
        assert by_id(browser, "confirm-sub").text == "alice"  # confirmation first
        browser.find_element(By.ID, "confirm").click()
        notice: str = by_id(browser, "notice").text
        return notice

    notice = await asyncio.to_thread(revoke_laptop)
    assert notice.startswith(f"Session {laptop['session_id']} revoked")
    assert await running.status_for(laptop["access_token"]) == 401
    assert await running.status_for(phone["access_token"]) == 200
    # One more through the admin API: the trail shows both, under the same key id.
    async with running.http.post(
        f"{running.admin}/admin/users/bob/revoke", headers=bearer(ADMIN_KEY)
    ) as resp:
        assert resp.status == 200

    def audit() -> list[str]:
        from selenium.webdriver.common.by import By

        browser.find_element(By.LINK_TEXT, "Audit trail").click()
        rows = wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#audit tbody tr"))
        screenshot(browser, tmp_path, "console-audit.png")
        return [row.text for row in rows]

    rows = await asyncio.to_thread(audit)
    assert "admin-key:ops revoke_user bob" in rows[0]
    assert "admin-key:ops revoke_session " + laptop["session_id"] in rows[1]
    assert "console_sign_in" in rows[-1]


async def test_a_cross_site_form_post_to_a_console_action_is_refused(
    browser: Any, running: RunningGateway
) -> None:
    phone = await running.login("phone-19c2", "Alice's phone", PHONE_UA)
    # Another origin on the same host (same-site: a SameSite=Strict cookie is still sent).
    attack = f"""<!doctype html><title>win a prize</title>
<form id=f method=post action="{running.admin}{CONSOLE}users/revoke">
<input name=sub value=alice><input name=csrf value=guessed></form>
<script>document.getElementById("f").submit()</script>"""

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=attack, content_type="text/html")

    evil = web.Application()
    evil.router.add_get("/", page)
    server = TestServer(evil, host="127.0.0.1")
    await server.start_server()
    try:

        def script() -> str:
            sign_in(browser, running.admin, ADMIN_KEY)
            by_id(browser, "key-id")
            browser.get(f"http://127.0.0.1:{server.port}/")
            wait_until(browser, lambda d: d.current_url.endswith("/users/revoke"))
            text: str = by_id(browser, "error-description").text
            return text

        refused = await asyncio.to_thread(script)
    finally:
        await server.close()
    assert refused in ("cross-site request refused", "cross-origin request refused")
    assert await running.status_for(phone["access_token"]) == 200


async def test_a_hostile_device_name_renders_as_text(browser: Any, running: RunningGateway) -> None:
    await running.login("evil-device", HOSTILE, HOSTILE)

    def script() -> tuple[str, Any, int]:
        from selenium.webdriver.common.by import By

        sign_in(browser, running.admin, ADMIN_KEY)
        by_id(browser, "key-id")
        browser.get(f"{running.admin}{CONSOLE}users?sub=alice")
        name = by_id(browser, "sessions").find_element(By.CLASS_NAME, "device-name").text
        pwned = browser.execute_script("return window.pwned === undefined ? null : window.pwned")
        images = len(browser.find_elements(By.CSS_SELECTOR, "#sessions img, #sessions script"))
        return name, pwned, images

    name, pwned, images = await asyncio.to_thread(script)
    assert name == HOSTILE
    assert pwned is None
    assert images == 0
