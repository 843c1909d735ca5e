"""The authorization code flow through the running gateway: GET /auth/authorize (sign-in by
the browser session's cookies, the consent page), then the code's redemption at POST
/auth/token with PKCE. Every refused request is answered as the RFCs say — a page while the
client's redirect URI is not known good, `error=` at the redirect URI after — and nothing is
issued for it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import fakeredis
import jwt
import pytest
from aiohttp import ClientResponse

from gateway.config import Settings
from tests.support.clock import FakeClock
from tests.support.gateway_client import GatewayClient, GatewayFactory
from tests.support.gateway_settings import on_redis
from tests.support.jwt_tokens import AUDIENCE, ISSUER, bearer
from tests.support.oauth_clients import APP_REDIRECT, app_client, new_verifier, s256
from tests.support.recording_upstream import Upstream
from tests.support.redis_servers import RedisServer

CALLBACK = "http://127.0.0.1:53682/callback"  # the registered loopback URI, on some port
THIRD_PARTY = "https://partner.example/cb"
Signed = Callable[..., Awaitable[GatewayClient]]


@pytest.fixture
def code_flow_settings(
    browser_settings_factory: Callable[..., Settings],
) -> Callable[..., Settings]:
    def make(**sections: Any) -> Settings:
        clients = sections.pop(
            "clients",
            [
                app_client(),
                app_client(
                    "partner",
                    type="confidential",
                    auth_method="client_secret_post",
                    secret_hash="sha256:" + "ab" * 32,
                    redirect_uris=[THIRD_PARTY, "http://127.0.0.1:7777/cb"],
                    consent=True,
                    name="Partner Reports",
                ),
            ],
        )
        return browser_settings_factory(clients=clients, **sections)

    return make


@pytest.fixture
def signed_in(
    gateway_factory: GatewayFactory,
    code_flow_settings: Callable[..., Settings],
    clock: FakeClock,
) -> Signed:
    """The gateway in browser mode with the app clients, and a client whose cookie jar holds
    alice's browser session (signed in on the gateway's own JSON sign-in)."""

    async def make(
        *, sign_in: bool = True, redis_url: str | None = None, **sections: Any
    ) -> GatewayClient:
        jar = aiohttp.CookieJar(unsafe=True)
        settings = code_flow_settings(**sections)
        if redis_url is not None:  # a real redis-server: the store's own client
            client = await gateway_factory(on_redis(settings, redis_url), cookie_jar=jar)
        else:
            redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
            client = await gateway_factory(settings, redis=redis, clock=clock, cookie_jar=jar)
        if sign_in:
            resp = await client.post(
                "/auth/browser/login", json={"username": "alice", "password": "wonderland"}
            )
            assert resp.status == 200, await resp.text()
        return client

    return make


def authorize_query(verifier: str, **overrides: Any) -> dict[str, str]:
    query = {
        "response_type": "code",
        "client_id": "demo-app",
        "redirect_uri": CALLBACK,
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        "scope": "openid reports",
        "state": "st-123",
        "nonce": "n-456",
    }
    query.update(overrides)
    return {k: v for k, v in query.items() if v is not None}


async def authorize(client: GatewayClient, query: dict[str, str] | str) -> ClientResponse:
    text = query if isinstance(query, str) else urlencode(query)
    return await client.get(f"/auth/authorize?{text}", allow_redirects=False)


def answer_of(resp: ClientResponse) -> dict[str, str]:
    """The parameters the browser is sent back to the app with."""
    assert resp.status in (302, 303), resp.status
    location = resp.headers["Location"]
    assert location.startswith(CALLBACK + "?") or location.startswith(THIRD_PARTY), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def code_for(client: GatewayClient, verifier: str, **overrides: Any) -> str:
    answer = answer_of(await authorize(client, authorize_query(verifier, **overrides)))
    assert "code" in answer, answer
    return answer["code"]


async def redeem(client: GatewayClient, code: str, verifier: str, **extra: str) -> ClientResponse:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
        "client_id": "demo-app",
        **extra,
    }
    return await client.post("/auth/token", data={k: v for k, v in form.items() if v})


async def is_page(resp: ClientResponse, status: int = 400) -> str:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "text/html"
    assert "Location" not in resp.headers  # never redirected anywhere
    return await resp.text()


async def refused(resp: ClientResponse, error: str, status: int = 400) -> None:
    body = await resp.json()
    assert (resp.status, body["error"]) == (status, error), body
    assert "access_token" not in body


# ---- the flow -----------------------------------------------------------------------------


async def test_code_flow_issues_tokens_bound_to_the_app(
    signed_in: Signed, upstream: Upstream, clock: FakeClock
) -> None:
    client = await signed_in()
    verifier = new_verifier()
    answer = answer_of(await authorize(client, authorize_query(verifier)))
    assert answer["state"] == "st-123"
    assert answer["iss"] == ISSUER  # RFC 9207
    resp = await redeem(client, answer["code"], verifier)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert resp.headers["Cache-Control"] == "no-store"
    assert body["scope"] == "openid reports"
    assert body["refresh_token"].startswith("gwrt_")
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["client_id"], claims["roles"]) == ("alice", "demo-app", ["user"])
    id_token = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert (id_token["aud"], id_token["nonce"], id_token["sub"]) == ("demo-app", "n-456", "alice")
    assert jwt.get_unverified_header(body["id_token"])["typ"] == "JWT"
    # the ID token is no access token
    resp = await client.get("/api/x", headers=bearer(body["id_token"]))
    assert resp.status == 401

    api = await client.get("/api/orders", headers=bearer(body["access_token"]))
    assert api.status == 200
    assert upstream.headers_of()["x-user-id"] == ["alice"]
    refreshed = await client.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": "demo-app",
        },
    )
    assert refreshed.status == 200, await refreshed.text()
    # a refresh token of demo-app is no other client's
    other = await client.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": (await refreshed.json())["refresh_token"],
            "client_id": "partner",
            "client_secret": "x" * 20,
        },
    )
    assert other.status == 401  # the partner's secret is wrong first of all


async def test_head_issues_nothing(signed_in: Signed) -> None:
    client = await signed_in()
    query = urlencode(authorize_query(new_verifier()))
    resp = await client.head(f"/auth/authorize?{query}", allow_redirects=False)
    assert resp.status == 204 and "Location" not in resp.headers


async def test_loopback_redirects_of_a_public_app_take_any_port(signed_in: Signed) -> None:
    client = await signed_in()
    verifier = new_verifier()
    for uri in ("http://127.0.0.1:1/callback", "http://127.0.0.1:65535/callback", APP_REDIRECT):
        resp = await authorize(client, authorize_query(verifier, redirect_uri=uri))
        assert resp.status == 302
        assert resp.headers["Location"].startswith(uri + "?code=")


async def test_without_a_session_the_user_signs_in_first(signed_in: Signed) -> None:
    client = await signed_in(sign_in=False)
    query = authorize_query(new_verifier())
    resp = await authorize(client, query)
    assert resp.status == 302
    location = resp.headers["Location"]
    assert location.startswith("/auth/browser/login?return_to=%2Fauth%2Fauthorize%3F")
    # the login form sends the browser back to the very same request
    return_to = parse_qs(urlsplit(location).query)["return_to"][0]
    resp = await client.post(
        "/auth/browser/login",
        data={"username": "alice", "password": "wonderland", "return_to": return_to},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == return_to
    resp = await client.get(return_to, allow_redirects=False)
    assert "code" in answer_of(resp)
    # prompt=none without a session: login_required, at the app
    fresh = await signed_in(sign_in=False)
    answer = answer_of(await authorize(fresh, {**query, "prompt": "none"}))
    assert answer["error"] == "login_required" and answer["state"] == "st-123"


async def test_third_party_clients_ask_for_consent(signed_in: Signed) -> None:
    client = await signed_in()
    verifier = new_verifier()
    query = authorize_query(
        verifier, client_id="partner", redirect_uri=THIRD_PARTY, scope="reports"
    )
    resp = await authorize(client, query)
    page = await is_page(resp, 200)
    assert "Partner Reports" in page and "<li>reports</li>" in page
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    form = {"request": urlencode(query), "decision": "deny"}
    odd = await client.post("/auth/authorize/consent", data={**form, "decision": "maybe"})
    await is_page(odd)
    resp = await client.post("/auth/authorize/consent", data=form, allow_redirects=False)
    assert resp.status == 303
    assert answer_of(resp)["error"] == "access_denied"
    # a cross-site page cannot decide for the user
    resp = await client.post(
        "/auth/authorize/consent",
        data={**form, "decision": "allow"},
        headers={"Sec-Fetch-Site": "cross-site"},
        allow_redirects=False,
    )
    assert resp.status == 403
    resp = await client.post(
        "/auth/authorize/consent", data={**form, "decision": "allow"}, allow_redirects=False
    )
    answer = answer_of(resp)
    token = await client.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": THIRD_PARTY,
            "code_verifier": verifier,
            "client_id": "partner",
            "client_secret": "x" * 20,
        },
    )
    await refused(token, "invalid_client", 401)  # its secret is wrong: nothing issued


# ---- refused before the redirect URI is known good: a page --------------------------------


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:53682/other",  # not registered
        "http://127.0.0.1:53682/callback/more",  # a path added
        "http://127.0.0.1:53682/callback?x=1",  # a query added
        "http://127.0.0.1:53682/callback#frag",  # a fragment added
        "https://127.0.0.1/callback",  # https where http was registered
        "http://localhost:53682/callback",  # another host
        "https://evil.example/callback",
    ],
)
async def test_unregistered_redirect_uris_get_a_page(signed_in: Signed, redirect_uri: str) -> None:
    client = await signed_in()
    resp = await authorize(client, authorize_query(new_verifier(), redirect_uri=redirect_uri))
    page = await is_page(resp)
    assert "not registered" in page


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:7778/cb",  # another loopback port: a confidential client's is exact
        "http://partner.example/cb",  # http where https was registered
        THIRD_PARTY + "/",
    ],
)
async def test_confidential_clients_redirect_exactly(signed_in: Signed, redirect_uri: str) -> None:
    client = await signed_in()
    query = authorize_query(new_verifier(), client_id="partner", redirect_uri=redirect_uri)
    await is_page(await authorize(client, query))


async def test_requests_that_cannot_be_trusted_get_a_page(signed_in: Signed) -> None:
    client = await signed_in()
    verifier = new_verifier()
    base = urlencode(authorize_query(verifier))
    for query in (
        base + "&state=second",  # a repeated parameter
        base + "&redirect_uri=" + "https%3A%2F%2Fevil.example%2F",
        urlencode(authorize_query(verifier, client_id="nobody")),
        urlencode(authorize_query(verifier, client_id=None)),
        urlencode(authorize_query(verifier, state="s" * 100_000)),  # a 100 KB state
        urlencode(authorize_query(verifier, state="tab\there")),
    ):
        await is_page(await authorize(client, query))


# ---- refused once the redirect URI is known: error= at the app ----------------------------


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),  # plain, by default
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": None}, "unsupported_response_type"),
        ({"scope": "reports admin"}, "invalid_scope"),  # beyond the client's scopes
        ({"request": "eyJ..."}, "request_not_supported"),
    ],
)
async def test_bad_requests_go_back_to_the_app(
    signed_in: Signed, overrides: dict[str, Any], error: str
) -> None:
    client = await signed_in()
    answer = answer_of(await authorize(client, authorize_query(new_verifier(), **overrides)))
    assert answer["error"] == error
    assert answer["state"] == "st-123"
    assert "code" not in answer


# ---- redemption ---------------------------------------------------------------------------


async def test_a_wrong_verifier_redeems_nothing(signed_in: Signed) -> None:
    client = await signed_in()
    verifier = new_verifier()
    code = await code_for(client, verifier)
    await refused(await redeem(client, code, new_verifier()), "invalid_grant")
    # and the code is spent: the right verifier comes too late
    await refused(await redeem(client, code, verifier), "invalid_grant")
    await refused(await redeem(client, await code_for(client, verifier), "x"), "invalid_grant")


async def test_a_code_used_twice_revokes_what_it_issued(signed_in: Signed) -> None:
    client = await signed_in()
    verifier = new_verifier()
    code = await code_for(client, verifier)
    first = await redeem(client, code, verifier)
    assert first.status == 200
    tokens = await first.json()
    assert (await client.get("/api/x", headers=bearer(tokens["access_token"]))).status == 200
    await refused(await redeem(client, code, verifier), "invalid_grant")
    resp = await client.get("/api/x", headers=bearer(tokens["access_token"]))
    assert resp.status == 401
    again = await client.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    await refused(again, "invalid_grant")


@pytest.mark.redis
@pytest.mark.slow
async def test_codes_on_a_real_redis_server(signed_in: Signed, redis_server: RedisServer) -> None:
    """The code scripts on redis-server itself: issued, taken once, a replay revokes."""
    client = await signed_in(redis_url=redis_server.url)
    verifier = new_verifier()
    code = await code_for(client, verifier)
    first = await redeem(client, code, verifier)
    assert first.status == 200, await first.text()
    access = (await first.json())["access_token"]
    await refused(await redeem(client, code, verifier), "invalid_grant")
    assert (await client.get("/api/x", headers=bearer(access))).status == 401


async def test_an_expired_code_redeems_nothing(signed_in: Signed, clock: FakeClock) -> None:
    client = await signed_in()
    verifier = new_verifier()
    code = await code_for(client, verifier)
    clock.now += 61  # auth.code_ttl is 60 s
    await refused(await redeem(client, code, verifier), "invalid_grant")


async def test_a_code_is_bound_to_its_client_and_redirect_uri(signed_in: Signed) -> None:
    client = await signed_in(
        clients=[app_client(), app_client("other-app")],
    )
    verifier = new_verifier()
    code = await code_for(client, verifier)
    await refused(await redeem(client, code, verifier, client_id="other-app"), "invalid_grant")
    code = await code_for(client, verifier)
    other_port = "http://127.0.0.1:1234/callback"
    await refused(await redeem(client, code, verifier, redirect_uri=other_port), "invalid_grant")
    code = await code_for(client, verifier)
    await refused(await redeem(client, code, verifier, client_id="nobody"), "invalid_client", 401)
    await refused(await redeem(client, "gwac_" + "A" * 43, verifier), "invalid_grant")


async def test_metadata_lists_the_code_flow(signed_in: Signed) -> None:
    client = await signed_in(sign_in=False)
    metadata = await (await client.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["authorization_endpoint"] == f"{ISSUER}/auth/authorize"
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "authorization_code" in metadata["grant_types_supported"]
    assert metadata["token_endpoint_auth_methods_supported"] == ["client_secret_post", "none"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert json.dumps(metadata).count(AUDIENCE) == 0


async def test_after_the_login_form_the_way_back_is_a_page(signed_in: Signed) -> None:
    """Browsers apply the login page's CSP `form-action 'self'` to the redirects its form
    submission follows: reached from there, the code goes back to the app by a page."""
    client = await signed_in()
    query = urlencode(authorize_query(new_verifier()))
    resp = await client.get(
        f"/auth/authorize?{query}",
        headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"},
        allow_redirects=False,
    )
    page = await is_page(resp, 200)
    assert f'<meta http-equiv="refresh" content="0;url={CALLBACK}?code=gwac_' in page
    assert 'id="continue"' in page and "&amp;state=st-123" in page
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    # the consent page lets its form's answer redirect to the app, and nowhere else
    resp = await authorize(
        client,
        authorize_query(new_verifier(), client_id="partner", redirect_uri=THIRD_PARTY),
    )
    assert "form-action 'self' https://partner.example;" in resp.headers["Content-Security-Policy"]
