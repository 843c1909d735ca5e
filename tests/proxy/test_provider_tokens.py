"""Identity providers' own access tokens on the routes that accept them (`routes[].accept`):
verified with the provider's access-token policy and keys (a fake OIDC provider on loopback,
and the demo identity provider of deploy/), refused where the route does not take their
issuer, revocable by jti and by user, counted by issuer. Nothing refused reaches the
upstream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import fakeredis
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.config import Settings
from tests.deploy.test_demo_idp import demo_idp
from tests.support.admin_access import ADMIN, ADMIN_KEYS
from tests.support.clock import FakeClock
from tests.support.gateway_client import GatewayClient, GatewayPairFactory
from tests.support.identity_provider import FakeIdentityProvider
from tests.support.jwt_tokens import ISSUER, bearer, mint
from tests.support.processes import free_port
from tests.support.recording_upstream import Upstream

API = "orders-api"  # the audience of the provider's access tokens for our API
Pair = Callable[..., Awaitable[tuple[GatewayClient, GatewayClient]]]


def access_policy(**overrides: Any) -> dict[str, Any]:
    return {
        "audiences": [API],
        "algorithms": ["RS256", "ES256"],
        "roles": {"default": ["partner"], "from_claim": "groups", "map": {"staff": ["reports"]}},
        "copy_claims": ["email"],
        **overrides,
    }


@pytest.fixture
def gateways(
    gateway_pair_factory: GatewayPairFactory,
    settings_factory: Callable[..., Settings],
    identity_provider: FakeIdentityProvider,
    upstream: Upstream,
    clock: FakeClock,
) -> Pair:
    async def make(**policy: Any) -> Any:
        settings = settings_factory(
            admin=ADMIN_KEYS,
            federation={
                "providers": [
                    {
                        "name": "idp",
                        "issuer": identity_provider.issuer,
                        "discovery": True,
                        "audiences": ["gateway-app"],
                        "algorithms": ["RS256", "ES256"],
                        "access_tokens": access_policy(**policy),
                    }
                ]
            },
            routes=[
                {"prefix": "/partner/", "upstream": upstream.url, "accept": ["idp"]},
                {"prefix": "/both/", "upstream": upstream.url, "accept": ["gateway", "idp"]},
                {
                    "prefix": "/reports/",
                    "upstream": upstream.url,
                    "roles": ["reports"],
                    "accept": ["gateway", "idp"],
                },
                {"prefix": "/", "upstream": upstream.url},
            ],
        )
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        return await gateway_pair_factory(settings, redis=redis, clock=clock)

    return make


def provider_token(idp: FakeIdentityProvider, clock: FakeClock, **claims: Any) -> str:
    """An access token of the fake provider for our API (RFC 9068 shape)."""
    base: dict[str, Any] = {
        "aud": API,
        "jti": "at-1",
        "scope": "orders:read",
        "client_id": "mobile",
    }
    return idp.id_token(now=clock.now, headers={"typ": "at+jwt"}, **{**base, **claims})


async def test_a_provider_token_on_a_route_that_accepts_it(
    gateways: Pair, identity_provider: FakeIdentityProvider, clock: FakeClock, upstream: Upstream
) -> None:
    public, _ = await gateways()
    token = provider_token(identity_provider, clock)
    resp = await public.get("/partner/orders", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    seen = upstream.headers_of()
    assert seen["x-user-id"] == ["idp:user-123"]
    assert seen["x-user-roles"] == ["partner,reports"]
    assert "x-session-id" not in seen
    assert (await public.get("/reports/q3", headers=bearer(token))).status == 200
    # cached: the provider's keys were fetched once
    assert (await public.get("/both/x", headers=bearer(token))).status == 200
    assert identity_provider.count("/jwks") == 1
    metrics = await (await public.get("/metrics")).text()
    assert 'gateway_issuer_requests_total{issuer="idp"} 3.0' in metrics


async def test_issuers_a_route_does_not_take_are_refused(
    gateways: Pair,
    identity_provider: FakeIdentityProvider,
    clock: FakeClock,
    upstream: Upstream,
    key_files: dict[str, Any],
) -> None:
    public, _ = await gateways()
    provider = provider_token(identity_provider, clock)
    ours = mint(key_files)
    cases = [
        ("/api/x", provider),  # a provider's token where only the gateway is accepted
        ("/partner/x", ours),  # the gateway's token where only the provider is accepted
        # the gateway's key with the provider's issuer: the provider's keys do not have it
        ("/partner/x", mint(key_files, iss=identity_provider.issuer, aud=API, jti="x")),
        # the provider's key with the gateway's issuer: not one of the gateway's keys
        ("/both/x", provider_token(identity_provider, clock, iss=ISSUER)),
        # a provider's ID token (its audience is the app, not the API)
        ("/partner/x", identity_provider.id_token(now=clock.now)),
        ("/partner/x", provider_token(identity_provider, clock, exp=clock.now - 3600)),
        ("/partner/x", provider_token(identity_provider, clock, key="attacker")),
        # HS256 (keyed with anything): never on a provider's allowlist
        (
            "/partner/x",
            jwt.encode(
                {"iss": identity_provider.issuer, "aud": API, "sub": "x", "exp": clock.now + 60},
                "a-shared-secret-of-at-least-32-bytes!",
                algorithm="HS256",
                headers={"kid": "rsa1"},
            ),
        ),
    ]
    before = len(upstream.received)
    for path, token in cases:
        resp = await public.get(path, headers=bearer(token))
        assert resp.status == 401, (path, await resp.text())
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert len(upstream.received) == before
    # both issuers where both are accepted; the gateway's own route stays on its own path
    assert (await public.get("/both/x", headers=bearer(ours))).status == 200
    assert (await public.get("/api/x", headers=bearer(ours))).status == 200
    metrics = await (await public.get("/metrics")).text()
    assert 'gateway_provider_token_rejections_total{provider="idp",reason="expired"}' in metrics


async def test_provider_tokens_are_revoked_by_jti_and_by_user(
    gateways: Pair, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    public, admin = await gateways()
    token = provider_token(identity_provider, clock, jti="leaked")
    assert (await public.get("/partner/x", headers=bearer(token))).status == 200
    resp = await admin.post(
        "/admin/revoke/token", json={"jti": "idp:leaked", "exp": clock.now + 600}, headers=ADMIN
    )
    assert resp.status == 200
    assert (await public.get("/partner/x", headers=bearer(token))).status == 401
    other = provider_token(identity_provider, clock, jti="other", sub="user-9")
    assert (await public.get("/partner/x", headers=bearer(other))).status == 200
    clock.now += 2
    resp = await admin.post("/admin/users/idp:user-9/revoke", headers=ADMIN)
    assert resp.status == 200
    assert (await public.get("/partner/x", headers=bearer(other))).status == 401


async def test_required_claims_of_the_policy(
    gateways: Pair, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    public, _ = await gateways(required_claims={"token_use": "access"})
    plain = provider_token(identity_provider, clock)
    assert (await public.get("/partner/x", headers=bearer(plain))).status == 401
    tagged = provider_token(identity_provider, clock, token_use="access")
    assert (await public.get("/partner/x", headers=bearer(tagged))).status == 200


def test_routes_name_configured_providers_with_a_policy(
    settings_factory: Callable[..., Settings], upstream: Upstream
) -> None:
    route = {"prefix": "/p/", "upstream": upstream.url, "accept": ["nobody"]}
    with pytest.raises(ValueError, match="neither gateway nor a provider"):
        settings_factory(routes=[route])


async def test_the_demo_identity_providers_access_tokens(
    gateway_pair_factory: GatewayPairFactory,
    settings_factory: Callable[..., Settings],
    upstream: Upstream,
    aiohttp_client: AiohttpClient,
) -> None:
    """The demo identity provider (deploy/demo_idp.py) as config.yaml configures it."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    idp: TestClient[web.Request, web.Application] = await aiohttp_client(
        demo_idp().make_app(issuer), server_kwargs={"port": port}
    )
    settings = settings_factory(
        federation={
            "providers": [
                {
                    "name": "demo-idp",
                    "issuer": issuer,
                    "discovery": True,
                    "audiences": ["demo-app"],
                    "access_tokens": {
                        "audiences": ["demo-api"],
                        "roles": {
                            "default": ["user"],
                            "from_claim": "groups",
                            "map": {"staff": ["reports"]},
                        },
                    },
                }
            ]
        },
        routes=[{"prefix": "/", "upstream": upstream.url, "accept": ["gateway", "demo-idp"]}],
    )
    public, _ = await gateway_pair_factory(settings, redis=fakeredis.FakeAsyncRedis())
    body = await (await idp.post("/token", data={"username": "carol"})).json()
    resp = await public.get("/orders", headers=bearer(body["access_token"]))
    assert resp.status == 200, await resp.text()
    assert upstream.headers_of()["x-user-id"] == ["demo-idp:carol"]
    assert upstream.headers_of()["x-user-roles"] == ["user,reports"]
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["aud"] == "demo-app"
    resp = await public.get("/orders", headers=bearer(body["id_token"]))  # no access token
    assert resp.status == 401


async def test_readyz_reports_the_providers_of_a_verify_only_gateway(
    gateway_pair_factory: GatewayPairFactory,
    settings_factory: Callable[..., Settings],
    identity_provider: FakeIdentityProvider,
    upstream: Upstream,
    clock: FakeClock,
) -> None:
    """Without a signing key there is no token exchange, but the providers whose tokens the
    routes take still have keys whose state /readyz reports."""
    settings = settings_factory(
        keys={"active": None, "items": []},
        federation={
            "providers": [
                {
                    "name": "idp",
                    "issuer": identity_provider.issuer,
                    "discovery": True,
                    "audiences": ["gateway-app"],
                    "algorithms": ["RS256", "ES256"],
                    "access_tokens": access_policy(),
                }
            ]
        },
        routes=[{"prefix": "/partner/", "upstream": upstream.url, "accept": ["idp"]}],
    )
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    public, _ = await gateway_pair_factory(settings, redis=redis, clock=clock)
    token = provider_token(identity_provider, clock)
    assert (await public.get("/partner/orders", headers=bearer(token))).status == 200
    ready = await (await public.get("/readyz")).json()
    assert ready["identity_providers"]["idp"]["keys"] == "ok"
