"""Forward-auth decisions for browsers (SPEC §9, §13): the cookies authenticate as inline,
a transparent refresh sets one cookie (the access cookie), the upstream's Cookie header comes
without the gateway's cookies, cross-site requests are refused, and a navigation without a
session is sent to the login page in the form the ingress understands."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import fakeredis
import pytest

from gateway.config import Settings
from tests.support.browser_cookies import ACCESS_COOKIE, APP_ORIGIN, browser_login
from tests.support.clock import FakeClock
from tests.support.gateway_client import GatewayClient, GatewayFactory
from tests.support.recording_upstream import Upstream

NAVIGATION = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Accept": "text/html"}
LOGIN = "/auth/browser/login?return_to=%2Fapp%2Fpage%3Fx%3D1"


def nginx(uri: str, method: str = "GET") -> dict[str, str]:
    return {"X-Original-URI": uri, "X-Original-Method": method}


def traefik(uri: str, method: str = "GET") -> dict[str, str]:
    return {"X-Forwarded-Uri": uri, "X-Forwarded-Method": method}


@pytest.fixture
async def decider(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    fake_server: fakeredis.FakeServer,
    clock: FakeClock,
) -> GatewayClient:
    settings = browser_settings_factory(forward_auth={"enabled": True})
    redis = fakeredis.FakeAsyncRedis(server=fake_server)
    return await gateway_factory(
        settings, redis=redis, clock=clock, cookie_jar=aiohttp.DummyCookieJar()
    )


async def test_cookies_are_admitted_and_the_upstream_cookie_header_is_given(
    decider: GatewayClient, upstream: Upstream
) -> None:
    jar, body = await browser_login(decider)
    resp = await decider.get(
        "/auth/verify", headers={**nginx("/app/page"), **jar.header('theme="dark"', "a=1")}
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-User-Id"] == "alice"
    assert resp.headers["X-Session-Id"] == body["session_id"]
    assert resp.headers["X-Upstream-Cookie"] == 'theme="dark"; a=1'
    assert "Set-Cookie" not in resp.headers
    # only the gateway's cookies: the upstream gets an empty one (no Cookie at all)
    resp = await decider.get("/auth/verify", headers={**nginx("/app/page"), **jar.header()})
    assert resp.headers["X-Upstream-Cookie"] == ""
    # no Cookie at all: no X-Upstream-Cookie
    resp = await decider.get("/auth/verify", headers=nginx("/public/x"))
    assert "X-Upstream-Cookie" not in resp.headers
    assert upstream.received == []


async def test_a_transparent_refresh_sets_the_access_cookie_only(
    decider: GatewayClient, clock: FakeClock
) -> None:
    jar, body = await browser_login(decider)
    old_access = jar.cookies[ACCESS_COOKIE]
    clock.now += 900 + 31  # past exp and the leeway
    resp = await decider.get("/auth/verify", headers={**nginx("/app/page"), **jar.header()})
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-Session-Id"] == body["session_id"]
    cookies = resp.headers.getall("Set-Cookie")
    assert [c.split("=", 1)[0] for c in cookies] == [ACCESS_COOKIE]
    assert resp.headers["Cache-Control"] == "private, no-store"
    jar.update(resp)
    assert jar.cookies[ACCESS_COOKIE] != old_access
    again = await decider.get("/auth/verify", headers={**nginx("/app/page"), **jar.header()})
    assert again.status == 200 and "Set-Cookie" not in again.headers


async def test_a_navigation_without_a_session_is_sent_to_the_login_page(
    decider: GatewayClient,
) -> None:
    # nginx: a 401 naming the login page (its error_page sends the browser there)
    resp = await decider.get("/auth/verify", headers={**nginx("/app/page?x=1"), **NAVIGATION})
    assert resp.status == 401
    assert resp.headers["X-Gateway-Login"] == LOGIN
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="gateway"'
    assert await resp.json() == {
        "error": "invalid_request",
        "error_description": "sign in to continue",
    }
    # Traefik and Envoy pass the answer to the browser: the 302 itself
    resp = await decider.get(
        "/auth/verify", headers={**traefik("/app/page?x=1"), **NAVIGATION}, allow_redirects=False
    )
    assert resp.status == 302
    assert resp.headers["Location"] == LOGIN
    resp = await decider.get("/auth/verify/app/page?x=1", headers=NAVIGATION, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, LOGIN)
    # not a navigation: the JSON 401
    resp = await decider.get("/auth/verify", headers=nginx("/app/page"))
    assert resp.status == 401 and "X-Gateway-Login" not in resp.headers


async def test_an_ended_session_clears_one_cookie_at_most(decider: GatewayClient) -> None:
    jar, _ = await browser_login(decider)
    await decider.post("/auth/browser/logout", headers={**jar.header(), "Origin": APP_ORIGIN})
    resp = await decider.get("/auth/verify", headers={**nginx("/app/page"), **jar.header()})
    assert resp.status == 401
    assert len(resp.headers.getall("Set-Cookie")) == 1
    assert resp.headers["Set-Cookie"].startswith(f"{ACCESS_COOKIE}=; Max-Age=0")


async def test_cross_site_cookie_requests_are_refused_as_inline(
    decider: GatewayClient, upstream: Upstream
) -> None:
    jar, _ = await browser_login(decider)
    cross = {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}
    for method in ("POST", "DELETE"):
        inline = await decider.request(method, "/app/orders", headers={**jar.header(), **cross})
        assert inline.status == 403
        decided = await decider.get(
            "/auth/verify", headers={**nginx("/app/orders", method), **jar.header(), **cross}
        )
        assert decided.status == 403
        assert await decided.json() == await inline.json()
        assert (await decided.json())["error"] == "access_denied"
    # the same request from the app's own origin passes
    same = {"Sec-Fetch-Site": "same-origin"}
    resp = await decider.get(
        "/auth/verify", headers={**nginx("/app/orders", "POST"), **jar.header(), **same}
    )
    assert resp.status == 200
    assert upstream.received == []
