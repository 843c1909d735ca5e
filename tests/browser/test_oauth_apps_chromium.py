"""Apps sign users in with the authorization code flow and PKCE through the gateway's own
login page, in headless Chromium, with unmodified client libraries: authlib (its httpx
client: authorization URL, code exchange, refresh, revocation) and requests-oauth2client
(metadata discovery, PKCE, the ID token checked against the gateway's JWKS). The app's
redirect URI is a loopback server on a port of its own (RFC 8252), registered without a
port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import fakeredis
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import Settings
from tests.browser.test_browser_chromium import on_thread, screenshot, sign_in, wait_for
from tests.support.oauth_clients import app_client, gateway_at, new_verifier
from tests.support.recording_upstream import Upstream

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
async def app_callback() -> AsyncIterator[tuple[str, list[str]]]:
    """The native app's loopback redirect target: records each callback URL it receives."""
    received: list[str] = []

    async def callback(request: web.Request) -> web.Response:
        received.append(str(request.url))
        return web.Response(text="signed in, back in the app", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/callback", callback)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}/callback", received
    await server.close()


@pytest.fixture
def app_settings(
    browser_settings_factory: Callable[..., Settings], upstream: Upstream
) -> Callable[[str], Settings]:
    def make(base: str) -> Settings:
        return browser_settings_factory(
            tokens={"issuer": base, "audience": "test-api"},
            clients=[app_client("demo-app"), app_client("third-party", consent=True)],
        )

    return make


async def sign_in_at(browser: Any, url: str, received: list[str], tmp_path: Path) -> str:
    """Chromium follows the authorization URL, signs in as alice; the callback URL."""
    await on_thread(browser.get, url)
    await on_thread(
        wait_for, browser, lambda d: "/auth/browser/login" in d.current_url, "the login page"
    )
    await on_thread(sign_in, browser, "alice", "wonderland")
    await on_thread(wait_for, browser, lambda _d: bool(received), "the app's callback")
    return received.pop()


async def test_authlib_code_flow_with_pkce_through_the_login_page(
    browser: Any,
    app_settings: Callable[[str], Settings],
    app_callback: tuple[str, list[str]],
    upstream: Upstream,
    tmp_path: Path,
) -> None:
    from authlib.integrations.httpx_client import AsyncOAuth2Client
    from selenium.webdriver.common.by import By

    redirect_uri, received = app_callback
    async with gateway_at(app_settings, redis=fakeredis.FakeAsyncRedis()) as base:
        verifier = new_verifier()
        async with AsyncOAuth2Client(
            client_id="demo-app",
            redirect_uri=redirect_uri,
            scope="openid reports",
            code_challenge_method="S256",
            token_endpoint_auth_method="none",
        ) as oauth:
            url, state = oauth.create_authorization_url(
                f"{base}/auth/authorize", code_verifier=verifier, nonce="n-1"
            )
            callback = await sign_in_at(browser, url, received, tmp_path)
            assert f"state={state}" in callback
            token = await oauth.fetch_token(
                f"{base}/auth/token", authorization_response=callback, code_verifier=verifier
            )
            assert token["scope"] == "openid reports"
            id_token = jwt.decode(token["id_token"], options={"verify_signature": False})
            assert (id_token["aud"], id_token["nonce"]) == ("demo-app", "n-1")
            resp = await oauth.get(f"{base}/api/orders")
            assert resp.status_code == 200
            assert upstream.headers_of()["x-user-id"] == ["alice"]
            refreshed = await oauth.refresh_token(f"{base}/auth/token")
            assert refreshed["refresh_token"] != token["refresh_token"]
            resp = await oauth.revoke_token(
                f"{base}/auth/revoke",
                token=refreshed["refresh_token"],
                token_type_hint="refresh_token",
            )
            assert resp.status_code == 200
            assert (await oauth.get(f"{base}/api/orders")).status_code == 401

        # a third-party client: the consent page lists what it asks for
        async with AsyncOAuth2Client(
            client_id="third-party",
            redirect_uri=redirect_uri,
            scope="reports",
            code_challenge_method="S256",
            token_endpoint_auth_method="none",
        ) as oauth:
            url, _ = oauth.create_authorization_url(
                f"{base}/auth/authorize", code_verifier=verifier
            )
            await on_thread(browser.get, url)  # alice's browser session is still there
            await on_thread(
                wait_for, browser, lambda d: d.find_elements(By.ID, "allow"), "the consent page"
            )
            scopes = await on_thread(lambda: browser.find_element(By.ID, "scopes").text)
            assert scopes == "reports"
            await on_thread(screenshot, browser, tmp_path, "oauth-consent.png")
            await on_thread(lambda: browser.find_element(By.ID, "allow").click())
            await on_thread(wait_for, browser, lambda _d: bool(received), "the app's callback")
            token = await oauth.fetch_token(
                f"{base}/auth/token", authorization_response=received.pop(), code_verifier=verifier
            )
            assert token["scope"] == "reports"


def requests_oauth2client_code_flow(base: str, redirect_uri: str, browse: Any) -> dict[str, Any]:
    """Discovery, an authorization request with PKCE, the browser, the code exchange (with
    the ID token verified against the gateway's JWKS), then client credentials elsewhere."""
    from requests_oauth2client import OAuth2Client

    client = OAuth2Client.from_discovery_endpoint(
        f"{base}/.well-known/oauth-authorization-server",
        issuer=base,
        client_id="demo-app",
        redirect_uri=redirect_uri,
        id_token_signed_response_alg="EdDSA",
        testing=True,  # plain http on loopback
    )
    request = client.authorization_request(scope="openid reports")
    callback = browse(str(request.uri))
    response = request.validate_callback(callback)
    token = client.authorization_code(response, validate=True)
    id_token: Any = token.id_token  # validated: signature (the JWKS), iss, aud, nonce
    return {"access": str(token), "scope": token.scope, "id_sub": id_token.subject}


async def test_requests_oauth2client_code_flow(
    browser: Any,
    app_settings: Callable[[str], Settings],
    app_callback: tuple[str, list[str]],
    tmp_path: Path,
) -> None:
    redirect_uri, received = app_callback
    loop = asyncio.get_running_loop()
    async with gateway_at(app_settings, redis=fakeredis.FakeAsyncRedis()) as base:

        def browse(url: str) -> str:
            future = asyncio.run_coroutine_threadsafe(
                sign_in_at(browser, url, received, tmp_path), loop
            )
            return future.result(timeout=60)

        result = await asyncio.to_thread(
            requests_oauth2client_code_flow, base, redirect_uri, browse
        )
    assert result["scope"] == "openid reports"
    assert result["id_sub"] == "alice"
    claims = jwt.decode(result["access"], options={"verify_signature": False})
    assert (claims["sub"], claims["client_id"]) == ("alice", "demo-app")
