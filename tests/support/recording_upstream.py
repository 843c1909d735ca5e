"""The backend behind the gateway in most tests: a real aiohttp server on loopback that records
every request it received (method, raw path and query, header fields, body size) and answers
JSON; `…/slow` waits, `…/download` streams a body of `size` bytes (optionally cut short)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body_size: int


@dataclass
class Upstream:
    """A real aiohttp server on loopback that records what it received."""

    url: str
    received: list[Recorded] = field(default_factory=list)

    def headers_of(self, index: int = -1) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in self.received[index].headers:
            out.setdefault(name.lower(), []).append(value)
        return out


UPSTREAM = web.AppKey("upstream", Upstream)


async def _upstream_handler(request: web.Request) -> web.StreamResponse:
    upstream = request.app[UPSTREAM]
    size = 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
    upstream.received.append(
        Recorded(
            request.method,
            request.rel_url.raw_path,
            request.rel_url.raw_query_string,
            list(request.headers.items()),
            size,
        )
    )
    path = request.rel_url.raw_path
    leaf = path.rsplit("/", 1)[-1]
    if leaf == "slow":
        await asyncio.sleep(float(request.query.get("s", "5")))
    if leaf == "download":
        total = int(request.query.get("size", "1048576"))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if request.query.get("framing") != "chunked":
            response.content_length = total
        await response.prepare(request)
        block = b"x" * (256 * 1024)
        sent = 0
        cut = int(request.query.get("cut", "0"))
        while sent < total:
            piece = block[: min(len(block), total - sent)]
            await response.write(piece)
            sent += len(piece)
            if cut and sent >= cut:
                assert request.transport is not None
                request.transport.abort()  # the upstream dies mid-body
                return response
        await response.write_eof()
        return response
    headers = {"X-Upstream": "yes", "Connection": "X-Drop-Me", "X-Drop-Me": "1", "Keep-Alive": "5"}
    return web.json_response(
        {"path": path, "query": request.rel_url.raw_query_string, "body_size": size},
        headers=headers,
    )


def recording_app(recorder: Upstream) -> web.Application:
    """The upstream's application: every path and method answered by the recorder."""
    app = web.Application()
    app[UPSTREAM] = recorder
    app.router.add_route("*", "/{tail:.*}", _upstream_handler)
    return app


class RecordingUpstreams:
    """Recording upstreams started on demand: on a free loopback port, or on a given one (a
    target brought back where it was); `stop` one to kill it."""

    def __init__(self) -> None:
        self._servers: dict[str, TestServer] = {}

    async def start(self, port: int | None = None) -> Upstream:
        recorder = Upstream(url="")
        # no access log of its own: log assertions are about the gateway's lines only
        server = TestServer(recording_app(recorder), host="127.0.0.1", port=port)
        await server.start_server(access_log=None)
        recorder.url = f"http://127.0.0.1:{server.port}"
        self._servers[recorder.url] = server
        return recorder

    async def stop(self, recorder: Upstream) -> None:
        await self._servers.pop(recorder.url).close()

    async def close(self) -> None:
        for server in self._servers.values():
            await server.close()
        self._servers.clear()
