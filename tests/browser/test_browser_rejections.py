"""Browser sessions refuse what they must: bad cookies, cross-site requests, open redirects,
and an upstream trying to set the gateway's cookies. A refused request never reaches the
upstream; definitive failures clear both cookies; every refusal is the JSON error body."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestServer

from gateway.browser.seal import ACCESS, REFRESH, AesGcmSeal, load_seal_keys
from gateway.config import BrowserSettings, Settings
from gateway.store import new_refresh_token
from tests.support.browser_cookies import (
    ACCESS_COOKIE,
    APP_ORIGIN,
    REFRESH_COOKIE,
    CookieJar,
    browser_login,
)
from tests.support.clock import FakeClock
from tests.support.gateway_client import GatewayClient, GatewayFactory, login
from tests.support.jwt_tokens import claims, mint
from tests.support.recording_upstream import Upstream

CLEARED = [
    f"{ACCESS_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax",
    f"{REFRESH_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax",
]
SESSION_ENDED = {
    "error": "invalid_token",
    "error_description": "the session has ended; sign in again",
}


def sealer(seal_key_file: Path) -> AesGcmSeal:
    keys = load_seal_keys(BrowserSettings(seal_keys=[{"id": "k1", "secret_file": seal_key_file}]))  # type: ignore[list-item]
    return AesGcmSeal(keys)


def unsigned(**overrides: Any) -> str:
    """A token with `alg: none` (and an empty signature)."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'at+jwt', 'kid': 'ed1'})}.{part(claims(**overrides))}."


async def assert_ended(resp: ClientResponse, upstream: Upstream, received: int) -> None:
    assert resp.status == 401, await resp.text()
    assert await resp.json() == SESSION_ENDED or (await resp.json())["error"] == "invalid_token"
    assert resp.headers.getall("Set-Cookie") == CLEARED
    assert resp.headers["Cache-Control"] == "private, no-store"
    assert len(upstream.received) == received


# ---- the access cookie ----------------------------------------------------------------------

BAD_ACCESS: list[tuple[str, Callable[[dict[str, Path], AesGcmSeal, CookieJar], str]]] = [
    ("expired", lambda k, s, j: s.seal(mint(k, exp=1_000_000, iat=999_000, nbf=999_000), ACCESS)),
    ("alg none", lambda k, s, j: s.seal(unsigned(), ACCESS)),
    ("unknown kid", lambda k, s, j: s.seal(mint(k, kid="nope"), ACCESS)),
    ("another issuer", lambda k, s, j: s.seal(mint(k, iss="https://other.example"), ACCESS)),
    (
        "refresh token sealed as access",
        lambda k, s, j: s.seal(new_refresh_token("0" * 8 + "-" + "a" * 22), ACCESS),
    ),
    ("the refresh cookie's value", lambda k, s, j: j.cookies[REFRESH_COOKIE]),
    ("8 KiB of junk", lambda k, s, j: "x" * 8192),
    ("8 KiB of sealed junk", lambda k, s, j: s.seal("y" * 6000, ACCESS)),
    ("not sealed", lambda k, s, j: mint(k)),
    (
        "sealed with another key",
        lambda k, s, j: AesGcmSeal([("k1", b"\x05" * 32)]).seal(mint(k), ACCESS),
    ),
]


@pytest.mark.parametrize(("case", "make"), BAD_ACCESS, ids=[c for c, _ in BAD_ACCESS])
async def test_bad_access_cookie_with_a_live_refresh_cookie_is_refreshed(
    browser_client: GatewayClient,
    upstream: Upstream,
    key_files: dict[str, Path],
    seal_key_file: Path,
    case: str,
    make: Callable[..., str],
) -> None:
    jar, body = await browser_login(browser_client)
    jar.cookies[ACCESS_COOKIE] = make(key_files, sealer(seal_key_file), jar)
    resp = await browser_client.get("/api", headers=jar.header())
    assert resp.status == 200, await resp.text()
    assert upstream.headers_of()["x-user-id"] == ["alice"]  # the session's user, not the forgery's
    assert upstream.headers_of()["x-session-id"] == [body["session_id"]]
    assert [c.split("=")[0] for c in resp.headers.getall("Set-Cookie")] == [ACCESS_COOKIE]


@pytest.mark.parametrize(("case", "make"), BAD_ACCESS, ids=[c for c, _ in BAD_ACCESS])
async def test_bad_access_cookie_alone_is_401_and_clears_the_cookies(
    browser_client: GatewayClient,
    upstream: Upstream,
    key_files: dict[str, Path],
    seal_key_file: Path,
    case: str,
    make: Callable[..., str],
) -> None:
    jar, _ = await browser_login(browser_client)
    value = make(key_files, sealer(seal_key_file), jar)
    received = len(upstream.received)
    resp = await browser_client.get("/api", headers={"Cookie": f"{ACCESS_COOKIE}={value}"})
    await assert_ended(resp, upstream, received)
    assert resp.headers["WWW-Authenticate"].startswith(
        'Bearer realm="gateway", error="invalid_token"'
    )


async def test_valid_access_cookie_with_a_broken_refresh_cookie_is_served(
    browser_client: GatewayClient, upstream: Upstream
) -> None:
    jar, _ = await browser_login(browser_client)
    jar.cookies[REFRESH_COOKIE] = "garbage"
    resp = await browser_client.get("/api", headers=jar.header())
    assert resp.status == 200
    assert "Set-Cookie" not in resp.headers


# ---- the refresh cookie ---------------------------------------------------------------------


async def refresh_only(client: GatewayClient, value: str) -> ClientResponse:
    return await client.get("/api", headers={"Cookie": f"{REFRESH_COOKIE}={value}"})


async def test_malformed_and_unknown_refresh_cookies_end_the_session(
    browser_client: GatewayClient, upstream: Upstream, seal_key_file: Path
) -> None:
    jar, body = await browser_login(browser_client)
    seal = sealer(seal_key_file)
    received = len(upstream.received)
    live = seal.open(jar.cookies[REFRESH_COOKIE], REFRESH)
    assert live is not None
    sid = body["session_id"]
    for value in (
        "junk",
        "k1." + "A" * 80,
        seal.seal("gwrt_not-a-token", REFRESH),
        seal.seal(new_refresh_token(sid), REFRESH),  # the right session, a secret it never had
        seal.seal(new_refresh_token("0badc0de-" + "b" * 22), REFRESH),  # no such session
        seal.seal(live.value, ACCESS),  # sealed for the other cookie
    ):
        await assert_ended(await refresh_only(browser_client, value), upstream, received)
    assert (await refresh_only(browser_client, jar.cookies[REFRESH_COOKIE])).status == 200


async def test_a_refresh_cookie_spliced_from_two_users_is_refused(
    browser_client: GatewayClient, upstream: Upstream, seal_key_file: Path
) -> None:
    seal = sealer(seal_key_file)
    alice, alice_body = await browser_login(browser_client)
    bob, _ = await browser_login(browser_client, user="bob", password="builder")
    bobs = seal.open(bob.cookies[REFRESH_COOKIE], REFRESH)
    assert bobs is not None
    spliced = f"gwrt_{alice_body['session_id']}.{bobs.value.rsplit('.', 1)[1]}"
    received = len(upstream.received)
    await assert_ended(
        await refresh_only(browser_client, seal.seal(spliced, REFRESH)), upstream, received
    )
    # another user's refresh cookie next to an expired access cookie speaks for that user
    alice.cookies[ACCESS_COOKIE] = "expired-or-garbage"
    alice.cookies[REFRESH_COOKIE] = bob.cookies[REFRESH_COOKIE]
    resp = await browser_client.get("/api", headers=alice.header())
    assert resp.status == 200 and upstream.headers_of()["x-user-id"] == ["bob"]


async def test_spent_refresh_cookie_is_reuse_and_ends_the_session(
    browser_client: GatewayClient, upstream: Upstream, clock: FakeClock
) -> None:
    jar, _ = await browser_login(browser_client)
    old = jar.cookies[REFRESH_COOKIE]
    resp = await browser_client.post("/auth/browser/refresh", headers=jar.header())
    assert resp.status == 204
    jar.update(resp)
    clock.now += 2000
    del jar.cookies[ACCESS_COOKIE]
    assert (await browser_client.get("/api", headers=jar.header())).status == 200  # new one in use
    clock.now += 61  # past browser.rotation_grace: the old one is spent
    received = len(upstream.received)
    await assert_ended(await refresh_only(browser_client, old), upstream, received)
    # reuse revoked the whole session: the new cookie is dead too
    await assert_ended(
        await refresh_only(browser_client, jar.cookies[REFRESH_COOKIE]), upstream, received
    )
    metrics = await (await browser_client.get("/metrics")).text()
    assert 'gateway_browser_refresh_total{outcome="refresh_reused"} 1.0' in metrics


async def test_refresh_cookie_of_a_revoked_session_is_refused_from_the_view(
    browser_client: GatewayClient,
    upstream: Upstream,
    clock: FakeClock,
    fake_server: fakeredis.FakeServer,
) -> None:
    jar, body = await browser_login(browser_client)
    token = (await login(browser_client))["access_token"]  # the same user on another device
    resp = await browser_client.delete(
        f"/auth/sessions/{body['session_id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 204
    clock.now += 2000
    fake_server.connected = False  # (on fakeredis) no store call is needed to know
    received = len(upstream.received)
    await assert_ended(
        await refresh_only(browser_client, jar.cookies[REFRESH_COOKIE]), upstream, received
    )
    fake_server.connected = True


async def test_refresh_cookie_of_an_expired_session_is_refused(
    browser_client: GatewayClient, upstream: Upstream, clock: FakeClock
) -> None:
    jar, _ = await browser_login(browser_client)
    clock.now += 30 * 86400 + 1
    received = len(upstream.received)
    await assert_ended(
        await refresh_only(browser_client, jar.cookies[REFRESH_COOKIE]), upstream, received
    )


# ---- how the cookies are read ---------------------------------------------------------------


@pytest.mark.parametrize("duplicate", [ACCESS_COOKIE, REFRESH_COOKIE])
async def test_duplicated_cookie_names_are_an_invalid_credential(
    browser_client: GatewayClient, upstream: Upstream, duplicate: str
) -> None:
    jar, _ = await browser_login(browser_client)
    received = len(upstream.received)
    sent = jar.header(f"{duplicate}={jar.cookies[duplicate]}")  # the same value twice, even
    await assert_ended(await browser_client.get("/api", headers=sent), upstream, received)


async def test_malformed_foreign_cookies_before_ours_do_not_hide_ours(
    browser_client: GatewayClient, upstream: Upstream
) -> None:
    jar, _ = await browser_login(browser_client)
    foreign = 'bad"cookie; =noname; novalue; x=="; theme="a b'
    resp = await browser_client.get(
        "/api", headers={"Cookie": f"{foreign}; {jar.header()['Cookie']}"}
    )
    assert resp.status == 200
    assert upstream.headers_of()["cookie"] == ['bad"cookie; =noname; novalue; x=="; theme="a b']


async def test_lowercase_host_prefixed_names_are_not_the_gateways(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    upstream: Upstream,
) -> None:
    import aiohttp

    settings = browser_settings_factory(
        environment="production",
        browser={"secure": True, "access_cookie": "__Host-gw_at", "refresh_cookie": "__Host-gw_rt"},
    )
    client = await gateway_factory(settings, cookie_jar=aiohttp.DummyCookieJar())
    resp = await client.post(
        "/auth/browser/login", json={"username": "alice", "password": "wonderland"}
    )
    assert resp.status == 200
    set_cookies = resp.headers.getall("Set-Cookie")
    assert all(c.endswith("; Path=/; HttpOnly; SameSite=Lax; Secure") for c in set_cookies)
    values = {c.split("=", 1)[0]: c.split(";")[0].split("=", 1)[1] for c in set_cookies}
    lowered = f"__host-gw_at={values['__Host-gw_at']}; __host-gw_rt={values['__Host-gw_rt']}"
    received = len(upstream.received)
    resp = await client.get("/api", headers={"Cookie": lowered})
    assert resp.status == 401 and (await resp.json())["error"] == "invalid_request"
    assert "Set-Cookie" not in resp.headers and len(upstream.received) == received
    resp = await client.get("/public/x", headers={"Cookie": f"{lowered}; __Host-gw_at=ours"})
    assert resp.status == 200
    assert upstream.headers_of()["cookie"] == [lowered]  # somebody else's cookies: passed on


# ---- CSRF -----------------------------------------------------------------------------------

CROSS_SITE = [
    ("cross-site", {"Sec-Fetch-Site": "cross-site"}, "cross-site"),
    ("same-site", {"Sec-Fetch-Site": "same-site"}, "same-site"),
    ("unknown site value", {"Sec-Fetch-Site": "weird"}, "fetch_site"),
    ("null origin", {"Origin": "null"}, "origin_null"),
    ("look-alike suffix", {"Origin": "http://app.example.evil.example"}, "foreign_origin"),
    ("look-alike prefix", {"Origin": "http://evil-app.example"}, "foreign_origin"),
    ("other port", {"Origin": "http://app.example:8080"}, "foreign_origin"),
    ("https instead of http", {"Origin": "https://app.example"}, "foreign_origin"),
    ("trailing slash", {"Origin": "http://app.example/"}, "foreign_origin"),
    # Fetch Metadata wins over Origin
    (
        "cross-site with an allowed origin",
        {"Sec-Fetch-Site": "cross-site", "Origin": APP_ORIGIN},
        "cross-site",
    ),
]


@pytest.mark.parametrize(("case", "headers", "reason"), CROSS_SITE, ids=[c[0] for c in CROSS_SITE])
async def test_cross_site_unsafe_requests_with_cookies_are_403(
    browser_client: GatewayClient,
    upstream: Upstream,
    case: str,
    headers: dict[str, str],
    reason: str,
) -> None:
    jar, _ = await browser_login(browser_client)
    received = len(upstream.received)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        resp = await browser_client.request(
            method, "/api/orders", headers={**jar.header(), **headers}
        )
        assert resp.status == 403
        assert (await resp.json())["error"] == "access_denied"
        assert "Set-Cookie" not in resp.headers
    assert len(upstream.received) == received
    metrics = await (await browser_client.get("/metrics")).text()
    assert f'gateway_csrf_rejections_total{{reason="{reason}"}} 4.0' in metrics


@pytest.mark.parametrize(
    "headers",
    [
        {},  # neither header: not a browser page (curl)
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": APP_ORIGIN},
        {"Origin": "HTTP://APP.EXAMPLE"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://elsewhere.example"},
    ],
)
async def test_unsafe_requests_from_the_same_origin_pass(
    browser_client: GatewayClient, upstream: Upstream, headers: dict[str, str]
) -> None:
    jar, _ = await browser_login(browser_client)
    resp = await browser_client.post("/api/orders", data=b"{}", headers={**jar.header(), **headers})
    assert resp.status == 200


async def test_safe_methods_and_bearer_requests_are_exempt(
    browser_client: GatewayClient, upstream: Upstream
) -> None:
    jar, _ = await browser_login(browser_client)
    cross = {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}
    assert (await browser_client.get("/api", headers={**jar.header(), **cross})).status == 200
    token = (
        await (
            await browser_client.post(
                "/auth/login", json={"username": "alice", "password": "wonderland"}
            )
        ).json()
    )["access_token"]
    resp = await browser_client.post("/api", headers={"Authorization": f"Bearer {token}", **cross})
    assert resp.status == 200


async def test_stricter_routes_require_the_header_and_check_safe_methods(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    upstream: Upstream,
) -> None:
    import aiohttp

    routes = [
        {"prefix": "/spa/", "upstream": upstream.url, "csrf_header": True},
        {"prefix": "/legacy/", "upstream": upstream.url, "csrf_all_methods": True},
        {"prefix": "/", "upstream": upstream.url},
    ]
    client = await gateway_factory(
        browser_settings_factory(routes=routes), cookie_jar=aiohttp.DummyCookieJar()
    )
    jar, _ = await browser_login(client)
    same = {"Sec-Fetch-Site": "same-origin"}
    resp = await client.post("/spa/save", headers={**jar.header(), **same})
    assert resp.status == 403 and "X-CSRF" in (await resp.json())["error_description"]
    resp = await client.post("/spa/save", headers={**jar.header(), **same, "X-CSRF": "1"})
    assert resp.status == 200
    assert "x-csrf" not in upstream.headers_of()
    assert (
        await client.get("/spa/page", headers={**jar.header(), "Sec-Fetch-Site": "cross-site"})
    ).status == 200
    resp = await client.get(
        "/legacy/delete?id=1", headers={**jar.header(), "Sec-Fetch-Site": "cross-site"}
    )
    assert resp.status == 403
    assert (await client.get("/legacy/list", headers={**jar.header(), **same})).status == 200


async def test_foreign_form_login_is_refused(browser_client: GatewayClient) -> None:
    form = {"username": "alice", "password": "wonderland", "return_to": "/"}
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
    ):
        resp = await browser_client.post(
            "/auth/browser/login", data=form, headers=headers, allow_redirects=False
        )
        assert resp.status == 403
        assert (await resp.json())["error"] == "access_denied"
        assert "Set-Cookie" not in resp.headers


# ---- navigations, the login redirect and return_to ------------------------------------------


@pytest.mark.parametrize(
    ("headers", "redirected"),
    [
        ({"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, True),
        ({"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, True),
        ({"Sec-Fetch-Mode": "cors", "Accept": "*/*"}, False),
        ({"Accept": "application/json"}, False),
        ({}, False),
    ],
)
async def test_without_a_session_navigations_go_to_the_login_page_and_calls_get_401(
    browser_client: GatewayClient, upstream: Upstream, headers: dict[str, str], redirected: bool
) -> None:
    resp = await browser_client.get("/app/orders?tab=2", headers=headers, allow_redirects=False)
    if redirected:
        assert resp.status == 302
        assert resp.headers["Location"] == "/auth/browser/login?return_to=%2Fapp%2Forders%3Ftab%3D2"
    else:
        assert resp.status == 401
        assert await resp.json() == {
            "error": "invalid_request",
            "error_description": "a bearer access token is required",
        }
    assert upstream.received == []


async def test_an_ended_session_on_a_navigation_clears_the_cookies_and_redirects(
    browser_client: GatewayClient, upstream: Upstream
) -> None:
    resp = await browser_client.get(
        "/app/",
        headers={"Cookie": f"{REFRESH_COOKIE}=junk", "Sec-Fetch-Mode": "navigate"},
        allow_redirects=False,
    )
    assert resp.status == 302
    assert resp.headers["Location"] == "/auth/browser/login?return_to=%2Fapp%2F"
    assert resp.headers.getall("Set-Cookie") == CLEARED


RETURN_TO = [
    "//evil.example/",
    "/\\evil.example",
    "https://evil.example",
    "/%2F/evil.example",
    "%2F%2Fevil.example",
    "/%252F%252Fevil.example",
    "/%09/evil.example",
    "/x%0d%0aSet-Cookie:%20a=b",
    "javascript:alert(1)",
    "",
]


@pytest.mark.parametrize("return_to", RETURN_TO)
async def test_login_redirects_only_to_local_paths(
    browser_client: GatewayClient, return_to: str
) -> None:
    form = {"username": "alice", "password": "wonderland", "return_to": return_to}
    resp = await browser_client.post("/auth/browser/login", data=form, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/"
    page = await browser_client.get("/auth/browser/login", params={"return_to": return_to})
    assert 'name="return_to" value="/"' in await page.text()


async def test_the_login_page_escapes_what_it_echoes(browser_client: GatewayClient) -> None:
    hostile = '/"><script>alert(1)</script>'
    page = await browser_client.get("/auth/browser/login", params={"return_to": hostile})
    text = await page.text()
    assert page.status == 200 and page.content_type == "text/html"
    assert "<script>" not in text
    assert 'value="/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in text
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    resp = await browser_client.post(
        "/auth/browser/login",
        data={"username": "<img src=x onerror=alert(1)>", "password": "x", "return_to": hostile},
    )
    assert resp.status == 401
    text = await resp.text()
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "Invalid username or password." in text


async def test_logout_is_post_only(browser_client: GatewayClient) -> None:
    resp = await browser_client.get("/auth/browser/logout")
    assert resp.status == 405
    assert (await resp.json())["error"] == "method_not_allowed"


# ---- what the upstream may send back --------------------------------------------------------


async def test_an_upstream_cannot_set_the_gateways_cookies(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    clock: FakeClock,
) -> None:
    import aiohttp

    async def sets_cookies(_request: web.Request) -> web.Response:
        response = web.Response(text="ok", headers={"Cache-Control": "public, max-age=600"})
        for value in (
            f"{ACCESS_COOKIE}=evil; Path=/",
            f"{REFRESH_COOKIE.upper()}=evil",
            "theme=dark; Path=/",
        ):
            response.headers.add("Set-Cookie", value)
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", sets_cookies)
    evil = TestServer(app, host="127.0.0.1")
    await evil.start_server()
    try:
        routes = [
            {"prefix": "/", "upstream": f"http://127.0.0.1:{evil.port}", "policy": "optional"}
        ]
        client = await gateway_factory(
            browser_settings_factory(routes=routes),
            clock=clock,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        resp = await client.get("/page")
        assert resp.headers.getall("Set-Cookie") == ["theme=dark; Path=/"]
        assert resp.headers["Cache-Control"] == "public, max-age=600"  # not ours to change
        jar, _ = await browser_login(client)
        clock.now += 2000
        resp = await client.get("/page", headers=jar.header())
        cookies = resp.headers.getall("Set-Cookie")
        assert [c.split("=")[0] for c in cookies] == ["theme", ACCESS_COOKIE]
        assert "evil" not in " ".join(cookies)
        assert resp.headers["Cache-Control"] == "private, no-store"  # it carries our cookie
    finally:
        await evil.close()


# Header fields the cache upstream answers with (query `h` = "Name: value", repeated).
CACHE_HEADERS_FROM_QUERY = "h"


async def answers_with_query_headers(request: web.Request) -> web.Response:
    response = web.Response(text="personal page for " + request.headers.get("X-User-Id", "-"))
    for item in request.query.getall(CACHE_HEADERS_FROM_QUERY, []):
        name, _, value = item.partition(": ")
        response.headers.add(name, value)
    return response


@pytest.fixture
async def caching_upstream() -> Any:
    app = web.Application()
    app.router.add_get("/{tail:.*}", answers_with_query_headers)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


async def cached_client(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    clock: FakeClock,
    upstream_url: str,
) -> GatewayClient:
    import aiohttp

    routes = [{"prefix": "/", "upstream": upstream_url, "policy": "optional"}]
    return await gateway_factory(
        browser_settings_factory(routes=routes), clock=clock, cookie_jar=aiohttp.DummyCookieJar()
    )


def directives(resp: ClientResponse) -> list[str]:
    return [
        d.strip().lower() for v in resp.headers.getall("Cache-Control", []) for d in v.split(",")
    ]


def varies(resp: ClientResponse) -> list[str]:
    return [d.strip().lower() for v in resp.headers.getall("Vary", []) for d in v.split(",")]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (["Cache-Control: public, max-age=600"], ["max-age=600"]),
        (["Cache-Control: max-age=600"], ["max-age=600"]),
        (["Cache-Control: s-maxage=3600, max-age=60, proxy-revalidate"], ["max-age=60"]),
        (['Cache-Control: private="Set-Cookie", max-age=600'], ["max-age=600"]),
        (["Cache-Control: public", "Cache-Control: max-age=600"], ["max-age=600"]),
        (["Cache-Control: no-store"], ["no-store"]),
        ([], []),  # nothing said: a shared cache may guess a lifetime (RFC 9111 §4.2.2)
        (["Expires: Thu, 01 Jan 2099 00:00:00 GMT"], []),
    ],
)
async def test_a_cookie_authenticated_answer_is_private(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    clock: FakeClock,
    caching_upstream: str,
    sent: list[str],
    kept: list[str],
) -> None:
    client = await cached_client(gateway_factory, browser_settings_factory, clock, caching_upstream)
    query = [(CACHE_HEADERS_FROM_QUERY, h) for h in sent]
    jar, _ = await browser_login(client)
    resp = await client.get("/page", params=query, headers=jar.header())
    assert resp.status == 200
    assert "Set-Cookie" not in resp.headers  # a valid access cookie: nothing set
    assert directives(resp) == ["private", *kept]
    assert "cookie" in varies(resp)
    # the same upstream answer to a request without a browser session is not ours to change
    anonymous = await client.get("/page", params=query)
    assert anonymous.headers.getall("Cache-Control", []) == [
        h.split(": ", 1)[1] for h in sent if h.startswith("Cache-Control")
    ]


async def test_targeted_cache_fields_are_dropped_and_vary_kept(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    clock: FakeClock,
    caching_upstream: str,
) -> None:
    client = await cached_client(gateway_factory, browser_settings_factory, clock, caching_upstream)
    sent = [
        "CDN-Cache-Control: max-age=86400",
        "Cloudflare-CDN-Cache-Control: max-age=86400",
        "Akamai-Cache-Control: max-age=86400",
        "Surrogate-Control: max-age=86400",
        "Edge-Control: cache-maxage=86400",
        "X-Accel-Expires: 86400",
        "Vary: Accept-Encoding",
        "X-Custom: kept",
    ]
    query = [(CACHE_HEADERS_FROM_QUERY, h) for h in sent]
    jar, _ = await browser_login(client)
    spoiled = {"Cookie": f"{ACCESS_COOKIE}=spoiled; {REFRESH_COOKIE}={jar.cookies[REFRESH_COOKIE]}"}
    for headers in (jar.header(), spoiled):  # the second one's access cookie is refreshed
        resp = await client.get("/page", params=query, headers=headers)
        assert resp.status == 200
        for name in (
            "CDN-Cache-Control",
            "Cloudflare-CDN-Cache-Control",
            "Akamai-Cache-Control",
            "Surrogate-Control",
            "Edge-Control",
            "X-Accel-Expires",
        ):
            assert name not in resp.headers, name
        assert varies(resp) == ["accept-encoding", "cookie"]
        assert resp.headers["X-Custom"] == "kept"
    # an answer that sets a cookie is not stored by any cache
    assert [c.split("=")[0] for c in resp.headers.getall("Set-Cookie")] == [ACCESS_COOKIE]
    assert directives(resp) == ["private", "no-store"]


@pytest.mark.parametrize(
    "value",
    [
        f"{ACCESS_COOKIE}=evil",
        f" {ACCESS_COOKIE} =evil",
        f"\t{ACCESS_COOKIE.upper()}=evil; Path=/",
        f'"{ACCESS_COOKIE}"=evil',
        f"={ACCESS_COOKIE}=evil",  # an empty name: the browser sends back `gw_at=evil`
        f"={REFRESH_COOKIE}",
        f"{REFRESH_COOKIE}",  # no `=`: an empty name whose value is our name
        f"__Host-{ACCESS_COOKIE}=evil; Path=/; Secure",
        f"__Secure-{REFRESH_COOKIE}=evil; Secure",
        f"__HOST-{ACCESS_COOKIE}=evil; Path=/; Secure",
        f"__Host-Http-{ACCESS_COOKIE}=evil; Path=/; Secure",
        f"theme=dark, {ACCESS_COOKIE}=evil",  # two cookies in one field, for who splits on ","
    ],
)
async def test_upstream_set_cookie_lookalikes_are_dropped(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    clock: FakeClock,
    caching_upstream: str,
    value: str,
) -> None:
    client = await cached_client(gateway_factory, browser_settings_factory, clock, caching_upstream)
    sent = [f"Set-Cookie: {value}", "Set-Cookie: theme=dark; Path=/"]
    resp = await client.get("/page", params=[(CACHE_HEADERS_FROM_QUERY, h) for h in sent])
    assert resp.headers.getall("Set-Cookie") == ["theme=dark; Path=/"]


# ---- WebSocket handshakes -----------------------------------------------------------------


async def test_cookie_websockets_need_an_allowed_origin(
    gateway_factory: GatewayFactory, browser_settings_factory: Callable[..., Settings]
) -> None:
    import asyncio

    import aiohttp
    from aiohttp import WSMsgType

    seen: list[tuple[str, str]] = []
    closed = asyncio.Event()

    async def echo(request: web.Request) -> web.WebSocketResponse:
        seen.append((request.headers.get("X-User-Id", ""), request.headers.get("Cookie", "")))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str("echo:" + message.data)
        closed.set()
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        routes = [{"prefix": "/", "upstream": f"http://127.0.0.1:{server.port}"}]
        client = await gateway_factory(
            browser_settings_factory(routes=routes), cookie_jar=aiohttp.DummyCookieJar()
        )
        jar, _ = await browser_login(client)
        for origin in ({}, {"Origin": "http://evil.example"}, {"Origin": "null"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect("/ws", headers={**jar.header("a=1"), **origin})
            assert refused.value.status == 403
        assert seen == []
        ws = await client.ws_connect("/ws", headers={**jar.header("a=1"), "Origin": APP_ORIGIN})
        await ws.send_str("hi")
        assert (await asyncio.wait_for(ws.receive(), 10)).data == "echo:hi"
        await ws.close()
        # The client's close travels through the gateway to the upstream, which ends. Only
        # then may the upstream stop: a stopping aiohttp server drops what arrives, so the
        # relayed close frame would go unanswered until the gateway's close timeout.
        await asyncio.wait_for(closed.wait(), 10)
        assert seen == [("alice", "a=1")]
    finally:
        await server.close()
