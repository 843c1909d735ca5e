"""Forward-auth decisions (SPEC §13): the inline admission, asked by an ingress about a request
it holds, in nginx's, Traefik's and Envoy's forms; every bad description refused with its
exact status and body; a decision never reaches the upstream."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings
from tests.support.gateway_client import GatewayClient, GatewayFactory
from tests.support.jwt_tokens import bearer, mint
from tests.support.raw_http import raw_request
from tests.support.recording_upstream import Upstream

NO_TOKEN = {"error": "invalid_request", "error_description": "a bearer access token is required"}
NOT_DESCRIBED = {
    "error": "invalid_request",
    "error_description": "the original request is not described (X-Original-URI)",
}
NOT_NORMAL = {
    "error": "invalid_request",
    "error_description": "the original path is not in normal form",
}
NOT_A_PATH = {
    "error": "invalid_request",
    "error_description": "the original URI must be a path (printable ASCII, no URL)",
}
NO_PARAMS = {
    "error": "invalid_request",
    "error_description": "path parameters (;) are not accepted in a decision",
}
BAD_METHOD = {"error": "invalid_request", "error_description": "invalid original method"}
UNTRUSTED = {
    "error": "access_denied",
    "error_description": "decisions are given to trusted proxies only",
}


def nginx(uri: str, method: str = "GET", **extra: str) -> dict[str, str]:
    return {"X-Original-URI": uri, "X-Original-Method": method, **extra}


def traefik(uri: str, method: str = "GET", **extra: str) -> dict[str, str]:
    return {
        "X-Forwarded-Uri": uri,
        "X-Forwarded-Method": method,
        "X-Forwarded-Host": "app.example",
        "X-Forwarded-Proto": "https",
        **extra,
    }


@pytest.fixture
def fa_settings(settings_factory: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**forward_auth: Any) -> Settings:
        return settings_factory(forward_auth={"enabled": True, **forward_auth})

    return make


@pytest.fixture
async def decider(
    gateway_factory: GatewayFactory, fa_settings: Callable[..., Settings]
) -> GatewayClient:
    return await gateway_factory(fa_settings())


async def test_a_valid_token_is_admitted_with_identity_headers(
    decider: GatewayClient, key_files: dict[str, Path], upstream: Upstream
) -> None:
    token = mint(key_files, sub="alice", sid="s-1", roles=["user", "reports"])
    for headers in (nginx("/reports/q?x=1"), traefik("/reports/q")):
        resp = await decider.get("/auth/verify", headers={**headers, **bearer(token)})
        assert resp.status == 200, await resp.text()
        assert resp.headers["X-User-Id"] == "alice"
        assert resp.headers["X-User-Roles"] == "user,reports"
        assert resp.headers["X-Session-Id"] == "s-1"
        assert resp.headers["Cache-Control"] == "no-store"
        assert "X-Auth-Request-User" not in resp.headers
    envoy = await decider.get("/auth/verify/reports/q?x=1", headers=bearer(token))
    assert envoy.status == 200
    assert envoy.headers["X-User-Id"] == "alice"
    assert upstream.received == []  # a decision is never forwarded


async def test_public_route_is_admitted_without_identity(
    decider: GatewayClient, key_files: dict[str, Path]
) -> None:
    resp = await decider.get("/auth/verify", headers=nginx("/public/page"))
    assert resp.status == 200
    assert not [h for h in resp.headers if h.lower().startswith("x-user-")]
    # forged identity headers on the decision request are never echoed back as identity
    forged = {"X-User-Id": "root", "X-User-Roles": "admin", "X-Auth-Request-User": "root"}
    resp = await decider.get("/auth/verify", headers={**nginx("/public/page"), **forged})
    assert resp.status == 200
    assert "X-User-Id" not in resp.headers and "X-Auth-Request-User" not in resp.headers
    token = mint(key_files, sub="alice")
    resp = await decider.get("/auth/verify", headers={**nginx("/x"), **forged, **bearer(token)})
    assert resp.headers.getall("X-User-Id") == ["alice"]
    assert resp.headers.getall("X-User-Roles") == ["user"]


async def test_refusals_are_the_inline_ones(
    decider: GatewayClient, key_files: dict[str, Path]
) -> None:
    resp = await decider.get("/auth/verify", headers=nginx("/private"))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="gateway"'
    assert await resp.json() == NO_TOKEN
    expired = mint(key_files, exp=1_000_000, iat=999_000, nbf=999_000)
    resp = await decider.get("/auth/verify", headers={**nginx("/private"), **bearer(expired)})
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert (await resp.json())["error"] == "invalid_token"
    token = mint(key_files, roles=["user"])
    resp = await decider.get("/auth/verify", headers={**traefik("/reports/x"), **bearer(token)})
    assert resp.status == 403
    assert (await resp.json())["error"] == "insufficient_scope"


async def test_the_method_is_the_original_one(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings], upstream: Upstream
) -> None:
    settings = settings_factory(
        forward_auth={"enabled": True},
        routes=[
            {"prefix": "/ro/", "upstream": upstream.url, "policy": "public", "methods": ["GET"]},
            {"prefix": "/", "upstream": upstream.url},
        ],
    )
    client = await gateway_factory(settings)
    assert (await client.get("/auth/verify", headers=nginx("/ro/x", "GET"))).status == 200
    assert (await client.get("/auth/verify", headers=nginx("/ro/x", "DELETE"))).status == 401
    # Envoy: the method from X-Forwarded-Method, else the request's own
    assert (await client.delete("/auth/verify/ro/x")).status == 401
    assert (await client.get("/auth/verify/ro/x")).status == 200
    resp = await client.get("/auth/verify/ro/x", headers={"X-Forwarded-Method": "POST"})
    assert resp.status == 401


async def test_the_host_is_the_original_one(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings], upstream: Upstream
) -> None:
    settings = settings_factory(
        forward_auth={"enabled": True},
        routes=[
            {
                "prefix": "/",
                "upstream": upstream.url,
                "policy": "public",
                "hosts": ["open.example"],
                "name": "open",
            },
            {"prefix": "/", "upstream": upstream.url},
        ],
    )
    client = await gateway_factory(settings)
    open_host = traefik("/x", **{"X-Forwarded-Host": "open.example"})
    assert (await client.get("/auth/verify", headers=open_host)).status == 200
    other_host = traefik("/x", **{"X-Forwarded-Host": "closed.example"})
    assert (await client.get("/auth/verify", headers=other_host)).status == 401


# ---- bad descriptions: each refused, in every form, with its body --------------------------

BAD_URIS: list[tuple[str, str, dict[str, str]]] = [
    ("dot segments", "/public/../private", NOT_NORMAL),
    ("encoded dot segments", "/public/%2e%2e/private", NOT_NORMAL),
    ("encoded slash", "/public%2f..%2fprivate", NOT_NORMAL),
    ("double slash", "//private", NOT_NORMAL),
    ("backslash", "/public/..\\private", NOT_NORMAL),
    ("path parameters", "/public;x=1/../private", NO_PARAMS),
    ("path parameters alone", "/private;jsessionid=1", NO_PARAMS),
    (
        "overlong UTF-8",
        "/public/%c0%ae%c0%ae/private",
        {"error": "invalid_request", "error_description": "invalid UTF-8 in path"},
    ),
    ("a full URL", "http://evil.example/private", NOT_A_PATH),
    ("a relative path", "private", NOT_A_PATH),
    ("a fragment", "/public/#/../private", NOT_A_PATH),
    ("a space", "/public/a b", NOT_A_PATH),
    ("non-ASCII", "/public/\u00e9", NOT_A_PATH),
]


@pytest.mark.parametrize(
    ("uri", "body"), [(u, b) for _, u, b in BAD_URIS], ids=[c[0] for c in BAD_URIS]
)
async def test_bad_original_uris_are_refused(
    decider: GatewayClient, key_files: dict[str, Path], uri: str, body: dict[str, str]
) -> None:
    token = mint(key_files)
    resp = await decider.get("/auth/verify", headers={**traefik(uri), **bearer(token)})
    assert resp.status == 400
    assert await resp.json() == body
    # nginx turns anything but 2xx/401/403 into a 500: a 403 carrying the inline status
    resp = await decider.get("/auth/verify", headers={**nginx(uri), **bearer(token)})
    assert resp.status == 403
    assert resp.headers["X-Gateway-Status"] == "400"
    assert await resp.json() == body


@pytest.mark.parametrize("method", ["TRACE", "get", "CONNECT", "G ET", ""])
async def test_bad_original_methods_are_refused(decider: GatewayClient, method: str) -> None:
    resp = await decider.get("/auth/verify", headers=traefik("/public/x", method))
    assert resp.status == 400
    body = await resp.json()
    if method in ("TRACE", "CONNECT"):
        assert body == {
            "error": "invalid_request",
            "error_description": f"{method} requests are not decided",
        }
    else:
        assert body == BAD_METHOD


async def test_without_a_description_nothing_is_decided(decider: GatewayClient) -> None:
    for method in ("GET", "HEAD", "POST"):
        resp = await decider.request(method, "/auth/verify")
        assert resp.status == 400
        if method != "HEAD":
            assert await resp.json() == NOT_DESCRIBED
    # `/auth/verifyX` is no decision path, and `/auth/verify` is never a proxied route's
    resp = await decider.get("/auth/verifyx")
    assert resp.status == 401  # proxied: the `/` route wants a token
    resp = await decider.get("/auth/verify", headers=nginx("/auth/verify"))
    assert resp.status == 403
    assert resp.headers["X-Gateway-Status"] == "404"


async def test_two_descriptions_are_refused(decider: GatewayClient, upstream: Upstream) -> None:
    twice = {"error": "invalid_request", "error_description": "X-Original-URI is sent twice"}
    status, headers, body = await raw_request(
        decider,
        b"GET /auth/verify HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
        b"X-Original-URI: /public/x\r\nX-Original-URI: /private\r\n\r\n",
    )
    assert (status, headers["X-Gateway-Status"]) == (403, "400")
    assert json.loads(body) == twice
    resp = await decider.get(
        "/auth/verify", headers={"X-Original-URI": "/public/x", "X-Forwarded-Uri": "/private"}
    )
    assert resp.status == 403
    assert await resp.json() == {
        "error": "invalid_request",
        "error_description": "the original request is described twice",
    }
    resp = await decider.get("/auth/verify/private", headers={"X-Forwarded-Uri": "/public/x"})
    assert resp.status == 400
    assert upstream.received == []


async def test_control_characters_in_the_original_uri(decider: GatewayClient) -> None:
    # CR/LF cannot be sent inside a header value (the parser refuses the request); an
    # encoded one, or a TAB, is refused by the decision
    for uri in ("/public/%0d%0aX-User-Id:%20root", "/public/%00", "/public/\tx"):
        status, _, body = await raw_request(
            decider,
            b"GET /auth/verify HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
            + b"X-Forwarded-Uri: "
            + uri.encode()
            + b"\r\n\r\n",
        )
        assert status == 400, body
        assert b'"invalid_request"' in body
    status, _, _ = await raw_request(
        decider,
        b"GET /auth/verify HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
        b"X-Original-URI: /public/\r\n x\r\n\r\n",
    )
    assert status == 400


async def test_a_decision_request_has_no_body(decider: GatewayClient) -> None:
    resp = await decider.post("/auth/verify", headers=traefik("/public/x"), data=b"payload")
    assert resp.status == 400
    assert await resp.json() == {
        "error": "invalid_request",
        "error_description": "a decision request has no body",
    }
    resp = await decider.post("/auth/verify", headers=nginx("/public/x"), data=b"payload")
    assert (resp.status, resp.headers["X-Gateway-Status"]) == (403, "400")


async def test_untrusted_callers_get_403_and_are_counted(
    gateway_factory: GatewayFactory,
    fa_settings: Callable[..., Settings],
    key_files: dict[str, Path],
) -> None:
    client = await gateway_factory(fa_settings(trusted_proxies=["10.0.0.0/8"]))
    token = mint(key_files)
    for headers in (nginx("/public/x"), traefik("/x", **bearer(token)), {}):
        resp = await client.get("/auth/verify", headers=headers)
        assert resp.status == 403
        assert await resp.json() == UNTRUSTED
        assert "X-User-Id" not in resp.headers
    metrics = await (await client.get("/metrics")).text()
    assert "gateway_forward_auth_untrusted_total 3.0" in metrics


async def test_original_uri_headers_are_not_believed_on_proxied_routes(
    decider: GatewayClient, upstream: Upstream
) -> None:
    # a proxied request is decided on its own request line, whatever it claims
    resp = await decider.get("/private/x", headers=nginx("/public/x"))
    assert resp.status == 401
    resp = await decider.get("/public/x", headers={**nginx("/private"), **traefik("/private")})
    assert resp.status == 200
    received = upstream.headers_of()
    assert upstream.received[-1].path == "/public/x"
    for name in ("x-original-uri", "x-forwarded-uri", "x-original-method"):
        assert name not in received


async def test_oauth2_proxy_headers(
    gateway_factory: GatewayFactory,
    fa_settings: Callable[..., Settings],
    key_files: dict[str, Path],
) -> None:
    client = await gateway_factory(fa_settings(headers="oauth2-proxy"))
    token = mint(key_files, sub="bob", email="bob@example.com", roles=["user", "reports"])
    resp = await client.get("/auth/verify", headers={**nginx("/x"), **bearer(token)})
    assert resp.status == 200
    assert resp.headers["X-User-Id"] == "bob"
    assert resp.headers["X-Auth-Request-User"] == "bob"
    assert resp.headers["X-Auth-Request-Email"] == "bob@example.com"
    assert resp.headers["X-Auth-Request-Groups"] == "user,reports"


async def test_decisions_are_counted_and_logged(
    decider: GatewayClient, key_files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="gateway.access")
    token = mint(key_files)
    await decider.get("/auth/verify", headers={**nginx("/x?q=1", "PUT"), **bearer(token)})
    await decider.get("/auth/verify", headers=nginx("/x"))
    await decider.get("/auth/verify", headers=nginx("/../x"))
    metrics = await (await decider.get("/metrics")).text()
    assert (
        'gateway_forward_auth_decisions_total{outcome="allowed",reason="admitted"} 1.0' in metrics
    )
    denied = 'gateway_forward_auth_decisions_total{outcome="denied",reason="%s"} 1.0'
    assert denied % "invalid_request" in metrics
    assert denied % "no_credential" in metrics
    lines = [r.getMessage() for r in caplog.records if "/auth/verify" in r.getMessage()]
    assert any('"original_method":"PUT","original_path":"/x"' in line for line in lines), lines
    assert not any(token in line for line in lines)


async def test_disabled_means_no_decision_endpoint(
    gateway_factory: GatewayFactory, settings: Settings, upstream: Upstream
) -> None:
    client = await gateway_factory(settings)
    resp = await client.get("/auth/verify", headers=nginx("/public/x"))
    assert resp.status == 404  # reserved: never proxied
    assert upstream.received == []


async def test_text_access_lines_name_the_original_request(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="gateway.access")
    client = await gateway_factory(
        settings_factory(forward_auth={"enabled": True}, logging={"format": "text"})
    )
    await client.get("/auth/verify", headers=nginx('/public/a"b', "POST"))
    await client.get("/auth/verify/public/x")
    lines = [r.getMessage() for r in caplog.records if "/auth/verify" in r.getMessage()]
    assert any(" original=POST " in line for line in lines), lines
    assert any("original=GET /public/x" in line for line in lines), lines
