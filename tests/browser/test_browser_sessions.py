"""Browser sessions through the running gateway: sign-in, cookies, transparent refresh,
what the upstream sees, logout, the session endpoint and explicit refresh (SPEC §9)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis

from gateway.config import Settings
from tests.support.browser_cookies import ACCESS_COOKIE, REFRESH_COOKIE, CookieJar, browser_login
from tests.support.clock import FakeClock
from tests.support.gateway_client import GatewayClient, GatewayFactory, login
from tests.support.identity_provider import ID_TOKEN_TYPE, IDP_CLIENT_ID, FakeIdentityProvider
from tests.support.jwt_tokens import bearer
from tests.support.recording_upstream import Upstream

IDENTITY = {"sub", "roles", "session_id", "session_expires_at", "access_expires_at"}


async def test_json_login_sets_both_cookies_and_answers_the_identity_without_tokens(
    browser_client: GatewayClient, clock: FakeClock
) -> None:
    resp = await browser_client.post(
        "/auth/browser/login", json={"username": "bob", "password": "builder"}
    )
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == IDENTITY
    assert body["sub"] == "bob" and body["roles"] == ["user", "reports"]
    assert body["access_expires_at"] == int(clock.now) + 900
    assert body["session_expires_at"] in range(
        int(clock.now) + 30 * 86400 - 1, int(clock.now) + 30 * 86400 + 1
    )
    cookies = resp.headers.getall("Set-Cookie")
    assert [c.split("=", 1)[0] for c in cookies] == [ACCESS_COOKIE, REFRESH_COOKIE]
    assert cookies[0].endswith("; Max-Age=900; Path=/; HttpOnly; SameSite=Lax")
    assert f"; Max-Age={30 * 86400}; " in cookies[1]
    assert resp.headers["Cache-Control"] == "private, no-store"
    text = await resp.text()
    for cookie in cookies:  # the body holds no token, the cookies no readable one
        value = cookie.split(";")[0].split("=", 1)[1]
        assert value not in text
        assert not value.startswith(("eyJ", "gwrt_"))


async def test_form_login_redirects_to_return_to_with_the_cookies(
    browser_client: GatewayClient,
) -> None:
    resp = await browser_client.post(
        "/auth/browser/login",
        data={"username": "alice", "password": "wonderland", "return_to": "/app/orders?x=1"},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/app/orders?x=1"
    assert len(resp.headers.getall("Set-Cookie")) == 2


async def test_cookies_authenticate_proxied_requests_and_never_reach_the_upstream(
    browser_client: GatewayClient, upstream: Upstream
) -> None:
    jar, body = await browser_login(browser_client)
    sent = jar.header('theme="dark mode"', "a=1")
    resp = await browser_client.get("/api/orders", headers=sent)
    assert resp.status == 200, await resp.text()
    seen = upstream.headers_of()
    assert seen["x-user-id"] == ["alice"]
    assert seen["x-session-id"] == [body["session_id"]]
    assert seen["cookie"] == ['theme="dark mode"; a=1']
    assert "Set-Cookie" not in resp.headers  # a valid access cookie: nothing to renew


async def test_expired_access_cookie_is_refreshed_and_the_request_served(
    browser_client: GatewayClient, upstream: Upstream, clock: FakeClock
) -> None:
    jar, body = await browser_login(browser_client)
    old_access = jar.cookies[ACCESS_COOKIE]
    clock.now += 900 + 31  # past exp and the leeway
    resp = await browser_client.get("/api/orders", headers=jar.header())
    assert resp.status == 200, await resp.text()
    assert upstream.headers_of()["x-session-id"] == [body["session_id"]]
    assert [c.split("=", 1)[0] for c in resp.headers.getall("Set-Cookie")] == [ACCESS_COOKIE]
    assert resp.headers["Cache-Control"] == "private, no-store"
    jar.update(resp)
    assert jar.cookies[ACCESS_COOKIE] != old_access
    assert jar.attributes[ACCESS_COOKIE].startswith("Max-Age=900;")
    again = await browser_client.get("/api/orders", headers=jar.header())
    assert again.status == 200 and "Set-Cookie" not in again.headers


async def test_parallel_requests_on_an_expired_access_cookie_all_succeed(
    browser_client: GatewayClient, clock: FakeClock
) -> None:
    jar, _ = await browser_login(browser_client)
    clock.now += 2000
    del jar.cookies[ACCESS_COOKIE]  # the browser dropped it (Max-Age)
    answers = await asyncio.gather(
        *(browser_client.get(f"/api/item/{i}", headers=jar.header()) for i in range(20))
    )
    assert [r.status for r in answers] == [200] * 20
    metrics = await (await browser_client.get("/metrics")).text()
    assert "reuse" not in metrics.split("gateway_browser_refresh_total", 1)[1].split("# HELP")[0]
    # the session is alive: the refresh cookie still works afterwards
    clock.now += 2000
    assert (await browser_client.get("/api", headers=jar.header())).status == 200


async def test_logout_ends_the_session_everywhere_and_clears_both_cookies(
    browser_client: GatewayClient, clock: FakeClock
) -> None:
    jar, _ = await browser_login(browser_client)
    before = dict(jar.cookies)
    resp = await browser_client.post("/auth/browser/logout", headers=jar.header())
    assert resp.status == 204
    cleared = resp.headers.getall("Set-Cookie")
    assert cleared == [
        f"{ACCESS_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax",
        f"{REFRESH_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax",
    ]
    # the access cookie is revoked on this instance at once ...
    resp = await browser_client.get(
        "/api", headers={"Cookie": f"{ACCESS_COOKIE}={before[ACCESS_COOKIE]}"}
    )
    assert resp.status == 401
    # ... and replaying the refresh cookie is a plain 401, no reuse alarm
    clock.now += 2000
    replay = {"Cookie": f"{REFRESH_COOKIE}={before[REFRESH_COOKIE]}"}
    resp = await browser_client.get("/api", headers=replay)
    assert resp.status == 401
    metrics = await (await browser_client.get("/metrics")).text()
    assert "reused" not in metrics


async def test_redis_down_during_a_transparent_refresh_is_503_and_keeps_the_cookies(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    fake_server: fakeredis.FakeServer,
    clock: FakeClock,
    upstream: Upstream,
) -> None:
    redis = fakeredis.FakeAsyncRedis(server=fake_server)
    client = await gateway_factory(browser_settings_factory(), redis=redis, clock=clock)
    jar, _ = await browser_login(client)
    client.session.cookie_jar.clear()
    clock.now += 2000
    fake_server.connected = False
    received = len(upstream.received)
    resp = await client.get("/api", headers=jar.header())
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert "Set-Cookie" not in resp.headers
    assert (await resp.json())["error"] == "temporarily_unavailable"
    assert len(upstream.received) == received
    fake_server.connected = True
    client.session.cookie_jar.clear()
    assert (await client.get("/api", headers=jar.header())).status == 200


async def test_bearer_and_cookies_together_the_header_decides(
    browser_client: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    jar, _ = await browser_login(browser_client)
    token = (await login(browser_client, user="bob", password="builder"))["access_token"]
    resp = await browser_client.get("/api", headers={**bearer(token), **jar.header()})
    assert resp.status == 200
    seen = upstream.headers_of()
    assert seen["x-user-id"] == ["bob"]
    assert "cookie" not in seen  # only our cookies were sent: none is left
    # a bad bearer is 401 even with good cookies: no fallback
    resp = await browser_client.get("/api", headers={**bearer("garbage"), **jar.header()})
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_token"


async def test_settings_used_here_are_valid(
    browser_settings_factory: Callable[..., Settings],
) -> None:
    settings: Settings = browser_settings_factory()
    assert settings.browser.enabled


# ---- the session endpoint and explicit refresh ---------------------------------------------


async def test_session_endpoint_says_who_and_until_when_and_refreshes_when_needed(
    browser_client: GatewayClient, clock: FakeClock
) -> None:
    jar, body = await browser_login(browser_client)
    resp = await browser_client.get("/auth/browser/session", headers=jar.header())
    assert resp.status == 200
    assert await resp.json() == body
    assert "Set-Cookie" not in resp.headers
    clock.now += 2000
    resp = await browser_client.get("/auth/browser/session", headers=jar.header())
    assert resp.status == 200
    now = await resp.json()
    assert now["session_expires_at"] == body["session_expires_at"]
    assert now["access_expires_at"] == int(clock.now) + 900
    assert [c.split("=")[0] for c in resp.headers.getall("Set-Cookie")] == [ACCESS_COOKIE]
    resp = await browser_client.get("/auth/browser/session")
    assert resp.status == 401 and "Set-Cookie" not in resp.headers


async def test_explicit_refresh_rotates_and_a_lost_answer_costs_nothing(
    browser_client: GatewayClient, clock: FakeClock
) -> None:
    jar, _ = await browser_login(browser_client)
    first = await browser_client.post("/auth/browser/refresh", headers=jar.header())
    assert first.status == 204
    assert [c.split("=")[0] for c in first.headers.getall("Set-Cookie")] == [
        ACCESS_COOKIE,
        REFRESH_COOKIE,
    ]
    assert f"; Max-Age={30 * 86400}; " in first.headers.getall("Set-Cookie")[1]
    # that answer never arrived: the old cookie still works, for requests and for refresh
    clock.now += 2000
    del jar.cookies[ACCESS_COOKIE]
    assert (await browser_client.get("/api", headers=jar.header())).status == 200
    clock.now += 3600  # long after any grace window
    again = await browser_client.post("/auth/browser/refresh", headers=jar.header())
    assert again.status == 204
    delivered = CookieJar()
    delivered.update(again)
    assert (await browser_client.get("/api", headers=delivered.header())).status == 200
    metrics = await (await browser_client.get("/metrics")).text()
    assert 'gateway_browser_refresh_total{outcome="rotated"} 1.0' in metrics
    assert 'gateway_browser_refresh_total{outcome="reissued"} 1.0' in metrics
    assert "reused" not in metrics


async def test_explicit_refresh_refusals(browser_client: GatewayClient) -> None:
    resp = await browser_client.post("/auth/browser/refresh")
    assert resp.status == 401 and "Set-Cookie" not in resp.headers
    resp = await browser_client.post(
        "/auth/browser/refresh", headers={"Cookie": f"{REFRESH_COOKIE}=x"}
    )
    assert resp.status == 401 and len(resp.headers.getall("Set-Cookie")) == 2
    jar, _ = await browser_login(browser_client)
    resp = await browser_client.post(
        "/auth/browser/refresh", headers={**jar.header(), "Sec-Fetch-Site": "cross-site"}
    )
    assert resp.status == 403
    assert (await browser_client.get("/auth/browser/refresh")).status == 405


async def test_auth_refresh_takes_the_refresh_cookie_and_never_answers_a_token(
    browser_client: GatewayClient,
) -> None:
    jar, _ = await browser_login(browser_client)
    resp = await browser_client.post("/auth/refresh", headers=jar.header())
    assert resp.status == 204
    assert await resp.read() == b""
    assert len(resp.headers.getall("Set-Cookie")) == 2
    # a body still means the bearer grant (the cookie plays no part)
    resp = await browser_client.post(
        "/auth/refresh", json={"refresh_token": "x"}, headers=jar.header()
    )
    assert resp.status == 400


# ---- the token service's own endpoints with cookies ----------------------------------------


async def test_auth_sessions_accept_the_cookies(browser_client: GatewayClient) -> None:
    jar, body = await browser_login(browser_client)
    other, other_body = await browser_login(browser_client)
    resp = await browser_client.get("/auth/sessions", headers=jar.header())
    assert resp.status == 200
    sessions = {s["sid"]: s for s in (await resp.json())["sessions"]}
    assert set(sessions) == {body["session_id"], other_body["session_id"]}
    assert sessions[body["session_id"]]["current"] is True
    assert sessions[body["session_id"]]["device_name"] == "Browser"  # from aiohttp's User-Agent
    cross = {**jar.header(), "Sec-Fetch-Site": "cross-site"}
    resp = await browser_client.delete(f"/auth/sessions/{other_body['session_id']}", headers=cross)
    assert resp.status == 403
    resp = await browser_client.delete(
        f"/auth/sessions/{other_body['session_id']}", headers=jar.header()
    )
    assert resp.status == 204
    assert (await browser_client.get("/api", headers=other.header())).status == 401


# ---- signing in and out --------------------------------------------------------------------


async def test_form_login_failures_render_the_page_again(browser_client: GatewayClient) -> None:
    resp = await browser_client.post(
        "/auth/browser/login", data={"username": "alice", "password": "nope", "return_to": "/x"}
    )
    assert resp.status == 401 and resp.content_type == "text/html"
    text = await resp.text()
    assert "Invalid username or password." in text and 'value="alice"' in text
    assert "Set-Cookie" not in resp.headers
    resp = await browser_client.post("/auth/browser/login", data={"username": "alice"})
    assert resp.status == 400 and "Enter your username and password." in await resp.text()


async def test_json_login_failures_are_json(browser_client: GatewayClient) -> None:
    resp = await browser_client.post(
        "/auth/browser/login", json={"username": "alice", "password": "nope"}
    )
    assert resp.status == 401
    assert await resp.json() == {
        "error": "invalid_grant",
        "error_description": "invalid username or password",
    }
    resp = await browser_client.post("/auth/browser/login", json={"password": 5})
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"
    resp = await browser_client.post("/auth/browser/login", json={})
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"


async def test_identity_provider_tokens_need_a_configured_provider(
    browser_client: GatewayClient,
) -> None:
    resp = await browser_client.post(
        "/auth/browser/login",
        json={
            "subject_token": "eyJ.x.y",
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        },
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "unsupported_grant_type"
    assert "Set-Cookie" not in resp.headers


async def test_signing_in_again_in_the_same_browser_replaces_its_session(
    browser_client: GatewayClient,
) -> None:
    jar, first = await browser_login(browser_client)
    resp = await browser_client.post(
        "/auth/browser/login",
        json={"username": "alice", "password": "wonderland"},
        headers=jar.header(),
    )
    assert resp.status == 200
    second = await resp.json()
    assert second["session_id"] != first["session_id"]
    jar.update(resp)
    listed = await browser_client.get("/auth/sessions", headers=jar.header())
    assert [s["sid"] for s in (await listed.json())["sessions"]] == [second["session_id"]]


async def test_form_logout_goes_to_the_login_page(browser_client: GatewayClient) -> None:
    jar, _ = await browser_login(browser_client)
    resp = await browser_client.post(
        "/auth/browser/logout", data={}, headers=jar.header(), allow_redirects=False
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/auth/browser/login"
    assert len(resp.headers.getall("Set-Cookie")) == 2
    # without any session it still answers, and clears
    resp = await browser_client.post("/auth/browser/logout")
    assert resp.status == 204 and len(resp.headers.getall("Set-Cookie")) == 2
    resp = await browser_client.post(
        "/auth/browser/logout", headers={**jar.header(), "Origin": "http://evil.example"}
    )
    assert resp.status == 403


async def test_logout_while_redis_is_down_is_503_and_keeps_the_cookies(
    browser_client: GatewayClient, fake_server: fakeredis.FakeServer, request: Any
) -> None:
    if "redis-server" in request.node.name:
        return  # the outage is simulated on fakeredis
    jar, _ = await browser_login(browser_client)
    fake_server.connected = False
    resp = await browser_client.post("/auth/browser/logout", headers=jar.header())
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert "Set-Cookie" not in resp.headers
    fake_server.connected = True
    assert (await browser_client.post("/auth/browser/logout", headers=jar.header())).status == 204


# ---- your devices ----------------------------------------------------------------------------


async def test_devices_page_lists_sessions_escaped_and_signs_one_out(
    browser_client: GatewayClient, upstream: Upstream
) -> None:
    hostile = '<img src=x onerror="alert(1)">'
    phone, phone_body = await browser_login(browser_client, device_name=hostile)
    jar, body = await browser_login(browser_client)
    resp = await browser_client.get("/auth/browser/devices", headers=jar.header())
    assert resp.status == 200 and resp.content_type == "text/html"
    assert resp.headers["X-Frame-Options"] == "DENY"
    page = await resp.text()
    assert "<img" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert page.count('name="sid"') == 2
    mine = page.index(f'value="{body["session_id"]}"')
    assert page.rfind("this device", 0, mine) > page.rfind("<tr>", 0, mine)
    # sign the phone out from here
    resp = await browser_client.post(
        "/auth/browser/devices/signout",
        data={"sid": phone_body["session_id"]},
        headers=jar.header(),
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/auth/browser/devices"
    assert "Set-Cookie" not in resp.headers
    assert (await browser_client.get("/api", headers=phone.header())).status == 401
    assert (await browser_client.get("/api", headers=jar.header())).status == 200


async def test_devices_page_refusals(browser_client: GatewayClient) -> None:
    resp = await browser_client.get(
        "/auth/browser/devices", headers={"Sec-Fetch-Mode": "navigate"}, allow_redirects=False
    )
    assert resp.status == 302
    assert resp.headers["Location"] == "/auth/browser/login?return_to=%2Fauth%2Fbrowser%2Fdevices"
    alice, _ = await browser_login(browser_client)
    _, bob = await browser_login(browser_client, user="bob", password="builder")
    resp = await browser_client.post(
        "/auth/browser/devices/signout", data={"sid": bob["session_id"]}, headers=alice.header()
    )
    assert resp.status == 404  # another user's session
    resp = await browser_client.post(
        "/auth/browser/devices/signout",
        data={"sid": bob["session_id"]},
        headers={**alice.header(), "Sec-Fetch-Site": "same-site"},
    )
    assert resp.status == 403


async def test_sign_out_this_device_and_everywhere(browser_client: GatewayClient) -> None:
    laptop, laptop_body = await browser_login(browser_client)
    resp = await browser_client.post(
        "/auth/browser/devices/signout",
        data={"sid": laptop_body["session_id"]},
        headers=laptop.header(),
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/auth/browser/login"
    assert len(resp.headers.getall("Set-Cookie")) == 2
    first, _ = await browser_login(browser_client)
    second, _ = await browser_login(browser_client)
    bob, _ = await browser_login(browser_client, user="bob", password="builder")
    resp = await browser_client.post(
        "/auth/browser/devices/signout-all", headers=first.header(), allow_redirects=False
    )
    assert resp.status == 303 and len(resp.headers.getall("Set-Cookie")) == 2
    for jar in (first, second):
        assert (await browser_client.get("/api", headers=jar.header())).status == 401
    assert (await browser_client.get("/api", headers=bob.header())).status == 200


# ---- per-route behaviour -------------------------------------------------------------------


async def test_route_policies_with_cookies(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    upstream: Upstream,
    clock: FakeClock,
) -> None:
    import aiohttp

    routes = [
        {"prefix": "/public/", "upstream": upstream.url, "policy": "public"},
        {"prefix": "/optional/", "upstream": upstream.url, "policy": "optional"},
        {"prefix": "/machines/", "upstream": upstream.url, "browser": False},
        {"prefix": "/reports/", "upstream": upstream.url, "roles": ["reports"]},
        {"prefix": "/", "upstream": upstream.url},
    ]
    client = await gateway_factory(
        browser_settings_factory(routes=routes), clock=clock, cookie_jar=aiohttp.DummyCookieJar()
    )
    jar, _ = await browser_login(client)
    # public: no identity, and still none of our cookies upstream
    assert (await client.get("/public/x", headers=jar.header("a=1"))).status == 200
    assert upstream.headers_of()["cookie"] == ["a=1"] and "x-user-id" not in upstream.headers_of()
    # optional: identity with cookies, anonymous without, anonymous and cleared when ended
    assert (await client.get("/optional/x", headers=jar.header())).status == 200
    assert upstream.headers_of()["x-user-id"] == ["alice"]
    assert (await client.get("/optional/x")).status == 200
    assert "x-user-id" not in upstream.headers_of()
    resp = await client.get("/optional/x", headers={"Cookie": f"{REFRESH_COOKIE}=junk"})
    assert resp.status == 200 and len(resp.headers.getall("Set-Cookie")) == 2
    assert "x-user-id" not in upstream.headers_of()
    # browser: false: cookies are no credential there
    resp = await client.get("/machines/x", headers=jar.header())
    assert resp.status == 401 and "Set-Cookie" not in resp.headers
    # roles apply to cookie sessions as to bearer tokens
    resp = await client.get("/reports/q3", headers=jar.header())
    assert resp.status == 403 and (await resp.json())["error"] == "insufficient_scope"


async def test_without_sealing_the_cookies_are_the_tokens(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    upstream: Upstream,
    clock: FakeClock,
) -> None:
    import aiohttp

    settings = browser_settings_factory(browser={"seal_cookies": False, "seal_keys": []})
    client = await gateway_factory(settings, clock=clock, cookie_jar=aiohttp.DummyCookieJar())
    jar, _ = await browser_login(client)
    assert jar.cookies[ACCESS_COOKIE].startswith("eyJ")
    assert jar.cookies[REFRESH_COOKIE].startswith("gwrt_")
    clock.now += 2000
    resp = await client.get("/api", headers=jar.header())
    assert resp.status == 200 and upstream.headers_of()["x-user-id"] == ["alice"]


async def test_a_retired_sealing_key_still_opens_and_the_cookie_is_sealed_anew(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    upstream: Upstream,
    clock: FakeClock,
    fake_server: fakeredis.FakeServer,
    seal_key_file: Path,
    tmp_path: Path,
) -> None:
    import aiohttp

    from gateway.browser.seal import new_seal_key
    from gateway.tokens.keys import write_secret_file

    redis = fakeredis.FakeAsyncRedis(server=fake_server)
    old = await gateway_factory(
        browser_settings_factory(), redis=redis, clock=clock, cookie_jar=aiohttp.DummyCookieJar()
    )
    jar, _ = await browser_login(old)
    write_secret_file(tmp_path / "new.key", new_seal_key())
    keys = [
        {"id": "k2", "secret_file": str(tmp_path / "new.key")},
        {"id": "k1", "secret_file": str(seal_key_file)},
    ]
    rotated = await gateway_factory(
        browser_settings_factory(browser={"seal_keys": keys}),
        redis=redis,
        clock=clock,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    assert (await rotated.get("/api", headers=jar.header())).status == 200  # k1 still opens
    clock.now += 2000
    resp = await rotated.get("/api", headers=jar.header())
    assert resp.status == 200
    jar.update(resp)
    assert jar.cookies[ACCESS_COOKIE].startswith("k2.")
    assert jar.cookies[REFRESH_COOKIE].startswith("k2.")  # sealed anew, same session
    assert f"Max-Age={30 * 86400 - 2000}" in jar.attributes[REFRESH_COOKIE]


# ---- what operators see --------------------------------------------------------------------


async def test_access_log_says_cookie_or_bearer_and_never_holds_a_cookie(
    browser_client: GatewayClient, caplog: Any, clock: FakeClock
) -> None:
    import json
    import logging

    caplog.set_level(logging.DEBUG)
    jar, _ = await browser_login(browser_client)
    clock.now += 2000
    await browser_client.get("/api/cookie", headers=jar.header())
    token = (await login(browser_client))["access_token"]
    await browser_client.get("/api/bearer", headers=bearer(token))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.access"]
    by_path = {line["path"]: line for line in lines}
    assert by_path["/api/cookie"]["auth"] == "cookie"
    assert by_path["/api/bearer"]["auth"] == "bearer"
    assert "auth" not in by_path["/metrics"] if "/metrics" in by_path else True
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for value in jar.cookies.values():
        assert value not in logged and value.split(".")[-1][:40] not in logged


async def test_without_the_login_page_navigations_get_the_json_401(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    upstream: Upstream,
) -> None:
    import aiohttp

    settings = browser_settings_factory(browser={"login_page": False, "unauthenticated": "401"})
    client = await gateway_factory(settings, cookie_jar=aiohttp.DummyCookieJar())
    resp = await client.get("/app/", headers={"Sec-Fetch-Mode": "navigate"}, allow_redirects=False)
    assert resp.status == 401 and (await resp.json())["error"] == "invalid_request"
    resp = await client.get("/auth/browser/login")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    assert upstream.received == []
    jar, _ = await browser_login(client)  # the JSON sign-in still works (an app's own page)
    assert (await client.get("/app/", headers=jar.header())).status == 200


async def test_an_identity_provider_token_signs_a_browser_in(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    identity_provider: FakeIdentityProvider,
    upstream: Upstream,
    clock: FakeClock,
) -> None:
    import aiohttp

    provider = {
        "name": "idp",
        "issuer": identity_provider.issuer,
        "discovery": True,
        "audiences": [IDP_CLIENT_ID],
        "algorithms": ["RS256", "ES256"],
        "roles": {"default": ["user"]},
    }
    settings = browser_settings_factory(federation={"providers": [provider], "fetch_timeout": 2})
    client = await gateway_factory(settings, clock=clock, cookie_jar=aiohttp.DummyCookieJar())
    resp = await client.post(
        "/auth/browser/login",
        json={
            "subject_token": identity_provider.id_token(now=clock.now),
            "subject_token_type": ID_TOKEN_TYPE,
        },
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert set(body) == IDENTITY and body["sub"] == "idp:user-123"
    jar = CookieJar()
    jar.update(resp)
    assert set(jar.cookies) == {ACCESS_COOKIE, REFRESH_COOKIE}
    assert (await client.get("/api", headers=jar.header())).status == 200
    assert upstream.headers_of()["x-user-id"] == ["idp:user-123"]
    forged = identity_provider.id_token(now=clock.now, iss="https://elsewhere.example")
    resp = await client.post(
        "/auth/browser/login", json={"subject_token": forged, "subject_token_type": ID_TOKEN_TYPE}
    )
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_grant"
    assert "Set-Cookie" not in resp.headers
