"""A valid token reaches the upstream with exactly the gateway's identity headers."""

from __future__ import annotations

from pathlib import Path

from yarl import URL

from tests.support.gateway_client import GatewayClient
from tests.support.jwt_tokens import bearer, mint
from tests.support.recording_upstream import Upstream


async def test_valid_token_is_forwarded_with_identity_headers(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    token = mint(key_files, sub="alice", roles=["user", "reports"], sid="sess-1")
    headers = {
        **bearer(token),
        "X-User-Id": "mallory",
        "x-user-roles": "admin",
        "X_User_Id": "mallory",
        "X-Auth-Admin": "1",
        "x_auth_whatever": "1",
        "X-Session-Id": "forged",
        "Connection": "keep-alive, X-User-Id, X-Keep",
        "X-Keep": "dropped-because-named-in-connection",
        "X-Other": "kept",
        "X-Request-Id": "req-12345678",
    }
    resp = await gateway.get(URL("/api/items?b=2&a=%2e", encoded=True), headers=headers)
    assert resp.status == 200
    assert resp.headers["X-Request-Id"] == "req-12345678"
    body = await resp.json()
    assert body["path"] == "/api/items"
    assert body["query"] == "b=2&a=%2e"
    seen = upstream.headers_of()
    assert seen["x-user-id"] == ["alice"]
    assert seen["x-user-roles"] == ["user,reports"]
    assert seen["x-session-id"] == ["sess-1"]
    assert "x-auth-admin" not in seen
    assert not [n for n in seen if "_" in n]
    assert "x-keep" not in seen
    assert seen["x-other"] == ["kept"]
    assert "authorization" not in seen
    assert seen["x-request-id"] == ["req-12345678"]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert len(seen["x-forwarded-host"]) == 1
    assert "connection" not in seen or seen["connection"] == ["keep-alive"]
    # hop-by-hop response headers from the upstream are not passed back
    assert resp.headers["X-Upstream"] == "yes"
    assert "X-Drop-Me" not in resp.headers
    assert "Keep-Alive" not in resp.headers


async def test_public_route_needs_no_token(gateway: GatewayClient, upstream: Upstream) -> None:
    resp = await gateway.post("/public/ping", data=b"hello")
    assert resp.status == 200
    assert (await resp.json())["body_size"] == 5
    assert upstream.received[-1].method == "POST"
    assert "x-user-id" not in upstream.headers_of()


async def test_missing_token_is_401_and_not_forwarded(
    gateway: GatewayClient, upstream: Upstream
) -> None:
    resp = await gateway.get("/api/items")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="gateway"'
    body = await resp.json()
    assert body["error"] == "invalid_request"
    assert upstream.received == []


async def test_jwks_publishes_public_keys_only(gateway: GatewayClient) -> None:
    resp = await gateway.get("/.well-known/jwks.json")
    assert resp.status == 200
    keys = (await resp.json())["keys"]
    assert {k["kid"] for k in keys} == {"ed1", "es1"}
    for key in keys:
        assert "d" not in key and "k" not in key
