"""Every wait on a client has the gateway's own deadline: silent and slowloris connections,
trickled and stalled bodies, responses nobody reads, idle keep-alive, the connection cap;
and valid clients on other connections are served while such an attack runs.

The deadlines here are a fraction of a second so the tests are short; every wait in the
tests themselves is bounded and generous (they check that something ends, never how fast).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import pytest

from gateway.config import Settings
from tests.support.gateway_client import GatewayClient, GatewayFactory
from tests.support.raw_http import parse_response, raw_request, read_response
from tests.support.recording_upstream import Upstream
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow  # waits on real (short) deadlines

SHORT = {
    "header_timeout": 0.5,
    "keepalive_timeout": 0.8,
    "body_timeout": 0.5,
    "min_body_rate": 200,
    "send_timeout": 0.5,
}
ENOUGH = 15.0  # seconds a test waits for a deadline of well under one second to act


@pytest.fixture
async def edge(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings]
) -> GatewayClient:
    return await gateway_factory(settings_factory(proxy=SHORT))


async def connect(client: GatewayClient) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", client.server.port)


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    chunks = []
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), ENOUGH):
            chunks.append(chunk)
    except ConnectionError:  # reset, or our own late write hit the closed connection
        pass
    return b"".join(chunks)


async def test_a_silent_connection_gets_408_and_is_closed(
    edge: GatewayClient, upstream: Upstream
) -> None:
    reader, writer = await connect(edge)
    answer = await until_closed(reader)
    writer.close()
    status, _, body = parse_response(answer)
    assert status == 408
    assert json.loads(body)["error"] == "request_timeout"
    assert upstream.received == []


async def test_slowloris_headers_are_cut(edge: GatewayClient, upstream: Upstream) -> None:
    reader, writer = await connect(edge)
    writer.write(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n")
    closed = asyncio.ensure_future(until_closed(reader))
    for n in range(int(ENOUGH / 0.1)):  # a header line every 0.1 s, never the end of the head
        if closed.done():
            break
        writer.write(f"X-Slow-{n}: a\r\n".encode())
        await asyncio.sleep(0.1)
    answer = await closed
    writer.close()
    assert parse_response(answer)[0] == 408
    assert upstream.received == []


async def test_an_idle_kept_alive_connection_is_closed(edge: GatewayClient) -> None:
    reader, writer = await connect(edge)
    writer.write(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n\r\n")
    status, _, _ = await asyncio.wait_for(read_response(reader), ENOUGH)
    assert status == 200
    assert await until_closed(reader) == b""  # then nothing, and the server hangs up
    writer.close()


async def post_slowly(
    client: GatewayClient, path: str, declared: int, pieces: list[bytes], pause: float
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await connect(client)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    writer.write(head.encode())
    answer = asyncio.ensure_future(read_response(reader))
    for piece in pieces:
        if answer.done():
            break
        writer.write(piece)
        await asyncio.sleep(pause)
    try:
        return await asyncio.wait_for(answer, ENOUGH)
    finally:
        writer.close()


async def test_a_trickled_body_is_408(edge: GatewayClient) -> None:
    # a byte every 50 ms: it never stalls for body_timeout, but averages far below the rate
    status, _, body = await post_slowly(edge, "/public/upload", 10_000, [b"x"] * 400, 0.05)
    assert status == 408
    assert json.loads(body) == {
        "error": "request_timeout",
        "error_description": "the request body arrives too slowly",
    }


async def test_a_stalled_body_is_408(edge: GatewayClient) -> None:
    status, _, body = await post_slowly(edge, "/public/upload", 10_000, [b"x" * 100], 0)
    assert status == 408
    assert json.loads(body)["error_description"] == "the request body stalled"


async def test_a_stalled_login_body_is_408_not_5xx(
    gateway_factory: GatewayFactory, auth_settings: Settings
) -> None:
    settings = auth_settings.model_copy(
        update={"proxy": auth_settings.proxy.model_copy(update=SHORT)}
    )
    client = await gateway_factory(settings)
    status, _, body = await post_slowly(client, "/auth/login", 500, [b'{"username"'], 0)
    assert status == 408
    assert json.loads(body)["error"] == "request_timeout"


async def test_a_response_nobody_reads_is_cut(edge: GatewayClient) -> None:
    size = 256 * 1024 * 1024
    reader, writer = await connect(edge)
    writer.write(f"GET /public/download?size={size} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
    await asyncio.sleep(3)  # not reading: the gateway's send deadline passes meanwhile
    received = len(await until_closed(reader))
    writer.close()
    assert received < size  # the connection ended before the whole body was sent


async def test_past_max_connections_new_ones_get_503(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings]
) -> None:
    client = await gateway_factory(settings_factory(proxy={"max_connections": 3}))
    held = [await connect(client) for _ in range(3)]
    for reader, writer in held:  # make sure the three are accepted and counted
        writer.write(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert (await asyncio.wait_for(read_response(reader), ENOUGH))[0] == 200
    reader, writer = await connect(client)
    status, headers, body = parse_response(await until_closed(reader))
    writer.close()
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert json.loads(body)["error"] == "temporarily_unavailable"
    held[0][1].close()

    async def served() -> bool:
        try:
            status, _, _ = await raw_request(client, b"GET /public/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        except (ConnectionError, asyncio.IncompleteReadError):
            return False
        return status == 200

    await eventually(served, ENOUGH, what="a new client is served once one is gone")
    for _, w in held[1:]:
        w.close()


async def test_valid_clients_are_served_while_slow_sockets_hold_on(
    edge: GatewayClient, upstream: Upstream
) -> None:
    slow = [await connect(edge) for _ in range(40)]
    for _, writer in slow:
        writer.write(b"GET /public/slow HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\n")

    async def drip() -> None:
        for n in range(10):
            for _, writer in slow:
                with contextlib.suppress(ConnectionError):  # cut already
                    writer.write(f"X-{n}: 1\r\n".encode())
            await asyncio.sleep(0.1)

    dripping = asyncio.ensure_future(drip())
    statuses = []
    for _ in range(20):
        resp = await edge.get("/public/x")
        statuses.append(resp.status)
    await dripping
    assert statuses == [200] * 20
    for reader, writer in slow:  # and every slow one was cut at its deadline
        answer = await until_closed(reader)  # ends: the gateway closed it
        assert answer == b"" or parse_response(answer)[0] == 408
        writer.close()
    assert all(r.path == "/public/x" for r in upstream.received)
