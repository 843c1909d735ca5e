"""Proxy edge cases: path tricks, upstream faults, framing, header policy, WebSockets."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer
from yarl import URL

from gateway.config import Settings
from tests.support.gateway_client import GatewayClient, GatewayFactory
from tests.support.jwt_tokens import bearer, mint
from tests.support.processes import free_port
from tests.support.raw_http import get, raw_request
from tests.support.recording_upstream import Upstream
from tests.support.waiting import eventually

TRICKS = [
    "/public/../api",
    "/public/%2e%2e/api",
    "/public/%2E%2E/api",
    "/public%2f..%2fapi",
    "/public/..%2fapi",
    "//api",
    "/public/..;/api",
    "/public\\..\\api",
    "/public/./../api",
    # fullwidth (and other compatibility) forms of ".", "/" and "\\", which some backends fold
    "/public/%EF%BC%8E%EF%BC%8E/api",
    "/public%EF%BC%8F..%EF%BC%8Fapi",
    "/public/..%EF%BC%BCapi",
    "/public/%E2%80%A5/api",
]


@pytest.mark.parametrize("path", TRICKS)
async def test_path_tricks_cannot_borrow_the_public_policy(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path], path: str
) -> None:
    status, _, body = await raw_request(gateway, get(path))
    assert status == 401, body
    assert json.loads(body)["error"] == "invalid_request"
    assert upstream.received == []
    token = mint(key_files)
    status, _, _ = await raw_request(gateway, get(path, f"Authorization: Bearer {token}"))
    assert status == 200
    # the upstream gets exactly the path the decision was made on
    assert [r.path for r in upstream.received] == ["/api"]


async def test_unescaped_fullwidth_dots_cannot_borrow_the_public_policy(
    gateway: GatewayClient, upstream: Upstream
) -> None:
    raw = "GET /public/\uff0e\uff0e/api HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    status, _, body = await raw_request(gateway, raw.encode())
    assert status == 400, body  # the parser takes only ASCII in a request target
    assert upstream.received == []


async def test_folding_characters_can_be_refused(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstream: Upstream,
    key_files: dict[str, Path],
) -> None:
    client = await gateway_factory(settings_factory(proxy={"path_folding": "refuse"}))
    token = f"Authorization: Bearer {mint(key_files)}"
    status, _, body = await raw_request(client, get("/public/%EF%BC%8E%EF%BC%8E/api", token))
    assert status == 400
    assert json.loads(body)["error"] == "invalid_request"
    status, _, _ = await raw_request(client, get("/public/caf%C3%A9", token))
    assert status == 200
    assert [r.path for r in upstream.received] == ["/public/caf%C3%A9"]


@pytest.mark.parametrize("path", ["/a%00b", "/a%zzb", "/a%2", "/%00"])
async def test_bad_encodings_are_400(gateway: GatewayClient, upstream: Upstream, path: str) -> None:
    status, _, body = await raw_request(gateway, get(path))
    assert status == 400
    assert json.loads(body)["error"] == "invalid_request"
    assert upstream.received == []


async def test_prefix_matches_whole_segments(gateway: GatewayClient, upstream: Upstream) -> None:
    resp = await gateway.get("/publicity")
    assert resp.status == 401  # "/" route (required), not the "/public/" route
    resp = await gateway.get("/public")
    assert resp.status == 200
    assert [r.path for r in upstream.received] == ["/public"]


async def test_query_string_is_forwarded_unchanged(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    query = "a=%2e%2E&b=1+2&c=%2F&d&e=%C3%A9"
    resp = await gateway.get(URL(f"/api?{query}", encoded=True), headers=bearer(mint(key_files)))
    assert resp.status == 200
    assert upstream.received[-1].query == query


async def test_upstream_refused_is_502(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = await gateway_factory(
        settings_factory(routes=[{"prefix": "/", "upstream": dead, "policy": "public"}])
    )
    resp = await client.get("/x")
    assert resp.status == 502
    assert await resp.json() == {
        "error": "bad_gateway",
        "error_description": "the upstream could not be reached",
    }


async def test_slow_upstream_is_504(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings]
) -> None:
    client = await gateway_factory(settings_factory(proxy={"read_timeout": 0.3}))
    resp = await client.get("/public/slow?s=3")
    assert resp.status == 504
    assert (await resp.json())["error"] == "gateway_timeout"


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_upstream_reset_mid_body_aborts_the_client(
    gateway: GatewayClient, framing: str
) -> None:
    size, cut = 4 * 1024 * 1024, 1024 * 1024
    resp = await gateway.get(f"/public/download?size={size}&cut={cut}&framing={framing}")
    assert resp.status == 200  # the status line was already on its way
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


async def test_download_streams_completely(gateway: GatewayClient) -> None:
    for framing in ("length", "chunked"):
        resp = await gateway.get(f"/public/download?size=3000000&framing={framing}")
        assert resp.status == 200
        assert len(await resp.read()) == 3000000


async def test_oversized_headers_are_431(gateway: GatewayClient, upstream: Upstream) -> None:
    resp = await gateway.get("/public/x", headers={f"X-Pad-{i}": "v" * 1000 for i in range(20)})
    assert resp.status == 431
    assert (await resp.json())["error"] == "request_header_fields_too_large"
    assert upstream.received == []


async def test_oversized_body_with_length_is_413(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings], upstream: Upstream
) -> None:
    client = await gateway_factory(settings_factory(proxy={"max_body_size": 1000}))
    resp = await client.post("/public/upload", data=b"x" * 1001)
    assert resp.status == 413
    assert (await resp.json())["error"] == "payload_too_large"
    assert upstream.received == []
    resp = await client.post("/public/upload", data=b"x" * 1000)
    assert resp.status == 200


async def test_oversized_chunked_body_is_413(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings], upstream: Upstream
) -> None:
    client = await gateway_factory(settings_factory(proxy={"max_body_size": 100_000}))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 50_000

    resp = await client.post("/public/upload", data=chunks())
    assert resp.status == 413
    # The upstream may have seen the start of a chunked body, but never a complete request:
    # the gateway aborts the upload without the terminating chunk.
    assert all(r.body_size <= 100_000 for r in upstream.received)
    assert not [r for r in upstream.received if r.body_size == 500_000]


@pytest.mark.slow
async def test_concurrency_limit_is_503(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings], upstream: Upstream
) -> None:
    client = await gateway_factory(settings_factory(proxy={"max_concurrency": 1}))
    slow = asyncio.ensure_future(client.get("/public/slow?s=1"))
    # the slow request holds the only slot once the upstream has it
    await eventually(lambda: len(upstream.received) == 1, what="the upstream has the slow request")
    resp = await client.get("/public/fast")
    assert resp.status == 503
    assert (await resp.json())["error"] == "temporarily_unavailable"
    assert resp.headers["Retry-After"] == "1"
    assert (await slow).status == 200
    assert (await slow).status == 200


async def test_head_and_no_body_statuses(gateway: GatewayClient) -> None:
    resp = await gateway.head("/public/x")
    assert resp.status == 200
    assert await resp.read() == b""


async def test_client_framing_headers_are_never_copied(
    gateway: GatewayClient, upstream: Upstream
) -> None:
    body = b"hello world"
    request = (
        b"POST /public/upload HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
        b"Content-Length: 11\r\n\r\n" + body
    )
    status, _, _ = await raw_request(gateway, request)
    assert status == 200
    seen = upstream.headers_of()
    assert seen["content-length"] == ["11"]
    assert "transfer-encoding" not in seen
    chunked = (
        b"POST /public/upload HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    status, _, _ = await raw_request(gateway, chunked)
    assert status == 200
    seen = upstream.headers_of()
    assert seen["transfer-encoding"] == ["chunked"]
    assert "content-length" not in seen
    assert upstream.received[-1].body_size == 5


async def test_both_framing_headers_are_refused(gateway: GatewayClient, upstream: Upstream) -> None:
    smuggle = (
        b"POST /public/upload HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    status, _, _ = await raw_request(gateway, smuggle)
    assert status == 400
    assert upstream.received == []


async def test_hop_by_hop_headers_are_removed(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    headers = {
        **bearer(mint(key_files)),
        "Connection": "keep-alive, X-Forwarded-For, X-Request-Id, X-User-Id, X-Custom",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Trailer": "X-Checksum",
        "Upgrade": "h2c",
        "Proxy-Authorization": "Basic abc",
        "Proxy-Connection": "keep-alive",
        "X-Custom": "named-in-connection",
    }
    resp = await gateway.get("/api", headers=headers)
    assert resp.status == 200
    seen = upstream.headers_of()
    for name in (
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "x-custom",
    ):
        assert name not in seen, name
    # Connection can never remove what the gateway adds
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert len(seen["x-request-id"]) == 1
    assert seen["x-user-id"] == ["alice"]


async def test_forwarded_for_is_trusted_only_from_trusted_proxies(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings], upstream: Upstream
) -> None:
    spoof = {"X-Forwarded-For": "10.9.9.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "x"}
    client = await gateway_factory(settings_factory())
    await client.get("/public/x", headers=spoof)
    seen = upstream.headers_of()
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    trusted = await gateway_factory(settings_factory(proxy={"trusted_proxies": ["127.0.0.0/8"]}))
    await trusted.get("/public/x", headers=spoof)
    seen = upstream.headers_of()
    assert seen["x-forwarded-for"] == ["10.9.9.9, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["https"]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("abc-123-DEF_456", True), ("has spaces in it", False), ("x" * 500, False), ("short", False)],
)
async def test_request_id(
    gateway: GatewayClient, upstream: Upstream, sent: str, kept: bool
) -> None:
    resp = await gateway.get("/public/x", headers={"X-Request-Id": sent})
    forwarded = upstream.headers_of()["x-request-id"]
    assert len(forwarded) == 1
    assert (forwarded[0] == sent) is kept
    assert resp.headers["X-Request-Id"] == forwarded[0]


async def test_authorization_forwarded_only_when_configured(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstream: Upstream,
    key_files: dict[str, Path],
) -> None:
    token = mint(key_files)
    client = await gateway_factory(settings_factory(proxy={"forward_authorization": True}))
    await client.get("/api", headers=bearer(token))
    assert upstream.headers_of()["authorization"] == [f"Bearer {token}"]


async def test_identity_headers_any_case_and_underscores(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    forged = [
        ("x-user-id", "m"),
        ("X-USER-ID", "m"),
        ("X_User_Id", "m"),
        ("x_user-roles", "admin"),
        ("X-Auth-Anything", "1"),
        ("X_AUTH_TOKEN", "1"),
        ("x-session-id", "s"),
        ("X-User-Email", "m@evil"),
    ]
    resp = await gateway.get("/api", headers=[*forged, *bearer(mint(key_files)).items()])
    assert resp.status == 200
    seen = upstream.received[-1].headers
    names = [n.lower().replace("_", "-") for n, _ in seen]
    assert names.count("x-user-id") == 1
    assert names.count("x-user-roles") == 1
    assert names.count("x-session-id") == 1
    assert "x-user-email" not in names and not [n for n in names if n.startswith("x-auth-")]
    assert not [n for n, _ in seen if "_" in n]
    # on a public route the client's copies are removed too
    await gateway.get("/public/x", headers=forged)
    names = [n.lower() for n, _ in upstream.received[-1].headers]
    assert not [n for n in names if n.startswith(("x-user", "x_user", "x-auth", "x_auth"))]


async def test_a_role_with_a_comma_cannot_become_two_roles(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    token = mint(key_files, roles=["user", "staff,reports", "ops%2Cadmin"])
    assert (await gateway.get("/api", headers=bearer(token))).status == 200
    (roles,) = upstream.headers_of()["x-user-roles"]
    assert [r.strip() for r in roles.split(",")] == ["user", "staff%2Creports", "ops%252Cadmin"]
    assert (await gateway.get("/reports/q", headers=bearer(token))).status == 403


async def test_underscore_and_cgi_names_never_reach_the_upstream(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    sent = [
        ("SCRIPT_NAME", "/admin"),
        ("PATH_INFO", "/admin/users"),
        ("Path-Info", "/admin/users"),
        ("REMOTE_USER", "root"),
        ("X_Forwarded_User", "root"),
        ("X_Custom", "1"),
        ("X-Custom", "2"),
    ]
    for path, headers in (("/public/x", sent), ("/api", [*sent, *bearer(mint(key_files)).items()])):
        resp = await gateway.get(path, headers=headers)
        assert resp.status == 200
        seen = [(n.lower(), v) for n, v in upstream.received[-1].headers]
        assert not [n for n, _ in seen if "_" in n]
        assert "path-info" not in dict(seen)
        assert ("x-custom", "2") in seen


async def _ws_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    request.app[SEEN].append(request.headers.get("X-User-Id", ""))
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str("echo:" + message.data)
    request.app[CLOSED].set()
    return ws


SEEN = web.AppKey("seen", list)
CLOSED = web.AppKey("closed", asyncio.Event)


async def test_websocket_is_proxied_after_auth(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    key_files: dict[str, Path],
) -> None:
    app = web.Application()
    app[SEEN] = []
    app[CLOSED] = asyncio.Event()
    app.router.add_get("/ws", _ws_echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = f"http://127.0.0.1:{server.port}"
        client = await gateway_factory(settings_factory(routes=[{"prefix": "/", "upstream": url}]))
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/ws")
        assert refused.value.status == 401
        assert app[SEEN] == []
        ws = await client.ws_connect("/ws", headers=bearer(mint(key_files, sub="wsuser")))
        await ws.send_str("hi")
        message = await asyncio.wait_for(ws.receive(), 5)
        assert message.data == "echo:hi"
        await ws.close()
        # the client's close travels through the gateway to the upstream, which ends
        await asyncio.wait_for(app[CLOSED].wait(), 10)
        assert app[SEEN] == ["wsuser"]
    finally:
        await server.close()


@pytest.mark.slow
async def test_large_upload_streams(gateway: GatewayClient, upstream: Upstream) -> None:
    size = 64 * 1024 * 1024
    resp = await gateway.post("/public/upload", data=io.BytesIO(b"\0" * size))
    assert resp.status == 200
    assert upstream.received[-1].body_size == size


async def test_errors_never_echo_internal_details(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = await gateway_factory(
        settings_factory(routes=[{"prefix": "/", "upstream": dead, "policy": "public"}])
    )
    text = await (await client.get("/x")).text()
    assert "Errno" not in text and "Traceback" not in text and "127.0.0.1" not in text
    assert time.time() > 0


@pytest.mark.slow
async def test_slow_client_is_not_an_upstream_timeout(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings]
) -> None:
    """Reading from the upstream pauses while the client is slow; that pause is not the
    upstream's silence, whatever proxy.read_timeout says."""
    client = await gateway_factory(settings_factory(proxy={"read_timeout": 0.3}))
    size = 32 * 1024 * 1024
    resp = await client.get(f"/public/download?size={size}")
    assert resp.status == 200
    received = len(await resp.content.read(64 * 1024))
    await asyncio.sleep(1.2)  # every buffer on the way fills; the gateway stops reading
    while chunk := await resp.content.read(1024 * 1024):
        received += len(chunk)
    assert received == size


@pytest.mark.slow
async def test_slow_client_upload_is_not_an_upstream_timeout(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings]
) -> None:
    client = await gateway_factory(settings_factory(proxy={"read_timeout": 0.3}))

    async def slowly() -> AsyncIterator[bytes]:
        for _ in range(8):  # 1.2 s in all, four times the read timeout
            yield b"x" * 1024
            await asyncio.sleep(0.15)

    resp = await client.post("/public/upload", data=slowly())
    assert resp.status == 200
    assert (await resp.json())["body_size"] == 8 * 1024
