"""HTTP/1.1 written and read byte for byte, for what a client library would normalize away."""

from __future__ import annotations

import asyncio

from tests.support.gateway_client import GatewayClient


async def raw_request(
    client: GatewayClient, request: bytes, *, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """Send bytes exactly as given (no client-side normalization) and read one final
    response (framed by Content-Length, or by the end of the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(read_response(reader), timeout)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """The next final response on a connection (interim 1xx answers are skipped)."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        status, headers, _ = parse_response(head)
        if status >= 200:
            break
    length = next((int(v) for k, v in headers.items() if k.lower() == "content-length"), None)
    body = await (reader.readexactly(length) if length is not None else reader.read())
    return status, headers, body


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the last response in `data` (after any 100 Continue)."""
    while data.startswith(b"HTTP/1.1 100"):
        data = data.partition(b"\r\n\r\n")[2]
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def get(path: str, *headers: str) -> bytes:
    """A raw GET request line and headers, closing the connection after the answer."""
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n{extra}\r\n".encode("latin-1")
