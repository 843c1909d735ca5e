"""Admin console over HTTP: sign-in, CSRF, revocations through the console, escaping, Redis
outages, audit filters and the status panel (the browser suite drives the same in Chromium)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from markupsafe import escape
from pytest_aiohttp import AiohttpClient

from gateway.app import create_apps
from gateway.config import Settings
from gateway.errors import StoreUnavailable
from tests.support.admin_access import (
    ADMIN,
    ADMIN_KEY,
    ADMIN_KEYS,
    CONSOLE,
    HOSTILE,
    HTML,
    console_sign_in,
    csrf_of,
)
from tests.support.clock import FakeClock
from tests.support.gateway_client import GatewayClient, GatewayPair, GatewayPairFactory, login
from tests.support.gateway_settings import auth_section
from tests.support.jwt_tokens import bearer, mint
from tests.support.recording_upstream import Upstream
from tests.support.repository import ROOT

TEMPLATES = ROOT / "gateway" / "admin" / "console"


@pytest.fixture
def console_settings(settings_factory: Callable[..., Settings], users_file: Path) -> Settings:
    return settings_factory(auth=auth_section(users_file), admin=ADMIN_KEYS)


@pytest.fixture
async def pair(
    gateway_pair_factory: GatewayPairFactory,
    console_settings: Settings,
    fake_server: fakeredis.FakeServer,
    clock: FakeClock,
) -> GatewayPair:
    """(public client, admin client) of one gateway on fakeredis."""
    redis = fakeredis.FakeAsyncRedis(server=fake_server)
    return await gateway_pair_factory(console_settings, redis=redis, clock=clock)


async def audit_entries(admin: GatewayClient) -> list[dict[str, Any]]:
    resp = await admin.get("/admin/audit", headers=ADMIN)
    assert resp.status == 200
    entries: list[dict[str, Any]] = (await resp.json())["entries"]
    return entries


# ---- sign-in --------------------------------------------------------------------------


async def test_unsigned_browser_is_sent_to_sign_in_and_other_clients_get_401(
    pair: GatewayPair,
) -> None:
    _, admin = pair
    resp = await admin.get(CONSOLE, headers=HTML, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == f"{CONSOLE}signin"
    resp = await admin.get(f"{CONSOLE}users?sub=alice", allow_redirects=False)
    assert resp.status == 401
    assert await resp.json() == {
        "error": "invalid_client",
        "error_description": "sign in to the console first",
    }
    resp = await admin.get("/admin/console", allow_redirects=False)  # without the slash
    assert (resp.status, resp.headers["Location"]) == (303, CONSOLE)
    page = await admin.get(f"{CONSOLE}signin", headers=HTML)
    assert page.status == 200
    assert 'name="key" type="password"' in await page.text()


async def test_sign_in_sets_a_strict_http_only_cookie_scoped_to_the_console(
    pair: GatewayPair,
) -> None:
    _, admin = pair
    resp = await admin.post(f"{CONSOLE}signin", data={"key": ADMIN_KEY}, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == CONSOLE
    cookie = resp.cookies["gw_console"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == CONSOLE
    assert cookie["max-age"] == "900"
    assert not cookie["secure"]  # plain HTTP, cookie_secure off
    assert cookie.value.startswith("gwcs_")
    assert ADMIN_KEY not in resp.headers["Set-Cookie"]
    entries = await audit_entries(admin)
    assert [(e["actor"], e["action"]) for e in entries] == [("admin-key:ops", "console_sign_in")]


async def test_cookie_secure_setting_marks_the_cookie_secure(
    aiohttp_client: AiohttpClient, console_settings: Settings
) -> None:
    admin_settings = console_settings.admin.model_copy(
        update={
            "console": console_settings.admin.console.model_copy(update={"cookie_secure": True})
        }
    )
    settings = console_settings.model_copy(update={"admin": admin_settings})
    _, admin_app = create_apps(settings, redis=fakeredis.FakeAsyncRedis())
    admin = await aiohttp_client(admin_app)
    resp = await admin.post(f"{CONSOLE}signin", data={"key": ADMIN_KEY}, allow_redirects=False)
    assert resp.cookies["gw_console"]["secure"] is True


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"key": "gwadm_wrong-key"}, 401, "invalid_client"),
        ({"key": ADMIN_KEY + "x"}, 401, "invalid_client"),
        ({"key": ""}, 400, "invalid_request"),
        ({}, 400, "invalid_request"),
        ({"key": "k" * 600}, 400, "invalid_request"),
    ],
    ids=["wrong", "suffixed", "empty", "missing", "too-long"],
)
async def test_a_bad_key_is_refused_and_nothing_is_signed_in(
    pair: GatewayPair, form: dict[str, str], status: int, error: str
) -> None:
    _, admin = pair
    resp = await admin.post(f"{CONSOLE}signin", data=form, allow_redirects=False)
    assert resp.status == status
    assert (await resp.json())["error"] == error
    assert "gw_console" not in resp.cookies
    resp = await admin.get(f"{CONSOLE}revocations", allow_redirects=False)
    assert resp.status == 401
    assert await audit_entries(admin) == []


async def test_a_wrong_key_in_a_browser_gets_the_form_again_with_the_reason(
    pair: GatewayPair,
) -> None:
    _, admin = pair
    resp = await admin.post(
        f"{CONSOLE}signin", data={"key": "nope"}, headers=HTML, allow_redirects=False
    )
    assert resp.status == 401
    page = await resp.text()
    assert 'id="signin-error">invalid admin API key<' in page
    assert 'name="key"' in page


@pytest.fixture
async def guarded_pair(
    gateway_pair_factory: GatewayPairFactory,
    settings_factory: Callable[..., Settings],
    users_file: Path,
    fake_server: fakeredis.FakeServer,
    clock: FakeClock,
) -> GatewayPair:
    """A gateway whose admin keys take 3 failed checks per address and 5 minutes."""
    admin = {**ADMIN_KEYS, "key_failures_per_ip": {"limit": 3, "window": 300}}
    settings = settings_factory(auth=auth_section(users_file), admin=admin)
    redis = fakeredis.FakeAsyncRedis(server=fake_server)
    return await gateway_pair_factory(settings, redis=redis, clock=clock)


async def assert_throttled(resp: Any) -> None:
    assert resp.status == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 300
    if resp.content_type == "application/json":
        assert (await resp.json())["error"] == "rate_limited"


async def test_guessing_admin_keys_at_the_console_sign_in_is_throttled(
    guarded_pair: GatewayPair, clock: FakeClock
) -> None:
    _, admin = guarded_pair
    for _ in range(3):
        resp = await admin.post(f"{CONSOLE}signin", data={"key": "guess"}, allow_redirects=False)
        assert resp.status == 401
    # from then on even the right key is refused, before it is compared
    for form in ({"key": "guess"}, {"key": ADMIN_KEY}):
        resp = await admin.post(f"{CONSOLE}signin", data=form, allow_redirects=False)
        await assert_throttled(resp)
    page = await admin.post(f"{CONSOLE}signin", data={"key": ADMIN_KEY}, headers=HTML)
    await assert_throttled(page)
    assert "text/html" in page.headers["Content-Type"]
    # the admin API checks the same keys: the same count
    await assert_throttled(await admin.get("/admin/revocations", headers=ADMIN))
    clock.now += 300
    resp = await admin.post(f"{CONSOLE}signin", data={"key": ADMIN_KEY}, allow_redirects=False)
    assert resp.status == 303


async def test_guessing_admin_keys_at_the_api_is_throttled(
    guarded_pair: GatewayPair, fake_server: fakeredis.FakeServer, clock: FakeClock
) -> None:
    _, admin = guarded_pair
    assert (await admin.get("/admin/revocations", headers=ADMIN)).status == 200
    for key in ("guess-1", "guess-2", "guess-3"):
        wrong = {"Authorization": f"Bearer {key}"}
        assert (await admin.get("/admin/revocations", headers=wrong)).status == 401
    await assert_throttled(await admin.get("/admin/revocations", headers=ADMIN))
    resp = await admin.post(f"{CONSOLE}signin", data={"key": ADMIN_KEY}, allow_redirects=False)
    await assert_throttled(resp)
    clock.now += 300
    assert (await admin.get("/admin/revocations", headers=ADMIN)).status == 200
    # with Redis away the count goes on in the process: guessing is never unthrottled
    fake_server.connected = False
    try:
        for key in ("guess-4", "guess-5", "guess-6"):
            wrong = {"Authorization": f"Bearer {key}"}
            assert (await admin.get("/admin/revocations", headers=wrong)).status == 401
        await assert_throttled(await admin.get("/admin/revocations", headers=ADMIN))
    finally:
        fake_server.connected = True


async def test_the_console_cookie_is_no_admin_api_key_and_the_api_is_unchanged(
    pair: GatewayPair,
) -> None:
    _, admin = pair
    await console_sign_in(admin)
    resp = await admin.get("/admin/revocations")  # the console cookie rides along: refused
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_client"
    resp = await admin.get("/admin/revocations", headers=ADMIN)
    assert resp.status == 200


async def test_sign_out_ends_the_session_everywhere(pair: GatewayPair) -> None:
    _, admin = pair
    csrf = await console_sign_in(admin)
    cookie = next(c for c in admin.session.cookie_jar if c.key == "gw_console").value
    resp = await admin.post(f"{CONSOLE}signout", data={"csrf": csrf}, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == f"{CONSOLE}signin?notice=signed-out"
    assert resp.cookies["gw_console"].value == ""
    # The old cookie replayed (say, from another worker's point of view) is dead.
    resp = await admin.get(
        f"{CONSOLE}revocations", cookies={"gw_console": cookie}, allow_redirects=False
    )
    assert resp.status == 401
    actions = [e["action"] for e in await audit_entries(admin)]
    assert actions == ["console_sign_out", "console_sign_in"]


async def test_a_console_session_ends_after_its_lifetime(
    pair: GatewayPair, clock: FakeClock
) -> None:
    _, admin = pair
    await console_sign_in(admin)
    clock.now += 901
    resp = await admin.get(f"{CONSOLE}users", headers=HTML, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == f"{CONSOLE}signin"


async def test_a_forged_cookie_is_not_a_session(pair: GatewayPair) -> None:
    _, admin = pair
    for value in ("gwcs_" + "A" * 43, "anything", "gwcs_" + "x" * 300):
        resp = await admin.get(
            f"{CONSOLE}revocations", cookies={"gw_console": value}, allow_redirects=False
        )
        assert resp.status == 401, value


# ---- revoking through the console ---------------------------------------------------------


async def test_revoke_one_session_after_confirming(pair: GatewayPair, upstream: Upstream) -> None:
    public, admin = pair
    laptop = await login(public, device_id="laptop", device_name="Alice's laptop")
    phone = await login(public, device_id="phone", device_name="Alice's phone")
    csrf = await console_sign_in(admin)
    page = await (await admin.get(f"{CONSOLE}users?sub=alice", headers=HTML)).text()
    assert "Alice&#39;s laptop" in page and "Alice&#39;s phone" in page
    sid = laptop["session_id"]
    confirm = await admin.get(f"{CONSOLE}sessions/revoke?sid={sid}", headers=HTML)
    assert confirm.status == 200
    text = await confirm.text()
    assert sid in text and "Revoke session" in text
    assert (await public.get("/api", headers=bearer(laptop["access_token"]))).status == 200

    resp = await admin.post(
        f"{CONSOLE}sessions/revoke",
        data={"csrf": csrf, "sid": sid, "sub": "alice"},
        allow_redirects=False,
    )
    assert resp.status == 303
    back = resp.headers["Location"]
    assert back.startswith(f"{CONSOLE}users?sub=alice&notice=session-revoked")
    received = len(upstream.received)
    resp = await public.get("/api", headers=bearer(laptop["access_token"]))
    assert resp.status == 401
    assert "revoked" in resp.headers["WWW-Authenticate"]
    assert len(upstream.received) == received
    assert (await public.get("/api", headers=bearer(phone["access_token"]))).status == 200
    refreshed = await public.post("/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    assert refreshed.status == 400
    entry = (await audit_entries(admin))[0]
    assert (entry["actor"], entry["action"], entry["target"]) == (
        "admin-key:ops",
        "revoke_session",
        sid,
    )
    after = await (await admin.get(back, headers=HTML)).text()
    assert f"Session {sid} revoked" in after
    assert f'data-sid="{sid}"' not in after


async def test_revoke_everything_of_a_user(pair: GatewayPair) -> None:
    public, admin = pair
    first = await login(public, device_id="a")
    second = await login(public, device_id="b")
    bob = await login(public, "bob", "builder")
    csrf = await console_sign_in(admin)
    confirm = await admin.get(f"{CONSOLE}users/revoke?sub=alice", headers=HTML)
    assert confirm.status == 200
    assert "All 2 live sessions end" in await confirm.text()
    resp = await admin.post(
        f"{CONSOLE}users/revoke", data={"csrf": csrf, "sub": "alice"}, allow_redirects=False
    )
    assert resp.status == 303
    assert "notice=user-revoked" in resp.headers["Location"]
    for token in (first["access_token"], second["access_token"]):
        assert (await public.get("/api", headers=bearer(token))).status == 401
    assert (await public.get("/api", headers=bearer(bob["access_token"]))).status == 200
    page = await (await admin.get(resp.headers["Location"], headers=HTML)).text()
    assert "No live sessions for this user." in page
    assert "Everything of alice revoked (2 sessions ended)" in page
    entry = (await audit_entries(admin))[0]
    assert (entry["actor"], entry["action"], entry["target"]) == (
        "admin-key:ops",
        "revoke_user",
        "alice",
    )
    again = await login(public)  # logging in again works
    assert (await public.get("/api", headers=bearer(again["access_token"]))).status == 200


async def test_revoke_a_pasted_token_after_seeing_whose_it_is(pair: GatewayPair) -> None:
    public, admin = pair
    body = await login(public)
    csrf = await console_sign_in(admin)
    resp = await admin.post(
        f"{CONSOLE}token/inspect",
        data={"csrf": csrf, "token": " " + body["access_token"] + "\n"},
        headers=HTML,
    )
    assert resp.status == 200
    page = await resp.text()
    assert 'id="token-sub">alice<' in page
    jti = re.search(r'id="token-jti">([^<]+)<', page)
    assert jti is not None
    assert body["access_token"] not in page  # the token itself is not echoed
    assert (await public.get("/api", headers=bearer(body["access_token"]))).status == 200
    exp = re.search(r'name="exp" value="([^"]+)"', page)
    assert exp is not None
    resp = await admin.post(
        f"{CONSOLE}token/revoke",
        data={"csrf": csrf_of(page), "jti": jti.group(1), "exp": exp.group(1)},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert "notice=token-revoked" in resp.headers["Location"]
    assert (await public.get("/api", headers=bearer(body["access_token"]))).status == 401
    entry = (await audit_entries(admin))[0]
    assert (entry["action"], entry["target"]) == ("revoke_token", jti.group(1))


async def test_an_expired_token_shows_expired_and_offers_nothing_to_confirm(
    pair: GatewayPair, key_files: dict[str, Path]
) -> None:
    _, admin = pair
    token = mint(key_files, sub="alice", iat=1000, nbf=1000, exp=2000)
    csrf = await console_sign_in(admin)
    page = await (
        await admin.post(f"{CONSOLE}token/inspect", data={"csrf": csrf, "token": token})
    ).text()
    assert "(expired)" in page
    assert "token/revoke" not in page


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("token/inspect", {"token": "not-a-jwt"}),
        ("token/inspect", {"token": ""}),
        ("token/revoke", {"jti": "bad jti", "exp": "2000000000"}),
        ("token/revoke", {"jti": "ok", "exp": "soon"}),
        ("token/revoke", {"jti": "ok", "exp": "nan"}),
        ("sessions/revoke", {"sid": "no such sid!"}),
        ("users/revoke", {"sub": ""}),
        ("users/revoke", {"sub": "x" * 300}),
    ],
)
async def test_bad_console_forms_are_400(
    pair: GatewayPair, path: str, form: dict[str, str]
) -> None:
    _, admin = pair
    csrf = await console_sign_in(admin)
    resp = await admin.post(f"{CONSOLE}{path}", data={"csrf": csrf, **form})
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"


async def test_console_forms_are_read_under_the_gateways_body_limit(pair: GatewayPair) -> None:
    _, admin = pair
    csrf = await console_sign_in(admin)
    resp = await admin.post(
        f"{CONSOLE}token/inspect", data={"csrf": csrf, "token": "x" * (70 * 1024)}
    )
    assert resp.status == 413
    assert (await resp.json())["error"] == "payload_too_large"
    resp = await admin.post(
        f"{CONSOLE}users/revoke",
        data=f"csrf={csrf}&sub=alice&sub=bob",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"


async def test_an_unknown_session_is_404(pair: GatewayPair) -> None:
    _, admin = pair
    csrf = await console_sign_in(admin)
    resp = await admin.post(
        f"{CONSOLE}sessions/revoke", data={"csrf": csrf, "sid": "abcdef12-AAAAAAAAAAAAAAAAAAAAAA"}
    )
    assert resp.status == 404
    assert await resp.json() == {"error": "not_found", "error_description": "no such session"}
    resp = await admin.get(
        f"{CONSOLE}sessions/revoke?sid=abcdef12-AAAAAAAAAAAAAAAAAAAAAA", headers=HTML
    )
    assert resp.status == 404
    assert "no such session" in await resp.text()


# ---- CSRF ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("csrf", "headers"),
    [
        (None, {}),
        ("wrong-token", {}),
        ("", {}),
        ("RIGHT", {"Origin": "http://evil.example"}),
        ("RIGHT", {"Origin": "null"}),
        ("RIGHT", {"Sec-Fetch-Site": "cross-site"}),
        ("RIGHT", {"Sec-Fetch-Site": "same-site"}),
    ],
    ids=["missing", "wrong", "empty", "origin", "null-origin", "cross-site", "same-site"],
)
async def test_a_console_action_without_the_sessions_csrf_token_or_from_elsewhere_is_403(
    pair: GatewayPair, csrf: str | None, headers: dict[str, str]
) -> None:
    public, admin = pair
    body = await login(public)
    right = await console_sign_in(admin)
    form = {"sid": body["session_id"], "sub": "alice"}
    if csrf is not None:
        form["csrf"] = right if csrf == "RIGHT" else csrf
    resp = await admin.post(f"{CONSOLE}sessions/revoke", data=form, headers=headers)
    assert resp.status == 403
    payload = await resp.json()
    assert payload["error"] == "access_denied"
    assert (await public.get("/api", headers=bearer(body["access_token"]))).status == 200
    assert [e["action"] for e in await audit_entries(admin)] == ["console_sign_in"]


async def test_a_json_post_carries_no_csrf_token_and_is_refused(pair: GatewayPair) -> None:
    public, admin = pair
    body = await login(public)
    await console_sign_in(admin)
    resp = await admin.post(f"{CONSOLE}users/revoke", json={"sub": "alice"})
    assert resp.status == 403
    assert (await public.get("/api", headers=bearer(body["access_token"]))).status == 200


async def test_a_same_origin_post_passes(pair: GatewayPair) -> None:
    public, admin = pair
    body = await login(public)
    csrf = await console_sign_in(admin)
    origin = f"http://{admin.host}:{admin.port}"
    resp = await admin.post(
        f"{CONSOLE}users/revoke",
        data={"csrf": csrf, "sub": "alice"},
        headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert (await public.get("/api", headers=bearer(body["access_token"]))).status == 401


async def test_a_cross_site_sign_in_post_is_refused(pair: GatewayPair) -> None:
    _, admin = pair
    resp = await admin.post(
        f"{CONSOLE}signin", data={"key": ADMIN_KEY}, headers={"Origin": "http://evil.example"}
    )
    assert resp.status == 403
    assert "gw_console" not in resp.cookies


# ---- escaping, headers, assets ------------------------------------------------------------


async def test_hostile_values_are_shown_as_text(pair: GatewayPair) -> None:
    public, admin = pair
    await login(public, device_id="d1", device_name=HOSTILE)
    csrf = await console_sign_in(admin)
    page = await (await admin.get(f"{CONSOLE}users?sub=alice", headers=HTML)).text()
    assert str(escape(HOSTILE)) in page
    assert "<script>window" not in page and "<img src=x" not in page
    # A hostile sub: in the heading, the search field and, once revoked, the audit trail.
    resp = await admin.get(f"{CONSOLE}users", params={"sub": HOSTILE}, headers=HTML)
    page = await resp.text()
    assert "<script>window" not in page and "<img src=x" not in page
    assert str(escape(HOSTILE)) in page
    resp = await admin.post(
        f"{CONSOLE}users/revoke", data={"csrf": csrf, "sub": HOSTILE}, allow_redirects=False
    )
    assert resp.status == 303
    for path in (resp.headers["Location"], f"{CONSOLE}audit", f"{CONSOLE}revocations"):
        page = await (await admin.get(path, headers=HTML)).text()
        assert "<script>window" not in page and "<img src=x" not in page, path
        assert str(escape(HOSTILE)) in page, path


async def test_pages_carry_a_strict_policy_and_are_not_cached(pair: GatewayPair) -> None:
    _, admin = pair
    await console_sign_in(admin)
    for path in ("", "users", "token", "revocations", "audit", "signin"):
        resp = await admin.get(f"{CONSOLE}{path}", headers=HTML)
        assert resp.status == 200, path
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.content_type == "text/html"


async def test_every_asset_is_served_by_the_gateway(pair: GatewayPair) -> None:
    _, admin = pair
    for asset, kind in (("console.css", "text/css"), ("console.js", "text/javascript")):
        resp = await admin.get(f"{CONSOLE}static/{asset}")  # no sign-in needed for assets
        assert resp.status == 200
        assert resp.content_type in (kind, "application/javascript")
    shipped = [*TEMPLATES.glob("templates/*.html"), *TEMPLATES.glob("static/*")]
    assert len(shipped) >= 10
    for path in shipped:
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), path  # no CDN, fonts
        assert "<style" not in text and " style=" not in text, path  # the CSP allows none
        assert "onclick" not in text and "<script>" not in text, path


async def test_the_console_is_not_on_the_public_listener(
    pair: GatewayPair, upstream: Upstream
) -> None:
    public, _ = pair
    for path in (CONSOLE, f"{CONSOLE}signin", f"{CONSOLE}static/console.css"):
        assert (await public.get(path)).status == 404
    assert (await public.post(f"{CONSOLE}signin", data={"key": ADMIN_KEY})).status == 404
    assert upstream.received == []


async def test_a_disabled_console_is_not_served(
    aiohttp_client: AiohttpClient, console_settings: Settings
) -> None:
    admin_settings = console_settings.admin.model_copy(
        update={"console": console_settings.admin.console.model_copy(update={"enabled": False})}
    )
    settings = console_settings.model_copy(update={"admin": admin_settings})
    _, admin_app = create_apps(settings, redis=fakeredis.FakeAsyncRedis())
    admin = await aiohttp_client(admin_app)
    assert (await admin.get(f"{CONSOLE}signin")).status == 401
    assert (await admin.get(f"{CONSOLE}signin", headers=ADMIN)).status == 404


async def test_an_unknown_console_page_is_404(pair: GatewayPair) -> None:
    _, admin = pair
    await console_sign_in(admin)
    resp = await admin.get(f"{CONSOLE}nothing-here")
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
    resp = await admin.get(f"{CONSOLE}nothing-here", headers=HTML)
    assert resp.status == 404
    assert "404 · not_found" in await resp.text()


# ---- Redis down ---------------------------------------------------------------------------


async def test_redis_down_is_503_with_retry_after_and_nothing_half_done(
    pair: GatewayPair, fake_server: fakeredis.FakeServer
) -> None:
    public, admin = pair
    body = await login(public)
    csrf = await console_sign_in(admin)
    fake_server.connected = False
    try:
        for method, path, form in (
            ("GET", "users?sub=alice", None),
            ("POST", "sessions/revoke", {"csrf": csrf, "sid": body["session_id"]}),
            ("POST", "users/revoke", {"csrf": csrf, "sub": "alice"}),
            ("POST", "signin", {"key": ADMIN_KEY}),
        ):
            resp = await admin.request(method, f"{CONSOLE}{path}", data=form)
            assert resp.status == 503, path
            assert resp.headers["Retry-After"] == str(StoreUnavailable.retry_after)
            assert await resp.json() == {
                "error": "temporarily_unavailable",
                "error_description": "the token store is temporarily unavailable",
            }
        resp = await admin.get(f"{CONSOLE}users?sub=alice", headers=HTML)
        assert resp.status == 503
        assert resp.headers["Retry-After"] == str(StoreUnavailable.retry_after)
        page = await resp.text()
        assert "Nothing was changed" in page
        assert f"try again in {StoreUnavailable.retry_after} s" in page
    finally:
        fake_server.connected = True
    # Nothing was done: the session lives, the audit trail has no revocation.
    assert (await public.get("/api", headers=bearer(body["access_token"]))).status == 200
    page = await (await admin.get(f"{CONSOLE}users?sub=alice", headers=HTML)).text()
    assert body["session_id"] in page
    assert [e["action"] for e in await audit_entries(admin)] == ["console_sign_in"]


# ---- audit trail and status ---------------------------------------------------------------


async def test_audit_trail_newest_first_and_filtered(pair: GatewayPair) -> None:
    public, admin = pair
    bodies = [await login(public, device_id=f"d{i}") for i in range(3)]
    csrf = await console_sign_in(admin)
    for body in bodies[:2]:
        await admin.post(
            f"{CONSOLE}sessions/revoke", data={"csrf": csrf, "sid": body["session_id"]}
        )
    await admin.post(f"{CONSOLE}users/revoke", data={"csrf": csrf, "sub": "bob"})
    await admin.post("/admin/users/carol/revoke", headers=ADMIN)  # through the API: same key id

    def rows(page: str) -> list[tuple[str, str]]:
        return re.findall(
            r'<td class="nowrap">(admin-key:[^<]+)</td>\s*<td class="nowrap">([a-z_]+)</td>', page
        )

    page = await (await admin.get(f"{CONSOLE}audit", headers=HTML)).text()
    assert [a for _, a in rows(page)] == [
        "revoke_user",
        "revoke_user",
        "revoke_session",
        "revoke_session",
        "console_sign_in",
    ]
    assert {k for k, _ in rows(page)} == {"admin-key:ops"}
    page = await (await admin.get(f"{CONSOLE}audit?action=revoke_session", headers=HTML)).text()
    assert [a for _, a in rows(page)] == ["revoke_session", "revoke_session"]
    target = bodies[0]["session_id"]
    page = await (await admin.get(f"{CONSOLE}audit?target={target[-10:]}", headers=HTML)).text()
    assert len(rows(page)) == 1 and target in page
    page = await (await admin.get(f"{CONSOLE}audit?key=ops&target=bob", headers=HTML)).text()
    assert [a for _, a in rows(page)] == ["revoke_user"]
    page = await (await admin.get(f"{CONSOLE}audit?key=someone-else", headers=HTML)).text()
    assert rows(page) == [] and 'id="no-entries"' in page


async def test_audit_trail_pages_back(pair: GatewayPair) -> None:
    _, admin = pair
    for i in range(60):
        await admin.post(f"/admin/users/u{i}/revoke", headers=ADMIN)
    await console_sign_in(admin)
    page = await (await admin.get(f"{CONSOLE}audit?action=revoke_user", headers=HTML)).text()
    targets = re.findall(r'<td class="mono id">(u\d+)</td>', page)
    assert targets == [f"u{i}" for i in range(59, 9, -1)]  # 50 per page, newest first
    older = re.search(r'href="([^"]+)" id="older"', page)
    assert older is not None
    page = await (await admin.get(html.unescape(older.group(1)), headers=HTML)).text()
    assert re.findall(r'<td class="mono id">(u\d+)</td>', page) == [
        f"u{i}" for i in range(9, -1, -1)
    ]
    assert 'id="older"' not in page


@pytest.mark.parametrize("before", ["garbage", "99999999999999999999999-0", "1-2-3", "0-0x"])
async def test_a_malformed_audit_cursor_is_400_not_a_store_outage(
    pair: GatewayPair, before: str
) -> None:
    _, admin = pair
    await admin.post("/admin/users/alice/revoke", headers=ADMIN)
    await console_sign_in(admin)
    resp = await admin.get(f"{CONSOLE}audit", params={"before": before})
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"
    page = await admin.get(f"{CONSOLE}audit", params={"before": before}, headers=HTML)
    assert page.status == 400
    assert "temporarily" not in await page.text()
    # the oldest entry's own id pages back to nothing, without a store error
    resp = await admin.get(f"{CONSOLE}audit", params={"before": "0-0"}, headers=HTML)
    assert resp.status == 200


async def test_revocations_page_lists_the_view(pair: GatewayPair) -> None:
    public, admin = pair
    body = await login(public)
    await admin.post("/admin/revoke/token", json={"token": body["access_token"]}, headers=ADMIN)
    await console_sign_in(admin)
    page = await (await admin.get(f"{CONSOLE}revocations", headers=HTML)).text()
    assert "1 entry" in page and "access token" in page


async def test_status_panel_counts_refreshes_and_login_failures(
    pair: GatewayPair,
) -> None:
    public, admin = pair
    body = await login(public)
    await public.post("/auth/login", json={"username": "alice", "password": "wrong"})
    await public.post("/auth/login", json={"username": "nobody", "password": "wrong"})
    first = await public.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert first.status == 200
    await console_sign_in(admin)
    page = await (await admin.get(CONSOLE, headers=HTML)).text()

    def row(table: str, name: str) -> list[int]:
        section = page[page.index(f'id="{table}"') :]
        section = section[: section.index("</table>")]
        match = re.search(rf"<th scope=\"row\">{name}</th>((?:<td[^>]*>\d+</td>)+)", section)
        assert match is not None, (table, name)
        return [int(n) for n in re.findall(r">(\d+)<", match.group(1))]

    assert row("refresh-counters", "rotated") == [1, 1, 1]
    assert row("refresh-counters", "reuse_detected") == [0, 0, 0]
    assert row("login-counters", "success") == [1, 1, 1]
    assert row("login-counters", "bad_credentials") == [2, 2, 2]
    assert row("login-counters", "all failures") == [2, 2, 2]
    assert 'id="redis-reachable">yes<' in page
    assert 'id="fail-mode">closed<' in page
    assert 'id="view-size">0<' in page
    assert 'id="refusing">no<' in page


def test_status_panel_shows_time_windows_in_order() -> None:
    from gateway.admin.console.status import _window_name

    assert [_window_name(s) for s in (60, 300, 900, 12.4)] == ["1 min", "5 min", "15 min", "12 s"]


async def test_reuse_detection_is_flagged_on_the_status_panel(
    pair: GatewayPair, clock: FakeClock
) -> None:
    public, admin = pair
    body = await login(public)
    assert (
        await public.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    ).status == 200
    clock.now += 60  # past the grace window: the spent token again is reuse
    reuse = await public.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert reuse.status == 400
    await console_sign_in(admin)
    page = await (await admin.get(CONSOLE, headers=HTML)).text()
    assert re.search(
        r'<tr class="alert"><th scope="row">reuse_detected</th><td class="num">1</td>', page
    )


def test_timestamps_render_in_utc() -> None:
    from gateway.admin.console.pages import duration, utc_time

    assert utc_time(0) == "—"
    assert utc_time(1_800_000_000) == "2027-01-15 08:00:00 UTC"
    assert [duration(s) for s in (5, 185, 7800, 90000)] == [
        "5 s",
        "3 min 5 s",
        "2 h 10 min",
        "1 d 1 h",
    ]
