"""POST /auth/backchannel-logout (OpenID Connect Back-Channel Logout 1.0) through the running
gateway: a provider's logout token ends the gateway sessions its sign-ins opened (by its
session id, or by its subject), audited; every refused token leaves every session alone; and
a second instance on the same Redis refuses the ended session's cookies too."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from gateway.appkeys import SERVICES
from gateway.config import Settings
from tests.support.browser_cookies import CookieJar
from tests.support.clock import FakeClock
from tests.support.gateway_client import GatewayClient, GatewayFactory
from tests.support.gateway_settings import on_redis
from tests.support.identity_provider import BACKCHANNEL_EVENT, FakeIdentityProvider
from tests.support.provider_sign_in import SignInGateway, signed_in
from tests.support.redis_servers import RedisServer
from tests.support.waiting import eventually

PATH = "/auth/backchannel-logout"


async def post_logout(client: GatewayClient, token: str) -> aiohttp.ClientResponse:
    return await client.post(PATH, data={"logout_token": token})


async def status_of(client: GatewayClient, jar: CookieJar) -> int:
    resp = await client.get("/app/api", headers={**jar.header(), "Accept": "application/json"})
    await resp.read()
    return resp.status


async def audit_of(client: GatewayClient) -> list[Any]:
    services = client.app[SERVICES]
    return list(await services.resources.store.audit.recent())


async def test_a_logout_token_by_sid_ends_that_provider_sessions_gateway_sessions(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await sign_in_gateway()
    laptop, _ = await signed_in(client, identity_provider, sub="ada", sid="op-session-1")
    phone, _ = await signed_in(client, identity_provider, sub="ada", sid="op-session-2")
    other, _ = await signed_in(client, identity_provider, sub="bob", sid="op-session-3")
    assert {await status_of(client, j) for j in (laptop, phone, other)} == {200}

    token = identity_provider.logout_token(now=clock.now, sid="op-session-1", sub="ada")
    resp = await post_logout(client, token)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    assert await status_of(client, laptop) == 401
    assert await status_of(client, phone) == 200  # another provider session of ada
    assert await status_of(client, other) == 200
    entry = (await audit_of(client))[0]
    assert (entry.actor, entry.action) == ("idp:idp", "backchannel_logout")
    assert entry.target == "idp sid op-session-1" and len(entry.detail["sessions"]) == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_backchannel_logouts_total{outcome="ended",provider="idp"} 1.0' in metrics


async def test_a_logout_token_with_only_sub_ends_every_session_of_that_user(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await sign_in_gateway()
    laptop, _ = await signed_in(client, identity_provider, sub="ada")
    phone, _ = await signed_in(client, identity_provider, sub="ada", sid="s2")
    other, _ = await signed_in(client, identity_provider, sub="bob")
    password = await client.post(
        "/auth/browser/login", json={"username": "alice", "password": "wonderland"}
    )
    alice = CookieJar()
    alice.update(password)
    resp = await post_logout(client, identity_provider.logout_token(now=clock.now, sub="ada"))
    assert resp.status == 200
    assert await status_of(client, laptop) == 401 and await status_of(client, phone) == 401
    assert await status_of(client, other) == 200 and await status_of(client, alice) == 200


def _without(name: str) -> dict[str, Any]:
    return {name: None}


BAD_LOGOUT_TOKENS: list[tuple[dict[str, Any], str]] = [
    ({"nonce": "n-1"}, "must not carry a nonce"),
    (_without("events"), "lacks the back-channel logout event"),
    ({"events": {"http://schemas.openid.net/event/other": {}}}, "back-channel logout event"),
    ({"events": {BACKCHANNEL_EVENT: "yes"}}, "back-channel logout event"),
    ({"sub": None}, "neither a sid nor a sub"),
    (_without("jti"), "has no jti"),
    ({"aud": "another-client"}, "for another client"),
    ({"iss": "https://other.example"}, "not a provider browsers sign in at"),
    ({"iat": 4102444800, "exp": 4102448400}, "not valid yet"),
    ({"exp": 1, "iat": 0}, "expired"),
    (_without("iat"), "lacks a valid iat"),
    ({"key": "attacker"}, "unknown key"),  # signed by another provider's key
]


@pytest.mark.parametrize(("claims", "says"), BAD_LOGOUT_TOKENS)
async def test_a_bad_logout_token_is_400_and_ends_nothing(
    sign_in_gateway: SignInGateway,
    identity_provider: FakeIdentityProvider,
    clock: FakeClock,
    claims: dict[str, Any],
    says: str,
) -> None:
    client = await sign_in_gateway()
    jar, _ = await signed_in(client, identity_provider)
    token = identity_provider.logout_token(now=clock.now, **claims)
    resp = await post_logout(client, token)
    body = await resp.json()
    assert resp.status == 400, body
    assert body["error"] == "invalid_request" and says in body["error_description"]
    assert resp.headers["Cache-Control"] == "no-store"
    assert await status_of(client, jar) == 200
    assert await audit_of(client) == []


async def test_a_replayed_logout_token_is_refused(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await sign_in_gateway()
    await signed_in(client, identity_provider)
    token = identity_provider.logout_token(now=clock.now)
    assert (await post_logout(client, token)).status == 200
    jar, _ = await signed_in(client, identity_provider)  # signed in again since
    resp = await post_logout(client, token)
    assert resp.status == 400
    assert (await resp.json())["error_description"] == "the logout token was used before"
    assert await status_of(client, jar) == 200


async def test_a_logout_token_for_an_unknown_sid_ends_nothing(
    sign_in_gateway: SignInGateway, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await sign_in_gateway()
    jar, _ = await signed_in(client, identity_provider, sid="known")
    resp = await post_logout(client, identity_provider.logout_token(now=clock.now, sid="unknown"))
    assert resp.status == 200  # valid: nothing of it is left here (§2.8)
    assert await status_of(client, jar) == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_backchannel_logouts_total{outcome="no_sessions",provider="idp"} 1.0' in metrics


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"logout_token=" + b"a" * (1024 * 1024), "application/x-www-form-urlencoded", 413),
        (b"", "application/x-www-form-urlencoded", 400),
        (b"logout_token=not.a.jwt", "application/x-www-form-urlencoded", 400),
        (b"<logout/>", "application/xml", 400),
    ],
)
async def test_malformed_back_channel_requests(
    sign_in_gateway: SignInGateway,
    identity_provider: FakeIdentityProvider,
    body: bytes,
    content_type: str,
    status: int,
) -> None:
    client = await sign_in_gateway()
    jar, _ = await signed_in(client, identity_provider)
    resp = await client.post(PATH, data=io.BytesIO(body), headers={"Content-Type": content_type})
    assert resp.status == status
    assert (await resp.json())["error"] in ("invalid_request", "payload_too_large")
    assert (await client.get(PATH)).status == 405
    assert await status_of(client, jar) == 200


@pytest.mark.redis
@pytest.mark.slow
async def test_a_second_instance_refuses_the_ended_session(
    gateway_factory: GatewayFactory,
    sign_in_settings: Callable[..., Settings],
    identity_provider: FakeIdentityProvider,
    redis_server: RedisServer,
) -> None:
    settings = on_redis(sign_in_settings(), redis_server.url)
    first = await gateway_factory(settings, cookie_jar=aiohttp.DummyCookieJar())
    second = await gateway_factory(settings, cookie_jar=aiohttp.DummyCookieJar())
    jar, resp = await signed_in(first, identity_provider, sub="ada", sid="op-1")
    assert resp.status == 303
    assert await status_of(second, jar) == 200
    token = identity_provider.logout_token(now=time.time(), sid="op-1")
    assert (await post_logout(first, token)).status == 200

    async def refused() -> bool:
        return await status_of(second, jar) == 401

    await eventually(refused, 5, what="the second instance refuses the ended session")
