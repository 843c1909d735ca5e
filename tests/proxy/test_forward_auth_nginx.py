"""Through Debian's nginx, configured by deploy/nginx/'s template: every request to the app is
decided by the gateway (auth_request), refusals come out as the inline path answers them, the
app sees the gateway's identity headers and never a client's copy, and browser sessions (sign-
in, transparent refresh, logout) work across nginx."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import fakeredis
import pytest

from gateway.config import Settings
from tests.support.browser_cookies import ACCESS_COOKIE, APP_ORIGIN, REFRESH_COOKIE, CookieJar
from tests.support.clock import FakeClock
from tests.support.gateway_client import GatewayClient, GatewayFactory
from tests.support.jwt_tokens import bearer, claims, mint
from tests.support.nginx_front import (
    TEMPLATE,
    NginxFront,
    NginxFrontFactory,
    check_config,
    main_config,
    nginx_binary,
    render,
)
from tests.support.programs import require
from tests.support.recording_upstream import Upstream

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    gateway: GatewayClient
    nginx: NginxFront
    upstream: Upstream
    session: aiohttp.ClientSession
    clock: FakeClock
    key_files: dict[str, Path] = field(default_factory=dict)

    async def inline(self, method: str, path: str, headers: dict[str, str]) -> Answer:
        resp = await self.gateway.request(method, path, headers=headers, allow_redirects=False)
        return await Answer.of(resp)

    async def through_nginx(self, method: str, path: str, headers: dict[str, str]) -> Answer:
        async with self.session.request(
            method, self.nginx.url + path, headers=headers, allow_redirects=False
        ) as resp:
            return await Answer.of(resp)


@dataclass
class Answer:
    status: int
    headers: Any
    body: bytes

    @classmethod
    async def of(cls, resp: aiohttp.ClientResponse) -> Answer:
        return cls(resp.status, resp.headers, await resp.read())

    def error(self) -> str | None:
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value.get("error") if isinstance(value, dict) else None


@pytest.fixture
async def stack(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    nginx_front: NginxFrontFactory,
    upstream: Upstream,
    fake_server: fakeredis.FakeServer,
    clock: FakeClock,
    key_files: dict[str, Path],
) -> Any:
    settings = browser_settings_factory(
        forward_auth={"enabled": True},
        routes=[
            {"prefix": "/public/", "upstream": upstream.url, "policy": "public"},
            {"prefix": "/reports/", "upstream": upstream.url, "roles": ["reports"]},
            {
                "prefix": "/limited/",
                "upstream": upstream.url,
                "limits": [{"key": "sub", "rate": 1, "per": 3600, "burst": 1}],
            },
            {"prefix": "/", "upstream": upstream.url},
        ],
    )
    redis = fakeredis.FakeAsyncRedis(server=fake_server)
    gateway = await gateway_factory(
        settings, redis=redis, clock=clock, cookie_jar=aiohttp.DummyCookieJar()
    )
    address = f"127.0.0.1:{gateway.server.port}"
    front = await nginx_front(address, upstream.url.removeprefix("http://"))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield Stack(gateway, front, upstream, session, clock, key_files)


def unsigned() -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'at+jwt', 'kid': 'ed1'})}.{part(claims())}."


# (name, method, path, headers made from the key files) → refused the same way inline and
# through nginx: the same status and error code, and the app never sees the request.
REJECTIONS: list[tuple[str, str, str, Callable[[dict[str, Path]], dict[str, str]]]] = [
    ("no token", "GET", "/app/x", lambda k: {}),
    ("no token, POST", "POST", "/app/x", lambda k: {}),
    ("expired", "GET", "/app/x", lambda k: bearer(mint(k, exp=1_000_000, iat=999_000))),
    ("alg none", "GET", "/app/x", lambda k: bearer(unsigned())),
    ("unknown kid", "GET", "/app/x", lambda k: bearer(mint(k, kid="nope"))),
    ("wrong audience", "GET", "/app/x", lambda k: bearer(mint(k, aud="other"))),
    ("wrong issuer", "GET", "/app/x", lambda k: bearer(mint(k, iss="https://evil.example"))),
    ("not an access token", "GET", "/app/x", lambda k: bearer(mint(k, typ="JWT"))),
    ("garbage token", "GET", "/app/x", lambda k: bearer("a.b.c")),
    ("basic credentials", "GET", "/app/x", lambda k: {"Authorization": "Basic YTpi"}),
    ("missing role", "GET", "/reports/q", lambda k: bearer(mint(k, roles=["user"]))),
    ("missing role, HEAD", "HEAD", "/reports/q", lambda k: bearer(mint(k, roles=["user"]))),
    (
        "cross-site cookie POST",
        "POST",
        "/app/orders",
        lambda k: {"Cookie": "gw_at=x", "Sec-Fetch-Site": "cross-site", "Origin": "http://e.x"},
    ),
    ("a dead session's cookies", "GET", "/app/x", lambda k: {"Cookie": "gw_at=x; gw_rt=y"}),
]


@pytest.mark.parametrize(
    ("method", "path", "make_headers"),
    [c[1:] for c in REJECTIONS],
    ids=[c[0] for c in REJECTIONS],
)
async def test_rejections_are_the_same_inline_and_through_nginx(
    stack: Stack,
    method: str,
    path: str,
    make_headers: Callable[[dict[str, Path]], dict[str, str]],
) -> None:
    headers = make_headers(stack.key_files)
    inline = await stack.inline(method, path, headers)
    fronted = await stack.through_nginx(method, path, headers)
    assert inline.status in (400, 401, 403), inline.body
    assert fronted.status == inline.status, (fronted.body, stack.nginx.error_log())
    if method != "HEAD":
        assert fronted.error() == inline.error()
        assert json.loads(fronted.body) == json.loads(inline.body)
    if inline.status == 401 and "WWW-Authenticate" in inline.headers:
        assert fronted.headers["WWW-Authenticate"] == inline.headers["WWW-Authenticate"]
    assert stack.upstream.received == []


@pytest.mark.parametrize(
    "path",
    [
        "/public/../reports/q",
        "/public/%2e%2e/reports/q",
        "/public/%2E%2E/reports/q",
        "/reports;x=1/q",
        "/public%2f..%2freports/q",
        "/public/%c0%ae%c0%ae/reports/q",
        "/public/..%5creports/q",
    ],
)
async def test_path_tricks_never_reach_the_app_through_nginx(stack: Stack, path: str) -> None:
    inline = await stack.inline("GET", path, {})
    fronted = await stack.through_nginx("GET", path, {})
    assert inline.status in (400, 401), inline.body
    # the decision refuses what it would have to normalize (400); nginx refuses some first
    assert fronted.status in (400, 401), fronted.body
    assert stack.upstream.received == []


async def test_admitted_requests_carry_the_gateways_identity_only(stack: Stack) -> None:
    token = mint(stack.key_files, sub="alice", sid="s-9", roles=["user", "reports"])
    forged = {
        "X-User-Id": "root",
        "x-user-roles": "admin",
        "X-Session-Id": "forged",
        "X-Auth-Request-User": "root",
        "X_User_Id": "root",
        "X-Original-URI": "/public/x",
        "X-Forwarded-Uri": "/public/x",
        "Cookie": "theme=dark",
    }
    answer = await stack.through_nginx("GET", "/reports/q?a=1&b=%20", {**bearer(token), **forged})
    assert answer.status == 200, (answer.body, stack.nginx.error_log())
    seen = stack.upstream.headers_of()
    assert stack.upstream.received[-1].path == "/reports/q"
    assert stack.upstream.received[-1].query == "a=1&b=%20"
    assert seen["x-user-id"] == ["alice"]
    assert seen["x-user-roles"] == ["user,reports"]
    assert seen["x-session-id"] == ["s-9"]
    assert seen["cookie"] == ["theme=dark"]
    assert "connection" not in seen  # kept alive: nginx sends no `Connection: close`
    for name in ("x_user_id", "x-auth-request-user", "x-original-uri", "authorization"):
        assert name not in seen
    # a public route: no identity at all, whatever the client sent
    answer = await stack.through_nginx("GET", "/public/page", forged)
    assert answer.status == 200
    seen = stack.upstream.headers_of()
    assert not [name for name in seen if name.startswith(("x-user", "x-session", "x-auth"))]


async def test_the_decision_path_is_not_reachable_through_nginx(stack: Stack) -> None:
    token = mint(stack.key_files)
    for path in ("/auth/verify", "/auth/verify/reports/q", "/_gateway/verify"):
        answer = await stack.through_nginx(
            "GET", path, {**bearer(token), "X-Original-URI": "/reports/q"}
        )
        assert answer.status in (401, 404), answer.body
        assert "X-User-Id" not in answer.headers
    assert all(r.path != "/_gateway/verify" for r in stack.upstream.received)


async def test_refusals_nginx_cannot_take_are_mapped_back(stack: Stack) -> None:
    token = bearer(mint(stack.key_files, sub="carol"))
    first = await stack.through_nginx("GET", "/limited/x", token)
    assert first.status == 200
    limited = await stack.through_nginx("GET", "/limited/x", token)
    assert limited.status == 429, (limited.body, stack.nginx.error_log())
    assert limited.error() == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
    # a decision for a path only the gateway serves: its 404
    answer = await stack.through_nginx("GET", "/auth/verifyx/../../auth/verify", {})
    assert answer.status in (400, 404)
    assert len(stack.upstream.received) == 1


async def test_browser_session_through_nginx(stack: Stack) -> None:
    base = stack.nginx.url
    jar = CookieJar()
    async with stack.session.post(
        base + "/auth/browser/login",
        json={"username": "alice", "password": "wonderland"},
        headers={"Origin": APP_ORIGIN},
    ) as resp:
        assert resp.status == 200, await resp.text()
        jar.update(resp)
        session_id = (await resp.json())["session_id"]
    assert set(jar.cookies) == {ACCESS_COOKIE, REFRESH_COOKIE}
    answer = await stack.through_nginx("GET", "/app/page", jar.header("theme=dark"))
    assert answer.status == 200
    seen = stack.upstream.headers_of()
    assert seen["x-user-id"] == ["alice"]
    assert seen["x-session-id"] == [session_id]
    assert seen["cookie"] == ["theme=dark"]  # never the gateway's cookies
    # the access cookie expires: the decision refreshes it, nginx passes the one Set-Cookie
    stack.clock.now += 900 + 31
    answer = await stack.through_nginx("GET", "/app/page", jar.header())
    assert answer.status == 200
    cookies = answer.headers.getall("Set-Cookie")
    assert [c.split("=", 1)[0] for c in cookies] == [ACCESS_COOKIE]
    assert answer.headers["Cache-Control"] == "private, no-store"
    assert "cookie" not in stack.upstream.headers_of()  # only the gateway's: none left
    jar.cookies[ACCESS_COOKIE] = cookies[0].split(";", 1)[0].split("=", 1)[1]
    answer = await stack.through_nginx("GET", "/app/page", jar.header())
    assert answer.status == 200 and "Set-Cookie" not in answer.headers  # still good
    # sign out through nginx: the session ends, a navigation goes to the login page
    async with stack.session.post(
        base + "/auth/browser/logout", headers={**jar.header(), "Origin": APP_ORIGIN}
    ) as resp:
        assert resp.status == 204
        jar.update(resp)
    navigation = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    answer = await stack.through_nginx("GET", "/app/page?x=1", {**jar.header(), **navigation})
    assert answer.status == 302, (answer.body, stack.nginx.error_log())
    assert answer.headers["Location"] == "/auth/browser/login?return_to=%2Fapp%2Fpage%3Fx%3D1"
    answer = await stack.through_nginx("GET", "/app/page", {})
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="gateway"'


async def test_many_decisions_over_kept_alive_connections(stack: Stack) -> None:
    token = bearer(mint(stack.key_files))
    answers = await asyncio.gather(
        *(stack.through_nginx("GET", f"/app/{i}", token) for i in range(50))
    )
    assert [a.status for a in answers] == [200] * 50
    assert len(stack.upstream.received) == 50


def test_the_shipped_configuration_passes_nginx_t(tmp_path: Path) -> None:
    require("nginx", install="apt-get install nginx")
    binary = nginx_binary()
    assert binary is not None
    included = tmp_path / "forward-auth.conf"
    included.write_text(
        render(
            TEMPLATE,
            LISTEN="127.0.0.1:8000",
            GATEWAY="127.0.0.1:8080",
            DECISIONS="127.0.0.1:8082",
            APP="127.0.0.1:9000",
        )
    )
    text = included.read_text()
    assert "${" not in text
    # keep-alive to the gateway and the app: proxy_set_header is not inherited by a location
    # that sets any of its own, so each proxying location clears Connection itself
    for location in text.split("location ")[1:]:
        if "proxy_pass" in location:
            assert 'proxy_set_header Connection "";' in location, location[:60]
    result = check_config(binary, main_config(tmp_path, included), tmp_path)
    assert result.returncode == 0, result.stderr
