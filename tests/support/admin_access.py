"""The admin listener as an operator reaches it: the test admin key and its header, the console's
paths, its CSRF token and sign-in."""

from __future__ import annotations

import re
from typing import Final

from gateway.admin.apikeys import admin_key_hash
from tests.support.gateway_client import GatewayClient

ADMIN_KEY: Final = "gwadm_test-key-0123456789"
ADMIN: Final = {"Authorization": f"Bearer {ADMIN_KEY}"}
ADMIN_KEYS: Final = {"keys": [{"id": "ops", "hash": admin_key_hash(ADMIN_KEY)}]}
CONSOLE: Final = "/admin/console/"
HTML: Final = {"Accept": "text/html,application/xhtml+xml"}  # what a browser navigation sends
HOSTILE: Final = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>&amp;"\''


def csrf_of(page: str) -> str:
    """The CSRF token in a console page's forms."""
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None, "no CSRF field on the page"
    return match.group(1)


async def console_sign_in(admin: GatewayClient, key: str = ADMIN_KEY) -> str:
    """Sign the client's cookie jar into the admin console; returns the CSRF token."""
    resp = await admin.post(f"{CONSOLE}signin", data={"key": key}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    page = await admin.get(CONSOLE, headers=HTML)
    assert page.status == 200
    return csrf_of(await page.text())
