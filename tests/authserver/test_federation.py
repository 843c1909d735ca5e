"""Token exchange (RFC 8693) of identity-provider tokens through the running gateway, against
a fake OIDC provider on loopback: sessions, roles, links, and every refused input."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import fakeredis
import jwt
import pytest
import yaml
from aiohttp import ClientResponse
from cryptography.hazmat.primitives import serialization

from gateway.config import Settings
from tests.support.clock import FakeClock
from tests.support.credential_files import FAST_HASHER
from tests.support.gateway_client import GatewayClient, GatewayFactory, login
from tests.support.gateway_settings import auth_section
from tests.support.identity_provider import (
    ID_TOKEN_TYPE,
    IDP_CLIENT_ID,
    JWT_TOKEN_TYPE,
    TOKEN_EXCHANGE,
    FakeIdentityProvider,
    idp_key,
)
from tests.support.jwt_tokens import bearer, unsigned_token
from tests.support.oauth_clients import password_client
from tests.support.recording_upstream import Upstream
from tests.support.waiting import eventually

Federated = Callable[..., Awaitable[GatewayClient]]  # the `federated` fixture


def provider_section(idp: FakeIdentityProvider, **overrides: Any) -> dict[str, Any]:
    provider: dict[str, Any] = {
        "name": "idp",
        "issuer": idp.issuer,
        "discovery": True,
        "audiences": [IDP_CLIENT_ID, "gateway-mobile"],
        "algorithms": ["RS256", "ES256"],
        "required_claims": {"email_verified": True},
        "roles": {"default": ["user"], "from_claim": "groups", "map": {"staff": ["reports"]}},
        "copy_claims": ["email"],
    }
    provider.update(overrides)
    return provider


@pytest.fixture
def federation_settings(
    settings_factory: Callable[..., Settings],
    identity_provider: FakeIdentityProvider,
    tmp_path: Path,
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        users = {
            "alice": {
                "password_hash": FAST_HASHER.hash("wonderland"),
                "roles": ["user", "admin"],
                "identities": ["idp:alice-at-idp"],
            }
        }
        users_file = tmp_path / "users.yaml"
        users_file.write_text(yaml.safe_dump({"users": users}))
        federation = {
            "providers": [provider_section(identity_provider, **overrides.pop("provider", {}))],
            "fetch_timeout": 1.0,
            "min_cache": 60,
            "stale_if_error": 3600,
            **overrides.pop("federation", {}),
        }
        return settings_factory(
            # a thousand exchanges from one address in one test
            auth=auth_section(users_file, per_ip={"limit": 100_000, "window": 60}),
            federation=federation,
            **overrides,
        )

    return make


@pytest.fixture
async def federated(
    gateway_factory: GatewayFactory,
    federation_settings: Callable[..., Settings],
    clock: FakeClock,
) -> Federated:
    """The gateway with the fake provider configured (on fakeredis, with a fake clock)."""

    async def make(**overrides: Any) -> GatewayClient:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        return await gateway_factory(federation_settings(**overrides), redis=redis, clock=clock)

    return make


async def exchange(
    client: GatewayClient, subject_token: str, token_type: str = ID_TOKEN_TYPE, **extra: Any
) -> ClientResponse:
    return await client.post(
        "/auth/token",
        data={
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject_token,
            "subject_token_type": token_type,
            **extra,
        },
    )


async def refused(resp: ClientResponse, status: int = 400, error: str = "invalid_grant") -> str:
    """Assert the JSON error body; returns its description."""
    body = await resp.json()
    assert resp.status == status, body
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    return str(body["error_description"])


# ---- the exchange works --------------------------------------------------------------


async def test_id_token_opens_a_normal_session(
    federated: Federated,
    identity_provider: FakeIdentityProvider,
    clock: FakeClock,
    upstream: Upstream,
) -> None:
    client = await federated()
    token = identity_provider.id_token(now=clock.now)
    resp = await exchange(client, token, device_id="phone", device_name="Ada's phone")
    body = await resp.json()
    assert resp.status == 200, body
    assert resp.headers["Cache-Control"] == "no-store"
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["token_type"] == "Bearer" and body["refresh_token"].startswith("gwrt_")
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "idp:user-123"
    assert claims["roles"] == ["user", "reports"]
    assert (claims["email"], claims["idp"]) == ("ada@example.com", "idp")

    api = await client.get("/reports/q3", headers=bearer(body["access_token"]))
    assert api.status == 200
    assert upstream.headers_of()["x-user-id"] == ["idp:user-123"]

    # a federated session is a normal one: rotation, reuse detection, the device list
    rotated = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert rotated.status == 200
    sessions = await client.get(
        "/auth/sessions", headers=bearer((await rotated.json())["access_token"])
    )
    assert [s["device_id"] for s in (await sessions.json())["sessions"]] == ["phone"]
    clock.now += 11  # past the reuse grace window
    reused = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert await refused(reused) == "refresh token reuse detected; the session has been revoked"
    assert (await client.get("/api", headers=bearer(body["access_token"]))).status == 401


async def test_jwt_type_and_an_ec_key(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await federated()
    token = identity_provider.id_token(now=clock.now, alg="ES256", kid="ec1")
    resp = await exchange(client, token, JWT_TOKEN_TYPE)
    assert resp.status == 200, await resp.text()


async def test_a_linked_identity_signs_in_as_the_local_user(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await federated()
    token = identity_provider.id_token(now=clock.now, sub="alice-at-idp")
    body = await (await exchange(client, token)).json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "alice"
    assert claims["roles"] == ["user", "admin"]  # the local user's roles, not the provider's
    assert claims["idp"] == "idp"


async def test_an_exchange_never_widens_the_scope(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await federated()
    token = identity_provider.id_token(now=clock.now)
    resp = await exchange(client, token, scope="admin")  # a provider user holds no scope
    body = await refused(resp, 400, "invalid_scope")
    assert "admin" not in body
    assert (await exchange(client, token)).status == 200


async def test_subjects_of_two_providers_never_collide(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await federated(provider={"name": "corp"})
    body = await (await exchange(client, identity_provider.id_token(now=clock.now))).json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "corp:user-123"


async def test_groups_as_roles_without_a_map(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await federated(provider={"roles": {"from_claim": "groups"}})
    token = identity_provider.id_token(now=clock.now, groups=["staff", "ops"])
    body = await (await exchange(client, token)).json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["staff", "ops"]


async def test_metadata_lists_the_grant(federated: Federated) -> None:
    client = await federated()
    metadata = await (await client.get("/.well-known/oauth-authorization-server")).json()
    assert TOKEN_EXCHANGE in metadata["grant_types_supported"]


async def test_without_providers_the_grant_is_unsupported(client: GatewayClient) -> None:
    resp = await exchange(client, "x.y.z")
    assert await refused(resp, error="unsupported_grant_type")
    metadata = await (await client.get("/.well-known/oauth-authorization-server")).json()
    assert TOKEN_EXCHANGE not in metadata["grant_types_supported"]


async def test_an_oauth_client_library_performs_the_exchange(
    federated: Federated,
    identity_provider: FakeIdentityProvider,
    clock: FakeClock,
    upstream: Upstream,
) -> None:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    grants = ["refresh_token", TOKEN_EXCHANGE]
    client = await federated(clients=[password_client("demo-cli", grants=grants)])
    base = str(client.make_url("")).rstrip("/")
    async with AsyncOAuth2Client(client_id="demo-cli", token_endpoint_auth_method="none") as oauth:
        token = await oauth.fetch_token(
            f"{base}/auth/token",
            grant_type=TOKEN_EXCHANGE,
            subject_token=identity_provider.id_token(now=clock.now),
            subject_token_type=ID_TOKEN_TYPE,
        )
        assert token["issued_token_type"].endswith(":access_token")
        resp = await oauth.get(f"{base}/api/profile")
        assert resp.status_code == 200
        sessions = (await oauth.get(f"{base}/auth/sessions")).json()["sessions"]
        assert sessions[0]["client_id"] == "demo-cli"
    assert upstream.headers_of()["x-user-id"] == ["idp:user-123"]


# ---- refused tokens: 400 invalid_grant, nothing issued -----------------------------------


def _hs256_with_public_key(idp: FakeIdentityProvider, now: float) -> str:
    pem = (
        idp_key("rsa1")
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "kid": "rsa1", "typ": "JWT"}
    claims = {
        "iss": idp.issuer,
        "aud": IDP_CLIENT_ID,
        "sub": "x",
        "iat": int(now),
        "exp": int(now) + 60,
    }
    unsigned = unsigned_token(header, claims).rsplit(".", 1)[0]
    signature = hmac.new(pem, unsigned.encode(), hashlib.sha256).digest()
    return unsigned_token(header, claims, signature)


BAD_TOKENS: dict[str, tuple[Callable[[FakeIdentityProvider, float], str], str]] = {
    "audience_of_another_client": (
        lambda idp, now: idp.id_token(now=now, aud="someone-else"),
        "the token is for another client",
    ),
    "several_audiences_without_azp": (
        lambda idp, now: idp.id_token(now=now, aud=[IDP_CLIENT_ID, "partner-app"]),
        "the token's authorized party is another client",
    ),
    "several_audiences_with_another_azp": (
        lambda idp, now: idp.id_token(
            now=now, aud=[IDP_CLIENT_ID, "partner-app"], azp="partner-app"
        ),
        "the token's authorized party is another client",
    ),
    "alg_none": (
        lambda idp, now: unsigned_token(
            {"alg": "none", "kid": "rsa1"},
            {
                "iss": idp.issuer,
                "aud": IDP_CLIENT_ID,
                "sub": "x",
                "iat": int(now),
                "exp": int(now) + 60,
            },
        ),
        "the token's algorithm is not allowed",
    ),
    "hs256_signed_with_the_public_key": (
        _hs256_with_public_key,
        "the token's algorithm is not allowed",
    ),
    "rsa_token_against_an_ec_key": (
        lambda idp, now: idp.id_token(now=now, alg="RS256", kid="ec1", key="rsa1"),
        "the token's algorithm does not match its key",
    ),
    "signed_by_another_key_with_a_known_kid": (
        lambda idp, now: idp.id_token(now=now, kid="rsa1", key="attacker"),
        "the token's signature is invalid",
    ),
    "expired": (
        lambda idp, now: idp.id_token(now=now - 1000, exp=int(now) - 100),
        "the token has expired",
    ),
    "not_yet_valid": (
        lambda idp, now: idp.id_token(now=now, nbf=int(now) + 600, exp=int(now) + 1200),
        "the token is not valid yet",
    ),
    "issued_in_the_future": (
        lambda idp, now: idp.id_token(now=now + 600),
        "the token is not valid yet",
    ),
    "too_old": (
        lambda idp, now: idp.id_token(now=now - 4000, exp=int(now) + 600),
        "the token is too old to be exchanged",
    ),
    "access_token_typ_where_id_token_required": (
        lambda idp, now: idp.id_token(now=now, headers={"typ": "at+jwt"}),
        "an ID token is required, not an access token",
    ),
    "cognito_access_token_where_id_token_required": (
        lambda idp, now: idp.id_token(now=now, token_use="access"),
        "an ID token is required, not an access token",
    ),
    "missing_subject": (
        lambda idp, now: idp.id_token(now=now, sub=None),
        "the token has no usable subject",
    ),
    "non_string_subject": (
        lambda idp, now: idp.id_token(now=now, sub=12345),
        "the token has no usable subject",
    ),
    "email_not_verified": (
        lambda idp, now: idp.id_token(now=now, email_verified=False),
        "the token's email_verified claim is not as required",
    ),
    "not_a_jwt": (
        lambda idp, now: "not-a-jwt",
        "the subject token is not a signed JWT",
    ),
    "unknown_kid_right_after_a_fetch": (
        lambda idp, now: idp.id_token(now=now, kid="rotated-away", key="rsa1"),
        "the token was signed by an unknown key",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_refused_provider_tokens(
    case: str,
    federated: Federated,
    identity_provider: FakeIdentityProvider,
    clock: FakeClock,
    upstream: Upstream,
) -> None:
    client = await federated()
    make, description = BAD_TOKENS[case]
    resp = await exchange(client, make(identity_provider, clock.now))
    assert await refused(resp) == description
    assert resp.headers["Cache-Control"] == "no-store"
    assert upstream.received == []
    # nothing was opened: the provider's user has no session
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_federated_logins_total{outcome="success",provider="idp"}' not in metrics


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk"])
async def test_key_reference_headers_are_never_fetched(
    header: str,
    federated: Federated,
    identity_provider: FakeIdentityProvider,
    clock: FakeClock,
    upstream: Upstream,
) -> None:
    client = await federated()
    # an attacker's key, offered by URL or inline; the recorder stands for the attacker's server
    attacker = idp_key("attacker")
    from jwt.algorithms import RSAAlgorithm

    offered: Any = (
        {**RSAAlgorithm.to_jwk(attacker.public_key(), as_dict=True), "kid": "evil"}
        if header == "jwk"
        else f"{upstream.url}/keys.json"
    )
    token = identity_provider.id_token(
        now=clock.now, kid="evil", key="attacker", headers={header: offered}
    )
    resp = await exchange(client, token)
    assert await refused(resp) == "the token names its own key source"
    assert upstream.received == []  # no connection to the offered URL


async def test_unknown_issuer_fetches_nothing(
    federated: Federated,
    identity_provider: FakeIdentityProvider,
    clock: FakeClock,
    upstream: Upstream,
) -> None:
    client = await federated()
    # a well-formed OIDC provider would live at the recorder's address: it is never asked
    token = identity_provider.id_token(now=clock.now, iss=upstream.url)
    resp = await exchange(client, token)
    assert await refused(resp) == "the token's issuer is not a configured identity provider"
    assert upstream.received == []


async def test_our_own_access_token_is_not_a_subject_token(federated: Federated) -> None:
    client = await federated()
    ours = (await login(client))["access_token"]
    for token_type in (ID_TOKEN_TYPE, JWT_TOKEN_TYPE):
        resp = await exchange(client, ours, token_type)
        assert await refused(resp) == (
            "the gateway's own tokens cannot be exchanged; use refresh_token"
        )


async def test_a_20_kb_subject_token_is_a_malformed_request(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await federated()
    token = identity_provider.id_token(now=clock.now, padding="x" * 20_000)
    resp = await exchange(client, token)
    assert await refused(resp, error="invalid_request") == (
        "subject_token is too long or contains control characters"
    )


@pytest.mark.parametrize(
    "token_type",
    [
        "urn:ietf:params:oauth:token-type:access_token",
        "urn:ietf:params:oauth:token-type:saml2",
        "id_token",
    ],
)
async def test_a_wrong_subject_token_type(
    token_type: str, federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await federated()
    resp = await exchange(client, identity_provider.id_token(now=clock.now), token_type)
    assert await refused(resp, error="invalid_request") == (
        "subject_token_type must be urn:ietf:params:oauth:token-type:id_token or "
        "urn:ietf:params:oauth:token-type:jwt"
    )


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"subject_token": ""}, "subject_token is required"),
        ({"subject_token_type": ""}, "subject_token_type is required"),
        ({"actor_token": "a.b.c"}, "delegation (actor_token) is not supported"),
        (
            {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
            "requested_token_type must be urn:ietf:params:oauth:token-type:access_token",
        ),
    ],
)
async def test_malformed_exchange_requests(
    params: dict[str, str],
    description: str,
    federated: Federated,
    identity_provider: FakeIdentityProvider,
    clock: FakeClock,
) -> None:
    client = await federated()
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": identity_provider.id_token(now=clock.now),
        "subject_token_type": ID_TOKEN_TYPE,
        **params,
    }
    resp = await client.post("/auth/token", data=data)
    assert await refused(resp, error="invalid_request") == description


# ---- the provider's keys: fetching, caching, failures ----------------------------------


async def warmed(
    federated: Federated, idp: FakeIdentityProvider, clock: FakeClock, **overrides: Any
) -> GatewayClient:
    """The gateway after one successful exchange (its keys fetched)."""
    client = await federated(**overrides)
    resp = await exchange(client, idp.id_token(now=clock.now))
    assert resp.status == 200, await resp.text()
    return client


async def test_keys_come_from_discovery_once_and_are_cached(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await warmed(federated, identity_provider, clock)
    for _ in range(5):
        assert (await exchange(client, identity_provider.id_token(now=clock.now))).status == 200
    assert identity_provider.requests == ["/.well-known/openid-configuration", "/jwks"]


async def test_a_thousand_random_kids_cause_at_most_one_fetch_per_interval(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await warmed(federated, identity_provider, clock)
    assert identity_provider.count("/jwks") == 1
    clock.now += 31  # the next unknown kid may trigger one refetch
    tokens = [
        identity_provider.id_token(now=clock.now, kid=secrets.token_hex(8), key="rsa1")
        for _ in range(1000)
    ]
    statuses = []
    for start in range(0, len(tokens), 20):  # 20 at a time, all racing for the refetch
        answers = await asyncio.gather(*(exchange(client, t) for t in tokens[start : start + 20]))
        statuses += [a.status for a in answers]
    assert set(statuses) == {400}
    assert identity_provider.count("/jwks") == 2


async def test_a_rotated_key_is_fetched_when_first_seen(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await warmed(federated, identity_provider, clock)
    identity_provider.published = [("rsa2", "RS256")]
    clock.now += 31
    resp = await exchange(client, identity_provider.id_token(now=clock.now, kid="rsa2"))
    assert resp.status == 200, await resp.text()
    assert identity_provider.count("/jwks") == 2


async def test_concurrent_first_exchanges_share_one_fetch(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    identity_provider.jwks_mode = "hang"  # the start-up fetch and the first exchanges wait
    client = await federated(federation={"fetch_timeout": 60})  # released well before
    pending = [
        asyncio.ensure_future(exchange(client, identity_provider.id_token(now=clock.now)))
        for _ in range(20)
    ]
    await eventually(lambda: identity_provider.count("/jwks") == 1, what="one JWKS fetch")
    identity_provider.jwks_mode = "ok"
    identity_provider.release.set()
    answers = await asyncio.gather(*pending)
    assert {a.status for a in answers} == {200}
    assert identity_provider.count("/jwks") == 1


@pytest.mark.parametrize(
    "failure",
    ["error", pytest.param("hang", marks=pytest.mark.slow)],  # a real fetch timeout
)
async def test_known_keys_still_verify_when_the_jwks_fails_after_warm_up(
    failure: str, federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await warmed(federated, identity_provider, clock, federation={"fetch_timeout": 0.3})
    identity_provider.jwks_mode = failure
    clock.now += 601  # the key set (max-age=600) has expired: the next exchange refetches
    resp = await exchange(client, identity_provider.id_token(now=clock.now))
    assert resp.status == 200, await resp.text()
    assert identity_provider.count("/jwks") == 2
    ready = await (await client.get("/readyz")).json()
    provider = ready["identity_providers"]["idp"]
    assert provider["keys"] == "stale"
    assert provider["last_error"] == ("http_500" if failure == "error" else "timeout")

    clock.now += 3600  # past stale_if_error: the keys cannot be had any more
    resp = await exchange(client, identity_provider.id_token(now=clock.now))
    assert await refused(resp, 503, "temporarily_unavailable") == (
        "the identity provider's keys are temporarily unavailable"
    )
    assert resp.headers["Retry-After"] == "30"


async def test_keys_unavailable_from_the_start_is_503_and_readyz_stays_ready(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    identity_provider.jwks_mode = "error"
    client = await federated()
    resp = await exchange(client, identity_provider.id_token(now=clock.now))
    await refused(resp, 503, "temporarily_unavailable")
    ready = await client.get("/readyz")
    assert ready.status == 200  # password logins still work
    assert (await ready.json())["identity_providers"]["idp"]["keys"] == "unavailable"
    assert (
        await client.post("/auth/login", json={"username": "alice", "password": "wonderland"})
    ).status == 200


async def test_discovery_naming_another_issuer_is_refused(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    identity_provider.discovery_issuer = "https://impostor.example"
    client = await federated()
    resp = await exchange(client, identity_provider.id_token(now=clock.now))
    await refused(resp, 503, "temporarily_unavailable")
    assert identity_provider.count("/jwks") == 0  # the document's jwks_uri was not trusted
    ready = await (await client.get("/readyz")).json()
    assert ready["identity_providers"]["idp"]["last_error"] == "issuer_mismatch"


async def test_a_jwks_url_that_redirects_is_not_followed(
    federated: Federated,
    identity_provider: FakeIdentityProvider,
    clock: FakeClock,
    upstream: Upstream,
) -> None:
    identity_provider.jwks_mode = "redirect"
    identity_provider.redirect_to = f"{upstream.url}/jwks"
    client = await federated()
    resp = await exchange(client, identity_provider.id_token(now=clock.now))
    await refused(resp, 503, "temporarily_unavailable")
    assert upstream.received == []
    ready = await (await client.get("/readyz")).json()
    assert ready["identity_providers"]["idp"]["last_error"] == "redirect"


async def test_a_10_mb_jwks_is_refused(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    identity_provider.jwks_mode = "huge"
    client = await federated()
    resp = await exchange(client, identity_provider.id_token(now=clock.now))
    await refused(resp, 503, "temporarily_unavailable")
    ready = await (await client.get("/readyz")).json()
    assert ready["identity_providers"]["idp"]["last_error"] == "too_large"


async def test_configured_jwks_uri_skips_discovery(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await warmed(
        federated,
        identity_provider,
        clock,
        provider={"discovery": False, "jwks_uri": f"{identity_provider.url}/jwks"},
    )
    assert identity_provider.requests == ["/jwks"]
    del client


async def test_metrics_count_exchanges_and_fetches(
    federated: Federated, identity_provider: FakeIdentityProvider, clock: FakeClock
) -> None:
    client = await warmed(federated, identity_provider, clock)
    await exchange(client, identity_provider.id_token(now=clock.now, aud="someone-else"))
    await exchange(client, identity_provider.id_token(now=clock.now, iss="https://other.example"))
    text = await (await client.get("/metrics")).text()
    assert 'gateway_federated_logins_total{outcome="success",provider="idp"} 1.0' in text
    assert 'gateway_federated_logins_total{outcome="wrong_audience",provider="idp"} 1.0' in text
    assert 'gateway_federated_logins_total{outcome="unknown_issuer",provider="unknown"} 1.0' in text
    assert 'gateway_jwks_fetches_total{outcome="ok",provider="idp"} 1.0' in text
    assert 'gateway_jwks_age_seconds{provider="idp"} 0.0' in text
    assert 'gateway_jwks_usable{provider="idp"} 1.0' in text


async def test_logs_never_contain_the_provider_token(
    federated: Federated,
    identity_provider: FakeIdentityProvider,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    client = await federated()
    good = identity_provider.id_token(now=clock.now)
    bad = identity_provider.id_token(now=clock.now, aud="someone-else")
    body = await (await exchange(client, good)).json()
    await exchange(client, bad)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (good, bad, body["access_token"], body["refresh_token"]):
        assert secret not in logged
        assert secret.split(".")[-1] not in logged
    assert "federated login provider=idp sub=idp:user-123" in logged
