"""The browser harness itself: Debian's Chromium renders a page the tests serve on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_chromium_renders_a_loopback_page(browser: Any) -> None:
    async def page(_request: web.Request) -> web.Response:
        return web.Response(text="<title>t</title><h1 id=x>hello</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = f"http://127.0.0.1:{server.port}/"
        # Selenium's calls block: run them off the event loop that serves the page.
        await asyncio.to_thread(browser.get, url)
        text = await asyncio.to_thread(lambda: browser.find_element("id", "x").text)
        assert text == "hello"
    finally:
        await server.close()
