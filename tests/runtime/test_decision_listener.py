"""The decision listener (`forward_auth.listen`): only /auth/verify, on the lean HTTP layer,
with the same answers as the public listener's decision endpoint (the same admission, the
same edge errors), keep-alive and pipelining, the edge's limits, and reloads that reach it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.support.jwt_tokens import bearer, mint
from tests.support.processes import free_port
from tests.support.raw_http import read_response
from tests.support.recording_upstream import Upstream
from tests.support.redis_servers import RedisServer
from tests.support.reloading import (
    ReloadableGateway,
    reload_config,
    reloadable_gateway,
    served_config,
    start_served,
    stop_served,
)

Config = dict[str, Any]
LISTEN = {"host": "127.0.0.1", "port": 0}


@pytest.fixture
def config(key_files: dict[str, Path], upstream: Upstream, users_file: Path) -> Config:
    return reload_config(
        key_files,
        upstream.url,
        users_file,
        forward_auth={"enabled": True, "listen": LISTEN},
    )


@pytest.fixture
async def gw(config: Config, tmp_path: Path) -> AsyncIterator[ReloadableGateway]:
    async with reloadable_gateway(config, tmp_path / "gateway.yaml") as running:
        yield running


def lean(gw: ReloadableGateway) -> str:
    assert gw.gateway.decisions is not None
    return f"http://127.0.0.1:{gw.gateway.decisions.port}"


async def both(
    gw: ReloadableGateway, method: str, path: str, headers: dict[str, str], **kwargs: Any
) -> tuple[tuple[int, CIMultiDict[str], bytes], tuple[int, CIMultiDict[str], bytes]]:
    """The same request to the public listener and to the decision listener."""
    answers = []
    for base in (gw.base, lean(gw)):
        async with gw.http.request(
            method, base + path, headers=headers, allow_redirects=False, **kwargs
        ) as resp:
            answers.append((resp.status, CIMultiDict(resp.headers), await resp.read()))
    return answers[0], answers[1]


CASES: list[tuple[str, str, str, dict[str, str]]] = [
    ("public route", "GET", "/auth/verify", {"X-Original-URI": "/public/x"}),
    ("no token", "GET", "/auth/verify", {"X-Original-URI": "/api/x"}),
    ("bad token", "GET", "/auth/verify", {"X-Original-URI": "/api/x", **bearer("a.b.c")}),
    ("not normal", "GET", "/auth/verify", {"X-Original-URI": "/public/../api/x"}),
    ("no route", "GET", "/auth/verify", {"X-Original-URI": "/nowhere"}),
    ("traefik, no token", "POST", "/auth/verify", {"X-Forwarded-Uri": "/api/x"}),
    ("envoy, public", "HEAD", "/auth/verify/public/x", {}),
    ("envoy, no token", "DELETE", "/auth/verify/api/x?y=1", {}),
    ("not described", "GET", "/auth/verify", {}),
    (
        "bad method",
        "GET",
        "/auth/verify",
        {"X-Forwarded-Uri": "/api", "X-Forwarded-Method": "TRACE"},
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "headers"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_the_lean_listener_answers_as_the_public_one(
    gw: ReloadableGateway, method: str, path: str, headers: dict[str, str]
) -> None:
    public, decided = await both(gw, method, path, headers)
    assert decided[0] == public[0]
    assert decided[2] == public[2]
    for name in ("WWW-Authenticate", "X-Gateway-Status", "Content-Type", "Cache-Control"):
        assert decided[1].get(name) == public[1].get(name), name
    assert decided[1]["X-Request-Id"]


async def test_an_admitted_decision_answers_as_the_public_one(
    gw: ReloadableGateway, key_files: dict[str, Path]
) -> None:
    token = mint(key_files, sub="alice", sid="s-1", roles=["user", "ops"])
    headers = {
        "X-Original-URI": "/api/x?y=1",
        "X-Original-Method": "POST",
        "Cookie": "theme=dark; lang=en",
        **bearer(token),
    }
    public, decided = await both(gw, "GET", "/auth/verify", headers)
    assert public[0] == decided[0] == 200
    assert public[2] == decided[2] == b""
    for name in (
        "X-User-Id",
        "X-User-Roles",
        "X-Session-Id",
        "Cache-Control",
        "X-Upstream-Cookie",
        "Set-Cookie",
        "WWW-Authenticate",
    ):
        assert decided[1].getall(name, []) == public[1].getall(name, []), name
    assert decided[1]["X-User-Roles"] == "user,ops"
    assert decided[1]["X-Upstream-Cookie"] == "theme=dark; lang=en"
    assert decided[1]["X-Request-Id"] != public[1]["X-Request-Id"]


async def test_identity_headers_and_keep_alive(
    gw: ReloadableGateway, key_files: dict[str, Path]
) -> None:
    token = mint(key_files, sub="alice", sid="s-1", roles=["user"])
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as http:
        for i in range(20):
            async with http.get(
                lean(gw) + "/auth/verify", headers={"X-Original-URI": f"/api/{i}", **bearer(token)}
            ) as resp:
                assert resp.status == 200
                assert resp.headers["X-User-Id"] == "alice"
                assert resp.headers["X-Session-Id"] == "s-1"
                assert resp.headers["X-User-Roles"] == "user"
                assert await resp.read() == b""
        assert len(connector._conns) == 1


async def test_pipelined_requests_are_answered_in_order(gw: ReloadableGateway) -> None:
    assert gw.gateway.decisions is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.gateway.decisions.port)
    try:
        writer.write(
            b"GET /auth/verify HTTP/1.1\r\nHost: gw\r\nX-Original-URI: /public/a\r\n\r\n"
            b"GET /auth/verify HTTP/1.1\r\nHost: gw\r\nX-Original-URI: /api/b\r\n\r\n"
            b"GET /auth/verify HTTP/1.1\r\nHost: gw\r\nX-Original-URI: /public/c\r\n\r\n"
        )
        await writer.drain()
        statuses = [(await asyncio.wait_for(read_response(reader), 10))[0] for _ in range(3)]
        assert statuses == [200, 401, 200]
    finally:
        writer.close()


async def test_only_the_decision_is_served_there(gw: ReloadableGateway) -> None:
    for path in ("/public/x", "/healthz", "/auth/login", "/auth/verifyx", "/metrics"):
        async with gw.http.get(lean(gw) + path, headers={"X-Original-URI": "/public/x"}) as resp:
            assert resp.status == 404, path
            assert await resp.json() == {
                "error": "not_found",
                "error_description": "no route for this path",
            }


async def test_bad_requests_on_the_lean_listener(gw: ReloadableGateway) -> None:
    assert gw.gateway.decisions is not None
    port = gw.gateway.decisions.port

    async def raw(data: bytes) -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(data)
            await writer.drain()
            return await asyncio.wait_for(read_response(reader), 10)
        finally:
            writer.close()

    status, _, body = await raw(
        b"POST /auth/verify HTTP/1.1\r\nHost: gw\r\nX-Original-URI: /public/x\r\n"
        b"Content-Length: 4\r\n\r\nbody"
    )
    assert (status, body) == (
        403,
        b'{"error": "invalid_request", "error_description": "a decision request has no body"}',
    )
    status, headers, _ = await raw(
        b"GET /auth/verify HTTP/1.1\r\nHost: gw\r\n" + b"X-Big: " + b"x" * 20_000 + b"\r\n\r\n"
    )
    assert status == 431
    assert headers["Connection"] == "close"
    status, _, _ = await raw(b"GET /auth/verify HTTP/1.1\r\nHost: gw\r\nBad Header\r\n\r\n")
    assert status == 400
    status, _, _ = await raw(b"GET * HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert status == 400
    status, _, _ = await raw(
        b"GET /auth/verify HTTP/1.1\r\nHost: gw\r\nX-Original-URI: /a\r\nX-Original-URI: /b\r\n\r\n"
    )
    assert status == 403
    # the listener still serves
    async with gw.http.get(lean(gw) + "/auth/verify/public/x") as resp:
        assert resp.status == 200


async def test_a_reload_reaches_the_decision_listener(
    gw: ReloadableGateway, config: Config, upstream: Upstream
) -> None:
    headers = {"X-Original-URI": "/api/x"}
    async with gw.http.get(lean(gw) + "/auth/verify", headers=headers) as resp:
        assert resp.status == 401
    routes = [
        {"prefix": "/public/", "upstream": upstream.url, "policy": "public"},
        {"prefix": "/api/", "upstream": upstream.url, "policy": "public"},
    ]
    gw.write({**config, "routes": routes})
    outcome = await gw.reload()
    assert outcome.reloaded, outcome.refusal
    async with gw.http.get(lean(gw) + "/auth/verify", headers=headers) as resp:
        assert resp.status == 200
    # where decisions are served is read at start only: a reload that moves it is refused
    gw.write(
        {**config, "forward_auth": {"enabled": True, "listen": {"host": "127.0.0.1", "port": 1}}}
    )
    outcome = await gw.reload()
    assert not outcome.reloaded
    assert outcome.refusal is not None and "forward_auth.listen.port" in outcome.refusal


async def test_listen_needs_decisions(tmp_path: Path, config: Config) -> None:
    from gateway.config import load_settings
    from gateway.errors import ConfigError

    path = tmp_path / "bad.yaml"
    import json

    path.write_text(json.dumps({**config, "forward_auth": {"listen": LISTEN}}))
    with pytest.raises(ConfigError, match=r"forward_auth\.listen needs forward_auth\.enabled"):
        load_settings(path)


@pytest.mark.slow
async def test_gateway_serve_with_workers_serves_decisions(
    config: Config, tmp_path: Path, redis_server: RedisServer
) -> None:
    """As `gateway serve --workers 2` runs it (uvloop, SO_REUSEPORT, one listener a worker)."""
    port = free_port()
    listen = {"host": "127.0.0.1", "port": port}
    served = await start_served(
        served_config(
            {
                **config,
                "redis": {"url": redis_server.url},
                "forward_auth": {"enabled": True, "listen": listen},
            }
        ),
        tmp_path,
        "--workers",
        "2",
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(10):
                async with http.get(f"http://127.0.0.1:{port}/auth/verify/public/x") as resp:
                    assert resp.status == 200
                async with http.get(
                    f"http://127.0.0.1:{port}/auth/verify", headers={"X-Original-URI": "/api/x"}
                ) as resp:
                    assert resp.status == 401
                    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="gateway"'
    finally:
        stop_served(served)
    assert "Traceback" not in served.log.read_text()


async def test_slow_heads_and_idle_connections_are_cut(config: Config, tmp_path: Path) -> None:
    proxy = {"header_timeout": 0.3, "keepalive_timeout": 0.5}
    async with reloadable_gateway({**config, "proxy": proxy}, tmp_path / "gw.yaml") as running:
        assert running.gateway.decisions is not None
        port = running.gateway.decisions.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /auth/verify HTTP/1.1\r\nHost: gw\r\n")  # the rest never comes
            status, _, body = await asyncio.wait_for(read_response(reader), 10)
            assert status == 408
            assert b"request_timeout" in body
        finally:
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /auth/verify/public/x HTTP/1.1\r\nHost: gw\r\n\r\n")
            status, _, _ = await asyncio.wait_for(read_response(reader), 10)
            assert status == 200
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed once idle
        finally:
            writer.close()


async def test_a_reload_turns_decisions_on_and_off(
    key_files: dict[str, Path], upstream: Upstream, users_file: Path, tmp_path: Path
) -> None:
    config = reload_config(key_files, upstream.url, users_file)
    headers = {"X-Original-URI": "/public/x"}
    async with reloadable_gateway(config, tmp_path / "gw.yaml") as running:
        assert await running.status("/auth/verify", headers=headers) == 404
        running.write({**config, "forward_auth": {"enabled": True}})
        assert (await running.reload()).reloaded
        assert await running.status("/auth/verify", headers=headers) == 200
        running.write(config)
        assert (await running.reload()).reloaded
        assert await running.status("/auth/verify", headers=headers) == 404
    assert upstream.received == []
