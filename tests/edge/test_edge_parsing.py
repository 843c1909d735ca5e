"""Strict HTTP at the edge: Host and version checks, parse errors as JSON without echoing
the request, `Expect: 100-continue` only for accepted requests, the gateway's own bodies
refused before they are read, paths and headers judged as a legacy backend reads them."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from gateway.config import Settings
from tests.support.gateway_cli import run_cli
from tests.support.gateway_client import GatewayClient, GatewayFactory, login
from tests.support.jwt_tokens import bearer, mint
from tests.support.processes import free_port
from tests.support.raw_http import get, parse_response, raw_request, read_response
from tests.support.recording_upstream import Upstream

TOKEN_LIKE = "eyJhbGciOiJFZERTQSJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJl"


def request_bytes(line: str, *headers: str, body: bytes = b"") -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"{line}\r\n{extra}\r\n".encode("latin-1") + body


async def assert_json_400(resp: tuple[int, dict[str, str], bytes], upstream: Upstream) -> None:
    status, headers, body = resp
    assert status == 400, body
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["error"] == "invalid_request"
    assert upstream.received == []


@pytest.mark.parametrize(
    "host",
    [
        "Host: a.example\r\nHost: b.example",  # two Host fields
        "Host: a.example, b.example",  # a list
        "Host: user@a.example",  # userinfo
        "Host: a example",  # a space
        "Host: a.example:port",  # a port that is not a number
        "Host: a.example:99999",
        "Host: a.example:80:80",
    ],
)
async def test_malformed_host_is_400_and_never_forwarded(
    gateway: GatewayClient, upstream: Upstream, host: str
) -> None:
    resp = await raw_request(
        gateway, request_bytes("GET /public/x HTTP/1.1", host, "Connection: close")
    )
    await assert_json_400(resp, upstream)


async def test_well_formed_hosts_pass(gateway: GatewayClient, upstream: Upstream) -> None:
    for host in ("gw.example", "gw.example:8443", "127.0.0.1:80", "[::1]:8080"):
        status, _, _ = await raw_request(
            gateway, request_bytes("GET /public/x HTTP/1.1", f"Host: {host}", "Connection: close")
        )
        assert status == 200
    assert [dict(r.headers)["X-Forwarded-Host"] for r in upstream.received][-1] == "[::1]:8080"


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "HTTP/3.0"])
async def test_other_http_versions_are_refused(
    gateway: GatewayClient, upstream: Upstream, version: str
) -> None:
    resp = await raw_request(gateway, request_bytes(f"GET /public/x {version}", "Host: gw"))
    await assert_json_400(resp, upstream)


@pytest.mark.parametrize(
    "version", ["HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "HTTP/3.0", "HTTP/1.9", "HTTP/9.9"]
)
@pytest.mark.parametrize("path", ["/public/x", "/auth/login", "/public/%2e%2e/x"])
async def test_refusal_of_another_version_answers_in_http_1_1(
    gateway: GatewayClient, upstream: Upstream, version: str, path: str
) -> None:
    """The refusal speaks HTTP/1.1, never the version the client claimed (a client or proxy
    in front reading `HTTP/2.0 400` over a text connection could take it for another
    protocol); and the connection is closed after it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.server.port)
    try:
        writer.write(request_bytes(f"GET {path} {version}", "Host: gw"))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # the gateway closes it
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400 "), status_line
    assert b"HTTP/" not in rest.partition(b"\r\n\r\n")[2]  # one answer
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"] == "invalid_request"
    assert upstream.received == []


@pytest.mark.parametrize(
    "line", ["get /public/x HTTP/1.1", "GET /public/\x01 HTTP/1.1", "GET /public/x HTTP/1.0 x"]
)
async def test_parse_errors_answer_in_http_1_1(
    gateway: GatewayClient, upstream: Upstream, line: str
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.server.port)
    try:
        writer.write(request_bytes(line, "Host: gw"))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:40]
    assert b"Connection: close" in answer
    assert upstream.received == []


@pytest.mark.parametrize(
    "raw",
    [
        request_bytes("get /public/x HTTP/1.1", "Host: gw"),  # lowercase method
        request_bytes("GET /public/x HTTP/1.1", "Host: gw", f"X-Bad: \x01Bearer {TOKEN_LIKE}"),
        request_bytes("GET /public/x HTTP/1.1", "Host: gw", f"Bad Name: {TOKEN_LIKE}"),
        request_bytes(f"GET /public/\x01{TOKEN_LIKE} HTTP/1.1", "Host: gw"),
        request_bytes("GET /public/x HTTP/1.1", "Host: gw", f"Authorization: Bearer {TOKEN_LIKE}")
        + b"\r\n\x00garbage",
        request_bytes(
            "POST /public/x HTTP/1.1",
            "Host: gw",
            "Content-Length: 5",
            "Transfer-Encoding: chunked",
        ),
    ],
    ids=["lowercase-method", "control-char", "bad-name", "bad-path", "garbage", "smuggling"],
)
async def test_parse_errors_are_json_and_never_echo_the_request(
    gateway: GatewayClient, upstream: Upstream, raw: bytes
) -> None:
    status, headers, body = await raw_request(gateway, raw)
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert (
        json.loads(body)
        == {
            "error": "invalid_request",
            "error_description": "malformed HTTP request",
        }
        or json.loads(body)["error"] == "invalid_request"
    )
    assert TOKEN_LIKE.encode() not in body and b"secret" not in body
    assert b"aiohttp" not in body
    assert upstream.received == []


async def test_header_line_past_the_parser_backstop_is_431_json(
    gateway: GatewayClient, upstream: Upstream
) -> None:
    raw = request_bytes("GET /public/x HTTP/1.1", "Host: gw", "X-Big: " + "a" * 200_000)
    status, _, body = await raw_request(gateway, raw)
    assert status == 431
    assert json.loads(body)["error"] == "request_header_fields_too_large"
    assert upstream.received == []


async def test_deeply_nested_token_json_is_401(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    deep = "[" * 3000 + "]" * 3000
    segment = base64.urlsafe_b64encode(deep.encode()).rstrip(b"=").decode()
    head = base64.urlsafe_b64encode(b'{"alg":"EdDSA","kid":"ed1","typ":"at+jwt"}').rstrip(b"=")
    for token in (f"{segment}.{segment}.c2ln", f"{head.decode()}.{segment}.c2ln"):
        resp = await gateway.get("/api", headers=bearer(token))
        assert resp.status == 401
        assert (await resp.json())["error"] == "invalid_token"
    assert upstream.received == []


async def test_deeply_nested_json_body_is_400(client: GatewayClient) -> None:
    resp = await client.post(
        "/auth/login",
        data="[" * 20_000 + "]" * 20_000,
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"


# ---- Expect: 100-continue ----------------------------------------------------------------


async def expect_exchange(
    client: GatewayClient, head: bytes, body: bytes
) -> tuple[bytes, tuple[int, dict[str, str], bytes]]:
    """Send a head with `Expect: 100-continue` and wait for the interim or final answer
    before sending the body (as curl does); returns (what came first, the final answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(head)
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if not first.startswith(b"HTTP/1.1 100"):
            status, headers, _ = parse_response(first)
            length = int(headers.get("Content-Length", "0"))
            return first, (status, headers, await reader.readexactly(length))
        writer.write(body)
        await writer.drain()
        return first, await asyncio.wait_for(read_response(reader), 10)
    finally:
        writer.close()


def expect_head(path: str, length: int, *headers: str) -> bytes:
    return request_bytes(
        f"POST {path} HTTP/1.1",
        "Host: gw",
        "Connection: close",
        "Expect: 100-continue",
        f"Content-Length: {length}",
        *headers,
    )


@pytest.mark.parametrize(
    "auth", ["", "Authorization: Bearer not-a-token"], ids=["no-token", "bad-token"]
)
async def test_refused_request_gets_its_4xx_without_100_continue(
    gateway: GatewayClient, upstream: Upstream, auth: str
) -> None:
    head = expect_head("/api/upload", 5, *([auth] if auth else []))
    first, (status, _, _) = await expect_exchange(gateway, head, b"hello")
    assert not first.startswith(b"HTTP/1.1 100")
    assert status == 401
    assert upstream.received == []


async def test_too_large_declared_body_gets_413_without_100_continue(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstream: Upstream,
    key_files: dict[str, Path],
) -> None:
    client = await gateway_factory(settings_factory(proxy={"max_body_size": 1000}))
    head = expect_head("/api/upload", 50_000_000, f"Authorization: Bearer {mint(key_files)}")
    first, (status, _, body) = await expect_exchange(client, head, b"")
    assert not first.startswith(b"HTTP/1.1 100")
    assert status == 413
    assert json.loads(body)["error"] == "payload_too_large"
    assert upstream.received == []


async def test_authorized_request_gets_100_continue_then_is_forwarded(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    head = expect_head("/api/upload", 5, f"Authorization: Bearer {mint(key_files)}")
    first, (status, _, _) = await expect_exchange(gateway, head, b"hello")
    assert first.startswith(b"HTTP/1.1 100 Continue")
    assert status == 200
    assert upstream.received[0].body_size == 5
    assert "expect" not in upstream.headers_of()  # the gateway answered it; not forwarded


async def test_unknown_expectation_is_417(gateway: GatewayClient, upstream: Upstream) -> None:
    raw = request_bytes(
        "POST /public/x HTTP/1.1", "Host: gw", "Expect: 200-ok", "Content-Length: 0"
    )
    status, _, body = await raw_request(gateway, raw)
    assert status == 417
    assert json.loads(body)["error"] == "expectation_failed"
    assert upstream.received == []


# ---- the gateway's own endpoints take small bodies ----------------------------------------


async def test_own_endpoint_refuses_a_large_declared_body_before_reading_it(
    client: GatewayClient,
) -> None:
    # 50 MB declared, nothing sent: the answer comes at once, not after waiting for a body
    head = request_bytes(
        "POST /auth/login HTTP/1.1",
        "Host: gw",
        "Connection: close",
        "Content-Type: application/json",
        "Content-Length: 50000000",
    )
    status, _, body = await raw_request(client, head, timeout=5)
    assert status == 413
    assert json.loads(body)["error"] == "payload_too_large"


async def test_own_endpoint_cuts_a_chunked_body_at_the_limit(client: GatewayClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b'{"x": "' + b"a" * 4096 + b'"}'

    resp = await client.post(
        "/auth/login", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 413
    assert (await resp.json())["error"] == "payload_too_large"


async def test_own_endpoint_with_expect_gets_413_without_100(client: GatewayClient) -> None:
    head = expect_head("/auth/login", 10_000_000, "Content-Type: application/json")
    first, (status, _, _) = await expect_exchange(client, head, b"")
    assert not first.startswith(b"HTTP/1.1 100")
    assert status == 413


async def test_own_endpoint_with_expect_gets_100_then_logs_in(client: GatewayClient) -> None:
    body = b'{"username": "alice", "password": "wonderland"}'
    head = expect_head("/auth/login", len(body), "Content-Type: application/json")
    first, (status, _, answer) = await expect_exchange(client, head, body)
    assert first.startswith(b"HTTP/1.1 100 Continue")
    assert status == 200
    assert "access_token" in json.loads(answer)


async def test_form_with_too_many_fields_is_400(client: GatewayClient) -> None:
    form = "&".join(f"f{i}=v" for i in range(200))
    resp = await client.post(
        "/auth/token", data=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"


# ---- paths judged as the backend will read them ------------------------------------------


@pytest.mark.parametrize(
    "path", ["/reports;x=1/q", "/reports;jsessionid=abc/q", "/reports;/q", "/api/../reports;a/q"]
)
async def test_path_parameters_cannot_dodge_a_role(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path], path: str
) -> None:
    """Tomcat serves /reports;x=1/q as /reports/q: the reports role applies."""
    alice = mint(key_files, roles=["user"])
    status, _, body = await raw_request(gateway, get(path, f"Authorization: Bearer {alice}"))
    assert status == 403, body
    assert upstream.received == []
    bob = mint(key_files, roles=["user", "reports"])
    status, _, _ = await raw_request(gateway, get(path, f"Authorization: Bearer {bob}"))
    assert status == 200
    assert upstream.received[0].path.startswith("/reports;")  # forwarded as received


async def test_path_parameters_can_be_refused(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstream: Upstream,
    key_files: dict[str, Path],
) -> None:
    client = await gateway_factory(settings_factory(proxy={"path_parameters": "refuse"}))
    token = mint(key_files, roles=["user", "reports"])
    status, _, body = await raw_request(
        client, get("/reports;x=1/q", f"Authorization: Bearer {token}")
    )
    assert status == 400
    assert json.loads(body)["error"] == "invalid_request"
    status, _, _ = await raw_request(client, get("/reports/q", f"Authorization: Bearer {token}"))
    assert status == 200
    assert [r.path for r in upstream.received] == ["/reports/q"]


@pytest.mark.parametrize(
    "path",
    ["/public/%c0%ae%c0%ae/api", "/public/%c0%af", "/public/%e0%80%ae", "/public/%ff", "/a%c3"],
)
async def test_invalid_utf8_in_paths_is_400(
    gateway: GatewayClient, upstream: Upstream, path: str
) -> None:
    status, _, body = await raw_request(gateway, get(path))
    assert status == 400
    assert json.loads(body)["error"] == "invalid_request"
    assert upstream.received == []


async def test_valid_utf8_in_paths_passes(gateway: GatewayClient, upstream: Upstream) -> None:
    status, _, _ = await raw_request(gateway, get("/public/caf%c3%a9"))
    assert status == 200
    assert upstream.received[0].path == "/public/caf%C3%A9"


# ---- headers that would make the backend serve something else -----------------------------

REWRITING = [
    "X-Original-URL: /admin",
    "X-Rewrite-URL: /admin",
    "X_Original_URL: /admin",
    "x-http-method-override: DELETE",
    "X-HTTP-Method: DELETE",
    "X-Method-Override: DELETE",
    "X-Forwarded-Prefix: /admin",
    "X-Forwarded-Uri: /admin",
]


@pytest.mark.parametrize("header", REWRITING)
async def test_rewriting_headers_are_removed(
    gateway: GatewayClient, upstream: Upstream, header: str
) -> None:
    status, _, _ = await raw_request(gateway, get("/public/x", header))
    assert status == 200
    name = header.split(":")[0].lower()
    assert name not in upstream.headers_of()
    assert name.replace("_", "-") not in upstream.headers_of()


async def test_removed_headers_are_configurable(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstream: Upstream,
) -> None:
    client = await gateway_factory(
        settings_factory(proxy={"strip_request_headers": ["X-Legacy-Route"]})
    )
    await raw_request(client, get("/public/x", "X-Legacy-Route: /a", "X-Original-URL: /b"))
    seen = upstream.headers_of()
    assert "x-legacy-route" not in seen
    assert seen["x-original-url"] == ["/b"]  # no longer on the list


async def test_forwarded_and_real_ip_pass_only_from_trusted_proxies(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstream: Upstream,
) -> None:
    sent = ("Forwarded: for=10.1.1.1;proto=https", "X-Real-IP: 10.1.1.1")
    client = await gateway_factory(settings_factory())
    await raw_request(client, get("/public/x", *sent))
    assert "forwarded" not in upstream.headers_of() and "x-real-ip" not in upstream.headers_of()
    trusted = await gateway_factory(settings_factory(proxy={"trusted_proxies": ["127.0.0.0/8"]}))
    await raw_request(trusted, get("/public/x", *sent))
    seen = upstream.headers_of()
    assert seen["forwarded"] == ["for=10.1.1.1;proto=https"]
    assert seen["x-real-ip"] == ["10.1.1.1"]


# ---- upstream connect that never completes ------------------------------------------------


@pytest.fixture
def blackhole() -> Iterator[str]:
    """An address that accepts no connection in time: a listening socket whose accept queue
    is full, so further SYNs are dropped and connecting hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = []
    for _ in range(2):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        held.append(filler)
    yield f"http://127.0.0.1:{port}"
    for sock in (*held, listener):
        sock.close()


@pytest.mark.slow
async def test_upstream_connect_that_never_completes_is_504(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    blackhole: str,
) -> None:
    client = await gateway_factory(
        settings_factory(
            routes=[{"prefix": "/", "upstream": blackhole, "policy": "public"}],
            proxy={"connect_timeout": 0.5},
        )
    )
    resp = await client.get("/x")
    assert resp.status == 504
    assert (await resp.json())["error"] == "gateway_timeout"


async def test_requests_keep_working_after_the_refusals(client: GatewayClient) -> None:
    for raw in (
        request_bytes("GET / HTTP/2.0", "Host: gw"),
        request_bytes("GET / HTTP/1.1", "Host: a b"),
        request_bytes("get / HTTP/1.1", "Host: gw"),
    ):
        await raw_request(client, raw)
    body = await login(client)
    resp = await client.get("/api", headers=bearer(body["access_token"]))
    assert resp.status == 200


@pytest.mark.slow
def test_serving_on_the_pure_python_parser_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"listen": {"port": free_port()}, "admin": {"port": free_port()}}))
    result = run_cli("serve", "--config", str(config), env={"AIOHTTP_NO_EXTENSIONS": "1"})
    assert result.returncode == 2
    assert "C HTTP parser is not in use" in result.stderr
