"""Sign-in at an identity provider (OpenID Connect authorization code flow with PKCE) through
the running gateway, against a fake provider on loopback whose token endpoint redeems the
codes it handed out: the round trip, silent re-login, the provider's logout, the session's
maximum age, and every bad callback, ID token and token endpoint answer."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import jwt
import pytest
from aiohttp import ClientResponse

from tests.browser.test_browser_rejections import RETURN_TO
from tests.support.browser_cookies import ACCESS_COOKIE, REFRESH_COOKIE, CookieJar
from tests.support.clock import FakeClock
from tests.support.identity_provider import IDP_CLIENT_ID, FakeIdentityProvider
from tests.support.jwt_tokens import unsigned_token
from tests.support.provider_sign_in import (
    CALLBACK,
    NAVIGATE,
    PUBLIC_URL,
    SignInGateway,
    back,
    no_session_cookies,
    signed_in,
    start,
)
from tests.support.recording_upstream import Upstream


async def page_says(resp: ClientResponse, status: int, *words: str) -> str:
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "text/html"
    assert "Sign-in did not complete" in text
    for word in words:
        assert word in html.unescape(text), text
    assert no_session_cookies(resp)
    return text


# ---- the round trip ------------------------------------------------------------------------


async def test_sign_in_at_the_provider_opens_a_session_as_a_password_login_does(
    sign_in_gateway: SignInGateway,
    identity_provider: FakeIdentityProvider,
    upstream: Upstream,
) -> None:
    client = await sign_in_gateway()
    jar = CookieJar()
    params = await start(client, jar, return_to="/app/orders?tab=2")
    assert params["response_type"] == "code"
    assert params["client_id"] == IDP_CLIENT_ID
    assert params["redirect_uri"] == f"{PUBLIC_URL}{CALLBACK}"
    assert params["scope"] == "openid profile email"
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 43 and len(params["nonce"]) >= 43
    assert "prompt" not in params
    attempt = [name for name in jar.cookies if name.startswith("gw_login_")]
    assert len(attempt) == 1 and params["state"] not in jar.cookies[attempt[0]]

    code = identity_provider.authorize(params, sub="ada", groups=["staff"], email="ada@corp")
    resp = await back(client, jar, code=code, state=params["state"])
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/app/orders?tab=2"
    assert resp.headers["Cache-Control"] == "private, no-store"
    assert {ACCESS_COOKIE, REFRESH_COOKIE, "gw_idp"} <= set(jar.cookies)
    assert not [name for name in jar.cookies if name.startswith("gw_login_")]  # cleared
    # the token request: the code, the verifier of the challenge, the client's secret (Basic)
    form, headers = identity_provider.token_requests[-1]
    assert form["grant_type"] == "authorization_code" and form["code"] == code
    assert form["redirect_uri"] == f"{PUBLIC_URL}{CALLBACK}"
    assert headers["Authorization"].startswith("Basic ")

    resp = await client.get("/app/orders", headers=jar.header())
    assert resp.status == 200
    seen = upstream.headers_of()
    assert seen["x-user-id"] == ["idp:ada"]
    assert seen["x-user-roles"] == ["user,reports"]
    assert "gw_idp" not in seen.get("cookie", [""])[0]
    session = await (await client.get("/auth/browser/session", headers=jar.header())).json()
    assert session["sub"] == "idp:ada"
    devices = await client.get("/auth/browser/devices", headers=jar.header())
    assert "Chrome on Linux" in await devices.text()
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_provider_logins_total{event="started",provider="idp"} 1.0' in metrics
    assert 'gateway_provider_logins_total{event="completed",provider="idp"} 1.0' in metrics


async def test_the_login_page_offers_the_provider_beside_or_instead_of_the_password_form(
    sign_in_gateway: SignInGateway,
) -> None:
    client = await sign_in_gateway()
    page = await (await client.get("/auth/browser/login?return_to=/app/x")).text()
    assert 'href="/auth/browser/login/idp?return_to=%2Fapp%2Fx"' in page
    assert "Sign in with Example SSO" in page
    assert 'id="password"' in page

    client = await sign_in_gateway(browser={"password_login": False})
    page = await (await client.get("/auth/browser/login")).text()
    assert "Sign in with Example SSO" in page and 'id="password"' not in page
    resp = await client.post(
        "/auth/browser/login", json={"username": "alice", "password": "wonderland"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "unsupported_grant_type"


async def test_several_tabs_signing_in_at_once_each_complete(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider
) -> None:
    client = await sign_in_gateway()
    jar = CookieJar()
    first = await start(client, jar, return_to="/one")
    second = await start(client, jar, return_to="/two")
    code = identity_provider.authorize(second)
    resp = await back(client, jar, code=code, state=second["state"])
    assert resp.headers["Location"] == "/two"
    resp = await back(client, jar, code=identity_provider.authorize(first), state=first["state"])
    assert resp.status == 303 and resp.headers["Location"] == "/one"


@pytest.mark.parametrize("return_to", RETURN_TO)
async def test_return_to_off_site_lands_on_the_root(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider, return_to: str
) -> None:
    client = await sign_in_gateway()
    jar = CookieJar()
    params = await start(client, jar, return_to=return_to)
    resp = await back(client, jar, code=identity_provider.authorize(params), state=params["state"])
    assert resp.status == 303 and resp.headers["Location"] == "/"


async def test_an_unknown_provider_is_404(sign_in_gateway: SignInGateway) -> None:
    client = await sign_in_gateway()
    for path in ("/auth/browser/login/nobody", "/auth/browser/callback/nobody?state=x&code=y"):
        resp = await client.get(path, allow_redirects=False)
        await page_says(resp, 404, "no identity provider of that name")


# ---- bad callbacks: no session, nothing upstream ------------------------------------------


async def test_a_callback_without_state_or_login_cookie_is_refused(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider, upstream: Upstream
) -> None:
    client = await sign_in_gateway()
    jar = CookieJar()
    params = await start(client, jar)
    code = identity_provider.authorize(params)
    await page_says(await back(client, jar, code=code), 400, "no sign-in state")
    # another state than this browser's attempt (mismatch)
    await page_says(
        await back(client, jar, code=code, state=params["state"][:-2] + "xx"),
        400,
        "not started in this browser",
    )
    # the right state in another browser (no login cookie there)
    await page_says(
        await back(client, CookieJar(), code=code, state=params["state"]),
        400,
        "not started in this browser",
    )
    assert identity_provider.token_requests == []
    assert upstream.received == []


async def test_a_replayed_callback_is_refused_and_leaves_the_session_alone(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider
) -> None:
    client = await sign_in_gateway()
    jar = CookieJar()
    params = await start(client, jar)
    before = dict(jar.cookies)  # the browser as it was when it came back the first time
    code = identity_provider.authorize(params)
    assert (await back(client, jar, code=code, state=params["state"])).status == 303
    replay = CookieJar()
    replay.cookies = {**before, **jar.cookies}  # its attempt cookie too, and the new session
    resp = await back(client, replay, code=code, state=params["state"])
    await page_says(resp, 400, "used already")
    assert len(identity_provider.token_requests) == 1  # the code was not sent again
    assert (await client.get("/app/", headers=jar.header())).status == 200  # still signed in


def _hs256(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, "a-shared-secret-of-sufficient-length!", algorithm="HS256")


def _none(claims: dict[str, Any]) -> str:
    return unsigned_token({"alg": "none", "typ": "JWT"}, claims)


BAD_ID_TOKENS = [
    ({"nonce": "not-the-one"}, "nonce is not this sign-in's"),
    ({"aud": "another-client"}, "for another client"),
    ({"aud": [IDP_CLIENT_ID, "other"], "azp": "other"}, "authorized party is another client"),
    ({"azp": "other"}, "authorized party is another client"),
    ({"exp": 1}, "expired"),
    ({"iat": 4102444800, "exp": 4102448400}, "not valid yet"),
    ({"_headers": {"kid": "rotated-away"}, "_key": "attacker"}, "unknown key"),
    ({"_forge": _none}, "algorithm is not allowed"),
    ({"_forge": _hs256}, "algorithm is not allowed"),
    ({"iss": "https://other.example"}, "wrong issuer"),
    ({"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}, "does not match its access token"),
]


@pytest.mark.parametrize(("claims", "says"), BAD_ID_TOKENS)
async def test_a_bad_id_token_signs_nobody_in(
    sign_in_gateway: SignInGateway,
    identity_provider: FakeIdentityProvider,
    upstream: Upstream,
    claims: dict[str, Any],
    says: str,
) -> None:
    client = await sign_in_gateway()
    jar, resp = await signed_in(client, identity_provider, **claims)
    await page_says(resp, 400, says)
    assert not [name for name in jar.cookies if name.startswith("gw_login_")]
    assert (await client.get("/app/", headers=jar.header())).status in (302, 401)
    assert upstream.received == []
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_provider_logins_total{event="failed",provider="idp"} 1.0' in metrics


async def test_an_unknown_kid_refetches_the_keys_once_per_interval(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await sign_in_gateway()
    assert (await signed_in(client, identity_provider))[1].status == 303  # keys fetched
    fetched = identity_provider.count("/jwks")
    clock.now += 31
    for _ in range(3):
        _, resp = await signed_in(
            client, identity_provider, _headers={"kid": "nobody"}, _key="attacker"
        )
        await page_says(resp, 400, "unknown key")
    assert identity_provider.count("/jwks") == fetched + 1


async def test_max_age_asks_for_a_recent_sign_in_at_the_provider(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await sign_in_gateway(login={"extra_params": {"max_age": "300", "prompt": "login"}})
    jar = CookieJar()
    params = await start(client, jar)
    assert params["max_age"] == "300" and params["prompt"] == "login"
    code = identity_provider.authorize(params, auth_time=int(clock.now) - 3600)
    await page_says(await back(client, jar, code=code, state=params["state"]), 400, "too old")
    _, resp = await signed_in(client, identity_provider, auth_time=int(clock.now) - 10)
    assert resp.status == 303


TOKEN_ENDPOINT_FAILURES = [
    ("error", 502, "did not complete the sign-in"),
    ("html", 502, "did not complete the sign-in"),
    ("huge", 502, "did not complete the sign-in"),
    ("refuse", 400, "refused the sign-in code (invalid_grant)"),
    pytest.param("hang", 504, "did not answer in time", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("mode", "status", "says"), TOKEN_ENDPOINT_FAILURES)
async def test_a_failing_token_endpoint_is_a_page_and_no_session(
    sign_in_gateway: SignInGateway,
    identity_provider: FakeIdentityProvider,
    upstream: Upstream,
    mode: str,
    status: int,
    says: str,
) -> None:
    client = await sign_in_gateway()
    identity_provider.token_mode = mode
    _, resp = await signed_in(client, identity_provider)
    await page_says(resp, status, says)
    assert upstream.received == []
    identity_provider.release.set()


async def test_the_providers_error_is_shown_escaped(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider
) -> None:
    client = await sign_in_gateway()
    jar = CookieJar()
    params = await start(client, jar)
    markup = '<script>alert(1)</script><a href="//evil">click</a>'
    resp = await back(
        client, jar, error="access_denied", error_description=markup, state=params["state"]
    )
    text = await page_says(resp, 403, "Example SSO did not sign you in (access_denied)", markup)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert identity_provider.token_requests == []
    metrics = await (await client.get("/metrics")).text()
    assert (
        'gateway_provider_login_failures_total{provider="idp",reason="provider_access_denied"} 1.0'
        in metrics
    )


# ---- silent re-login, the provider's logout, the session's age ---------------------------


async def test_silent_re_login_after_the_session_ended(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider, upstream: Upstream
) -> None:
    client = await sign_in_gateway()
    jar, resp = await signed_in(client, identity_provider, sub="ada")
    hint = jar.cookies["gw_idp"]
    ended = CookieJar()
    ended.cookies = {"gw_idp": hint}  # the session's cookies are gone, the hint stays
    # an API call still gets the 401
    resp = await client.get("/app/api", headers={**ended.header(), "Accept": "application/json"})
    assert resp.status == 401
    # a navigation goes to the provider first, without a prompt for the user
    resp = await client.get(
        "/app/x?y=1", headers={**ended.header(), **NAVIGATE}, allow_redirects=False
    )
    assert resp.status == 302
    assert resp.headers["Location"] == (
        f"/auth/browser/login/idp?return_to={quote('/app/x?y=1', safe='')}&prompt=none"
    )
    params = await start(client, ended, return_to="/app/x?y=1", silent=True)
    assert params["prompt"] == "none"
    resp = await back(
        client, ended, code=identity_provider.authorize(params, sub="ada"), state=params["state"]
    )
    assert resp.status == 303 and resp.headers["Location"] == "/app/x?y=1"
    assert (await client.get("/app/x", headers=ended.header())).status == 200
    assert upstream.headers_of()["x-user-id"] == ["idp:ada"]

    # the provider's session has ended too: it answers login_required, the login page shows
    ended.cookies = {"gw_idp": ended.cookies["gw_idp"]}
    params = await start(client, ended, silent=True)
    resp = await back(client, ended, error="login_required", state=params["state"])
    assert resp.status == 303
    assert resp.headers["Location"] == "/auth/browser/login?return_to=%2Fapp%2F"
    assert "gw_idp" not in ended.cookies  # no silent attempt again from this browser
    resp = await client.get("/app/", headers={**ended.header(), **NAVIGATE}, allow_redirects=False)
    assert resp.headers["Location"] == "/auth/browser/login?return_to=%2Fapp%2F"
    metrics = await (await client.get("/metrics")).text()
    for event in ("silent_started", "silent_completed", "silent_needs_user"):
        assert f'gateway_provider_logins_total{{event="{event}",provider="idp"}}' in metrics


async def test_logout_goes_on_to_the_providers_end_session_page(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider
) -> None:
    client = await sign_in_gateway()
    jar, resp = await signed_in(client, identity_provider)
    resp = await client.post(
        "/auth/browser/logout",
        data={},
        headers={**jar.header(), "Origin": "http://app.example"},
        allow_redirects=False,
    )
    assert resp.status == 303
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        f"{identity_provider.url}/logout"
    )
    query = dict(parse_qsl(location.query))
    assert query["post_logout_redirect_uri"] == f"{PUBLIC_URL}/auth/browser/login"
    assert query["client_id"] == IDP_CLIENT_ID
    hint = jwt.decode(query["id_token_hint"], options={"verify_signature": False})
    assert hint["iss"] == identity_provider.issuer and hint["aud"] == IDP_CLIENT_ID
    jar.update(resp)
    assert not {ACCESS_COOKIE, REFRESH_COOKIE, "gw_idp"} & set(jar.cookies)


async def test_a_provider_session_is_not_refreshed_past_its_maximum_age(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await sign_in_gateway(login={"max_session_age": 3600})
    jar, _ = await signed_in(client, identity_provider)
    session = await (await client.get("/auth/browser/session", headers=jar.header())).json()
    assert session["session_expires_at"] == pytest.approx(clock.now + 3600, abs=2)
    clock.now += 3601
    stale = CookieJar()
    stale.cookies = dict(jar.cookies)
    resp = await client.post(
        "/auth/browser/refresh", headers={**stale.header(), "Origin": "http://app.example"}
    )
    assert resp.status == 401
    resp = await client.get("/app/", headers={**jar.header(), **NAVIGATE}, allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"].startswith("/auth/browser/login/idp?")  # silently, first


async def test_the_login_cookies_never_reach_the_upstream(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider, upstream: Upstream
) -> None:
    client = await sign_in_gateway()
    jar, _ = await signed_in(client, identity_provider)
    await start(client, jar)  # an attempt in flight
    resp = await client.get("/app/", headers=jar.header("theirs=1"))
    assert resp.status == 200
    assert upstream.headers_of()["cookie"] == ["theirs=1"]


async def test_the_gateway_starts_without_the_provider_and_says_so_on_sign_in(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider
) -> None:
    identity_provider.discovery_issuer = "https://impostor.example"
    client = await sign_in_gateway()
    resp = await client.get("/auth/browser/login/idp", allow_redirects=False)
    await page_says(resp, 503, "cannot be reached right now")
    assert resp.headers["Retry-After"] == "30"
