"""Clients at the token endpoint: client credentials with a secret (Basic or in the body) or a
private_key_jwt assertion (a JWKS file or a JWKS URL on loopback), client revocation, the
one-method rule everywhere clients authenticate, the password grant as a setting, and scopes
that a request can only narrow. Every refusal carries the RFC's error code and issues
nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import fakeredis
import jwt
import pytest
import yaml
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestServer

from gateway.config import ClientSettings, Settings
from tests.support.admin_access import ADMIN, ADMIN_KEYS
from tests.support.clock import FakeClock
from tests.support.credential_files import FAST_HASHER
from tests.support.gateway_client import GatewayClient, GatewayPairFactory
from tests.support.gateway_settings import auth_section
from tests.support.jwt_tokens import ISSUER, bearer
from tests.support.oauth_clients import (
    ASSERTION_TYPE,
    MACHINE_SECRET,
    client_assertion,
    client_jwks,
    jwt_client,
    machine_client,
    password_client,
    write_jwks,
)
from tests.support.recording_upstream import Upstream

TOKEN_URL = f"{ISSUER}/auth/token"  # what assertions name as their audience
Pair = Callable[..., Awaitable[tuple[GatewayClient, GatewayClient]]]


@pytest.fixture
def users_with_scopes(tmp_path: Path) -> Path:
    users = {
        "alice": {
            "password_hash": FAST_HASHER.hash("wonderland"),
            "roles": ["user"],
            "scope": "read:scoped write:scoped",
        }
    }
    path = tmp_path / "scoped-users.yaml"
    path.write_text(yaml.safe_dump({"users": users}))
    return path


@pytest.fixture
def gateways(
    gateway_pair_factory: GatewayPairFactory,
    settings_factory: Callable[..., Settings],
    users_with_scopes: Path,
    tmp_path: Path,
    clock: FakeClock,
) -> Pair:
    """(public, admin) clients of one gateway with machine, key and password clients."""

    async def make(*, clients: list[ClientSettings] | None = None, **sections: Any) -> Any:
        jwks = write_jwks(tmp_path / "client-jwks.json", "client-key")
        registered = clients or [
            machine_client("batch"),
            machine_client("poster", method="client_secret_post", roles=["poster"]),
            jwt_client("signer", jwks),
            password_client("cli"),
            machine_client("no-cc", grants=["password", "refresh_token"]),
        ]
        settings = settings_factory(
            auth={**auth_section(users_with_scopes), **sections.pop("auth", {})},
            admin=ADMIN_KEYS,
            clients=registered,
            introspection={"clients": [{"id": "svc", "hash": "sha256:" + "00" * 32}]},
            **sections,
        )
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        return await gateway_pair_factory(settings, redis=redis, clock=clock)

    return make


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(client_id, secret)}


async def token(client: GatewayClient, *, auth: Any = None, **form: Any) -> ClientResponse:
    return await client.post("/auth/token", data=form, headers=auth)


async def refused(resp: ClientResponse, status: int, error: str) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    assert (resp.status, body["error"]) == (status, error), body
    assert "access_token" not in body
    return body


BATCH = basic("batch", MACHINE_SECRET)


# ---- client credentials -------------------------------------------------------------------


async def test_client_credentials_give_the_client_a_token_of_its_own(
    gateways: Pair, upstream: Upstream
) -> None:
    public, _ = await gateways()
    resp = await token(public, auth=BATCH, grant_type="client_credentials")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert "refresh_token" not in body and "session_id" not in body
    assert body["token_type"] == "Bearer" and body["scope"] == "read:scoped write:scoped"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "client:batch" and claims["client_id"] == "batch"
    assert claims["roles"] == ["batch"] and claims["sid"].startswith("cc-")
    resp = await public.get("/scoped/data", headers=bearer(body["access_token"]))
    assert resp.status == 200
    seen = upstream.headers_of()
    assert seen["x-user-id"] == ["client:batch"] and seen["x-user-roles"] == ["batch"]
    # narrowed on request, never widened
    narrow = await (
        await token(public, auth=BATCH, grant_type="client_credentials", scope="read:scoped")
    ).json()
    assert narrow["scope"] == "read:scoped"
    wide = await token(
        public, auth=BATCH, grant_type="client_credentials", scope="read:scoped admin"
    )
    await refused(wide, 400, "invalid_scope")
    # client_secret_post for a client registered so
    post = await token(
        public, grant_type="client_credentials", client_id="poster", client_secret=MACHINE_SECRET
    )
    assert post.status == 200


async def test_client_credentials_refusals(gateways: Pair) -> None:
    public, _ = await gateways()
    wrong = basic("batch", "wrong-secret")
    resp = await token(public, auth=wrong, grant_type="client_credentials")
    await refused(resp, 401, "invalid_client")
    assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
    resp = await token(public, auth=basic("nobody", "x"), grant_type="client_credentials")
    await refused(resp, 401, "invalid_client")
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    resp = await token(
        public, grant_type="client_credentials", client_id="poster", client_secret="wrong"
    )
    await refused(resp, 401, "invalid_client")
    assert "WWW-Authenticate" not in resp.headers  # Basic was not tried
    # a public client cannot prove who it is
    resp = await token(public, grant_type="client_credentials", client_id="cli")
    await refused(resp, 401, "invalid_client")
    # no client at all
    await refused(await token(public, grant_type="client_credentials"), 401, "invalid_client")
    # a method the client is not registered for: Basic for a client_secret_post client
    resp = await token(
        public, auth=basic("poster", MACHINE_SECRET), grant_type="client_credentials"
    )
    await refused(resp, 401, "invalid_client")
    # a registered client without the grant
    resp = await token(public, auth=basic("no-cc", MACHINE_SECRET), grant_type="client_credentials")
    await refused(resp, 400, "unauthorized_client")


async def test_one_authentication_method_per_request(gateways: Pair) -> None:
    public, _ = await gateways()
    both = await token(
        public, auth=BATCH, grant_type="client_credentials", client_secret=MACHINE_SECRET
    )
    await refused(both, 400, "invalid_request")
    two_ids = await token(public, auth=BATCH, grant_type="client_credentials", client_id="poster")
    await refused(two_ids, 400, "invalid_request")
    # introspection's Basic clients follow the same rule
    resp = await public.post(
        "/auth/introspect",
        data={"token": "x", "client_secret": "y"},
        headers=basic("svc", "whatever"),
    )
    await refused(resp, 400, "invalid_request")


async def test_a_client_is_revoked_everywhere_and_audited(gateways: Pair) -> None:
    public, admin = await gateways()
    body = await (await token(public, auth=BATCH, grant_type="client_credentials")).json()
    access = body["access_token"]
    assert (await public.get("/api/x", headers=bearer(access))).status == 200
    resp = await admin.post("/admin/clients/batch/revoke", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["sub"] == "client:batch"
    resp = await public.get("/api/x", headers=bearer(access))
    assert resp.status == 401
    assert "revoked" in resp.headers["WWW-Authenticate"]
    entries = (await (await admin.get("/admin/audit", headers=ADMIN)).json())["entries"]
    assert (entries[0]["action"], entries[0]["target"]) == ("revoke_client", "batch")
    bad = await admin.post("/admin/clients/bad%20id/revoke", headers=ADMIN)
    assert bad.status == 400


# ---- private_key_jwt ------------------------------------------------------------------------


async def assertion_grant(public: GatewayClient, assertion: str, **form: str) -> ClientResponse:
    return await token(
        public,
        grant_type="client_credentials",
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=assertion,
        **form,
    )


async def test_private_key_jwt(gateways: Pair, clock: FakeClock) -> None:
    public, _ = await gateways()
    assertion = client_assertion("signer", TOKEN_URL, now=clock.now)
    resp = await assertion_grant(public, assertion, client_id="signer")
    assert resp.status == 200, await resp.text()
    claims = jwt.decode((await resp.json())["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "client:signer"
    # the issuer is an accepted audience too; client_id may be left out
    ok = await assertion_grant(public, client_assertion("signer", ISSUER, now=clock.now))
    assert ok.status == 200
    # replayed (same jti)
    await refused(await assertion_grant(public, assertion), 401, "invalid_client")
    for bad in (
        client_assertion("signer", TOKEN_URL, now=clock.now - 600),  # expired
        client_assertion("signer", "https://elsewhere.example/token", now=clock.now),  # aud
        client_assertion("signer", TOKEN_URL, now=clock.now, key="attacker"),  # not its key
        client_assertion("signer", TOKEN_URL, now=clock.now, exp=clock.now + 7200),  # too long
        client_assertion("signer", TOKEN_URL, now=clock.now, jti=None),  # no jti
        client_assertion("signer", TOKEN_URL, now=clock.now, iss="batch"),  # iss ≠ sub
    ):
        await refused(await assertion_grant(public, bad, client_id="signer"), 401, "invalid_client")
    # a secret for a private_key_jwt client
    resp = await token(
        public, grant_type="client_credentials", client_id="signer", client_secret=MACHINE_SECRET
    )
    await refused(resp, 401, "invalid_client")
    # an assertion of another type
    resp = await token(
        public,
        grant_type="client_credentials",
        client_assertion_type="urn:example:saml",
        client_assertion=assertion,
    )
    await refused(resp, 400, "invalid_request")


@pytest.fixture
async def jwks_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A client's JWKS on loopback (what it serves at jwks_uri), recording each fetch."""
    fetched: list[str] = []

    async def jwks(request: web.Request) -> web.Response:
        fetched.append(request.path)
        return web.json_response(client_jwks("url-key"), headers={"Cache-Control": "max-age=600"})

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}/jwks", fetched
    await server.close()


async def test_private_key_jwt_with_keys_from_a_jwks_uri(
    gateways: Pair, jwks_server: tuple[str, list[str]], clock: FakeClock
) -> None:
    url, fetched = jwks_server
    entry = ClientSettings(
        id="remote",
        grants=["client_credentials"],
        auth_method="private_key_jwt",
        jwks_uri=url,
        roles=["batch"],
    )
    public, _ = await gateways(clients=[entry])
    for _ in range(3):
        assertion = client_assertion("remote", TOKEN_URL, now=clock.now, key="url-key")
        assert (await assertion_grant(public, assertion)).status == 200
    assert fetched == ["/jwks"]  # cached
    stranger = client_assertion("remote", TOKEN_URL, now=clock.now, key="client-key")
    await refused(await assertion_grant(public, stranger), 401, "invalid_client")


# ---- the password grant, clients and scopes ----------------------------------------------------


async def test_the_password_grant_can_be_turned_off(gateways: Pair) -> None:
    public, _ = await gateways(auth={"password_grant": False})
    resp = await token(public, grant_type="password", username="alice", password="wonderland")
    await refused(resp, 400, "unsupported_grant_type")
    resp = await public.post("/auth/login", json={"username": "alice", "password": "wonderland"})
    await refused(resp, 400, "unsupported_grant_type")
    metadata = await (await public.get("/.well-known/oauth-authorization-server")).json()
    assert "password" not in metadata["grant_types_supported"]
    assert "client_credentials" in metadata["grant_types_supported"]
    assert metadata["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "none",
        "private_key_jwt",
    ]


async def test_a_named_client_must_be_registered(gateways: Pair) -> None:
    public, _ = await gateways()
    login = {"grant_type": "password", "username": "alice", "password": "wonderland"}
    await refused(await token(public, **login, client_id="unknown"), 401, "invalid_client")
    resp = await public.post(
        "/auth/login", json={"username": "alice", "password": "wonderland", "client_id": "x"}
    )
    await refused(resp, 401, "invalid_client")
    # a registered client without the password grant
    await refused(await token(public, **login, auth=BATCH), 400, "unauthorized_client")
    ok = await token(public, **login, client_id="cli")
    assert ok.status == 200
    refresh = (await ok.json())["refresh_token"]
    unknown = await token(public, grant_type="refresh_token", refresh_token=refresh, client_id="zz")
    await refused(unknown, 401, "invalid_client")
    other = await token(public, grant_type="refresh_token", refresh_token=refresh, client_id="cli2")
    await refused(other, 401, "invalid_client")


async def test_scopes_are_only_ever_narrowed(gateways: Pair) -> None:
    public, _ = await gateways()
    login = {"grant_type": "password", "username": "alice", "password": "wonderland"}
    await refused(await token(public, **login, scope="read:scoped admin"), 400, "invalid_scope")
    narrow = await token(public, **login, scope="read:scoped")
    assert (await narrow.json())["scope"] == "read:scoped"
    full = await (await token(public, **login)).json()
    assert full["scope"] == "read:scoped write:scoped"
    wider = await token(
        public,
        grant_type="refresh_token",
        refresh_token=(await narrow.json())["refresh_token"],
        scope="read:scoped write:scoped",
    )
    await refused(wider, 400, "invalid_scope")
    narrowed = await token(
        public, grant_type="refresh_token", refresh_token=full["refresh_token"], scope="read:scoped"
    )
    assert narrowed.status == 200, await narrowed.text()
    claims = jwt.decode(
        (await narrowed.json())["access_token"], options={"verify_signature": False}
    )
    assert claims["scope"] == "read:scoped"
