"""Every way a bearer token can be wrong: the right 401/400/403, and nothing reaches upstream."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.config import Settings
from tests.support.gateway_client import GatewayClient, GatewayFactory
from tests.support.jwt_tokens import bearer, claims, mint, private_key
from tests.support.recording_upstream import Upstream


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: Any) -> str:
    return b64(json.dumps(obj).encode())


async def assert_invalid_token(
    resp: ClientResponse, upstream: Upstream, *, words: str | None = None
) -> None:
    assert resp.status == 401
    body = await resp.json()
    assert body["error"] == "invalid_token"
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="gateway", error="invalid_token"')
    if words:
        assert words in body["error_description"]
        assert words in challenge
    assert upstream.received == []


async def test_no_authorization_header(gateway: GatewayClient, upstream: Upstream) -> None:
    resp = await gateway.get("/api")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="gateway"'
    assert (await resp.json())["error"] == "invalid_request"
    assert upstream.received == []


async def test_wrong_scheme_is_like_no_token(gateway: GatewayClient, upstream: Upstream) -> None:
    resp = await gateway.get("/api", headers={"Authorization": "Basic YWxpY2U6d29uZGVybGFuZA=="})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="gateway"'
    assert upstream.received == []


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer    "])
async def test_empty_bearer_token(gateway: GatewayClient, upstream: Upstream, value: str) -> None:
    resp = await gateway.get("/api", headers={"Authorization": value})
    await assert_invalid_token(resp, upstream)


async def test_two_authorization_headers(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    token = mint(key_files)
    resp = await gateway.get(
        "/api", headers=[("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"
    assert 'error="invalid_request"' in resp.headers["WWW-Authenticate"]
    assert upstream.received == []


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "a.b",
        "....",
        "eyJ.eyJ.sig",
        "not a token",
        "ä.ö.ü",
        "%00.%00.%00",
        "WzFd.e30.c2ln",  # header is JSON but a list: [1]
        "bnVsbA.e30.c2ln",  # header is JSON null
        "eyJraWQiOlsiayJdfQ.e30.c2ln",  # kid is a list, not a string
    ],
)
async def test_garbage_tokens(gateway: GatewayClient, upstream: Upstream, token: str) -> None:
    resp = await gateway.get("/api", headers={"Authorization": f"Bearer {token}"})
    await assert_invalid_token(resp, upstream)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl"])
async def test_alg_none_is_refused(
    gateway: GatewayClient, upstream: Upstream, alg: str, signature: str
) -> None:
    token = (
        f"{segment({'alg': alg, 'typ': 'at+jwt', 'kid': 'ed1'})}.{segment(claims())}.{signature}"
    )
    resp = await gateway.get("/api", headers=bearer(token))
    await assert_invalid_token(resp, upstream, words="algorithm")


async def test_signature_stripped(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    header, payload, _ = mint(key_files).split(".")
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        resp = await gateway.get("/api", headers=bearer(token))
        await assert_invalid_token(resp, upstream)


async def test_payload_tampered(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    header, _, signature = mint(key_files, roles=["user"]).split(".")
    forged = segment(claims(roles=["user", "reports", "admin"]))
    resp = await gateway.get("/api", headers=bearer(f"{header}.{forged}.{signature}"))
    await assert_invalid_token(resp, upstream, words="signature")


@pytest.mark.parametrize("kid", ["ed1", "es1", "hs1"])
async def test_hs256_keyed_with_a_public_key(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path], kid: str
) -> None:
    """Key confusion: HMAC over the PEM of a published public key."""
    alg = "ES256" if kid == "es1" else "EdDSA"
    public_pem = (
        private_key(key_files, alg)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    hdr = segment({"alg": "HS256", "typ": "at+jwt", "kid": kid})
    body = segment(claims())
    import hashlib
    import hmac

    sig = b64(hmac.new(public_pem, f"{hdr}.{body}".encode(), hashlib.sha256).digest())
    resp = await gateway.get("/api", headers=bearer(f"{hdr}.{body}.{sig}"))
    await assert_invalid_token(resp, upstream)


@pytest.mark.parametrize("kid", ["nope", "../../etc/passwd", "/dev/null", "ed1/../ed1", "", None])
async def test_unknown_or_pathlike_kid(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path], kid: str | None
) -> None:
    resp = await gateway.get("/api", headers=bearer(mint(key_files, kid=kid)))
    await assert_invalid_token(resp, upstream, words="unknown key")


async def test_kid_of_a_different_algorithm(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    token = mint(key_files, alg="ES256", kid="ed1")  # signed by es1's key, claims to be ed1
    resp = await gateway.get("/api", headers=bearer(token))
    await assert_invalid_token(resp, upstream, words="algorithm")


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk"])
async def test_key_url_headers_are_never_fetched(
    gateway: GatewayClient, upstream: Upstream, header: str
) -> None:
    """An attacker's key, advertised in the token header, is never used nor fetched."""
    attacker_hits: list[str] = []

    async def serve_key(request: web.Request) -> web.Response:
        attacker_hits.append(request.path)
        return web.json_response({"keys": []})

    attacker = web.Application()
    attacker.router.add_get("/{tail:.*}", serve_key)
    server = TestServer(attacker, host="127.0.0.1")
    await server.start_server()
    try:
        key = ed25519.Ed25519PrivateKey.generate()
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
        value: Any = jwk if header == "jwk" else f"http://127.0.0.1:{server.port}/keys"
        token = jwt.encode(
            claims(), key, "EdDSA", headers={"kid": "attacker", "typ": "at+jwt", header: value}
        )
        resp = await gateway.get("/api", headers=bearer(token))
        await assert_invalid_token(resp, upstream)
        # the same attack naming a configured kid fails on the signature
        token = jwt.encode(
            claims(), key, "EdDSA", headers={"kid": "ed1", "typ": "at+jwt", header: value}
        )
        resp = await gateway.get("/api", headers=bearer(token))
        await assert_invalid_token(resp, upstream, words="signature")
    finally:
        await server.close()
    assert attacker_hits == []


async def test_expired(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    now = int(time.time())
    token = mint(key_files, iat=now - 3600, nbf=now - 3600, exp=now - 60)
    resp = await gateway.get("/api", headers=bearer(token))
    await assert_invalid_token(resp, upstream, words="expired")


async def test_nbf_in_the_future(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    token = mint(key_files, nbf=int(time.time()) + 600)
    resp = await gateway.get("/api", headers=bearer(token))
    await assert_invalid_token(resp, upstream, words="not valid yet")


async def test_iat_in_the_future(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    now = int(time.time())
    resp = await gateway.get("/api", headers=bearer(mint(key_files, iat=now + 600, nbf=None)))
    await assert_invalid_token(resp, upstream, words="not valid yet")
    # within the 30 s leeway it is accepted
    resp = await gateway.get("/api", headers=bearer(mint(key_files, iat=now + 10, nbf=None)))
    assert resp.status == 200


@pytest.mark.parametrize(
    ("override", "words"),
    [({"iss": "https://evil.example"}, "issuer"), ({"aud": "other-api"}, "audience")],
)
async def test_wrong_issuer_or_audience(
    gateway: GatewayClient,
    upstream: Upstream,
    key_files: dict[str, Path],
    override: dict[str, Any],
    words: str,
) -> None:
    resp = await gateway.get("/api", headers=bearer(mint(key_files, **override)))
    await assert_invalid_token(resp, upstream, words=words)


@pytest.mark.parametrize("claim", ["exp", "sub", "jti", "sid", "iat", "iss", "aud"])
async def test_missing_required_claim(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path], claim: str
) -> None:
    missing: dict[str, Any] = {claim: None}
    resp = await gateway.get("/api", headers=bearer(mint(key_files, **missing)))
    await assert_invalid_token(resp, upstream)


@pytest.mark.parametrize(
    "override",
    [
        {"exp": True},
        {"exp": "soon"},
        {"iat": [1]},
        {"nbf": "0"},
        {"exp": {"at": 1}},
        {"auth_time": "yesterday"},
        {"sub": 42},
        {"sid": ""},
        {"jti": ["a"]},
        {"roles": "admin"},
        {"roles": ["user", 1]},
        {"scope": ["read"]},
    ],
    ids=lambda override: "-".join(f"{k}={v!r}" for k, v in override.items()),
)
async def test_claims_of_the_wrong_type(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path], override: dict[str, Any]
) -> None:
    resp = await gateway.get("/api", headers=bearer(mint(key_files, **override)))
    await assert_invalid_token(resp, upstream, words="malformed")


@pytest.mark.parametrize("typ", ["JWT", "jwt", "id_token", "refresh+jwt", None])
async def test_typ_must_be_at_jwt(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path], typ: str | None
) -> None:
    resp = await gateway.get("/api", headers=bearer(mint(key_files, typ=typ)))
    await assert_invalid_token(resp, upstream, words="not an access token")


async def test_refresh_token_shape_as_bearer(gateway: GatewayClient, upstream: Upstream) -> None:
    token = "gwrt_0123abcd-AAAAAAAAAAAAAAAAAAAAAA." + "B" * 43
    resp = await gateway.get("/api", headers=bearer(token))
    await assert_invalid_token(resp, upstream)


async def test_non_json_payload(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    hdr = segment({"alg": "EdDSA", "typ": "at+jwt", "kid": "ed1"})
    payload = b64(b"this is not json")
    key = private_key(key_files)
    sig = b64(key.sign(f"{hdr}.{payload}".encode()))
    resp = await gateway.get("/api", headers=bearer(f"{hdr}.{payload}.{sig}"))
    await assert_invalid_token(resp, upstream)


async def test_64_kib_token(gateway: GatewayClient, upstream: Upstream) -> None:
    resp = await gateway.get("/api", headers=bearer("a" * 65536))
    assert resp.status in (401, 431)
    assert (await resp.json())["error"] in ("invalid_token", "request_header_fields_too_large")
    assert upstream.received == []


async def test_es256_token_is_accepted(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    resp = await gateway.get("/api", headers=bearer(mint(key_files, alg="ES256", kid="es1")))
    assert resp.status == 200
    assert upstream.headers_of()["x-user-id"] == ["alice"]


async def test_verified_cache_never_outlives_exp(
    gateway_factory: GatewayFactory,
    settings: Settings,
    key_files: dict[str, Path],
    upstream: Upstream,
) -> None:
    now = [time.time()]
    client = await gateway_factory(settings, clock=lambda: now[0])
    token = mint(key_files, exp=int(now[0]) + 60)
    assert (await client.get("/api", headers=bearer(token))).status == 200
    now[0] += 60 + 30 + 1  # past exp + leeway
    resp = await client.get("/api", headers=bearer(token))
    assert resp.status == 401
    assert "expired" in resp.headers["WWW-Authenticate"]
    assert len(upstream.received) == 1


async def test_missing_role_and_scope_are_403(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    token = mint(key_files, roles=["user"], scope="read:other")
    for path, words in (("/reports/q3", "role"), ("/scoped/x", "scope")):
        resp = await gateway.get(path, headers=bearer(token))
        assert resp.status == 403
        body = await resp.json()
        assert body["error"] == "insufficient_scope"
        assert words in body["error_description"]
        assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]
    assert upstream.received == []
    ok = mint(key_files, roles=["user", "reports"], scope="read:scoped")
    assert (await gateway.get("/reports/q3", headers=bearer(ok))).status == 200
    assert (await gateway.get("/scoped/x", headers=bearer(ok))).status == 200


async def test_optional_route(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    resp = await gateway.get("/optional/x", headers={"X-User-Id": "forged"})
    assert resp.status == 200
    assert "x-user-id" not in upstream.headers_of()
    resp = await gateway.get("/optional/x", headers=bearer(mint(key_files, sub="bob")))
    assert resp.status == 200
    assert upstream.headers_of()["x-user-id"] == ["bob"]
    resp = await gateway.get("/optional/x", headers=bearer("garbage"))
    assert resp.status == 401
    assert len(upstream.received) == 2


async def test_error_bodies_never_echo_the_token(
    gateway: GatewayClient, key_files: dict[str, Path]
) -> None:
    now = int(time.time())
    token = mint(key_files, exp=now - 100, iat=now - 200, nbf=None, sub="secret-subject")
    resp = await gateway.get("/api", headers=bearer(token))
    text = await resp.text() + str(resp.headers)
    assert token not in text
    assert "secret-subject" not in text
    for part in token.split("."):
        assert part not in text


async def test_valid_requests_work_after_a_burst_of_bad_ones(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    bad: list[Callable[[], dict[str, str]]] = [
        lambda: {"Authorization": "Bearer garbage"},
        lambda: {"Authorization": "Basic x"},
        lambda: bearer(mint(key_files, typ="JWT")),
        lambda: bearer("a" * 20000),
    ]
    for i in range(200):
        resp = await gateway.get("/api", headers=bad[i % len(bad)]())
        assert 400 <= resp.status < 500
    assert upstream.received == []
    resp = await gateway.get("/api", headers=bearer(mint(key_files)))
    assert resp.status == 200
