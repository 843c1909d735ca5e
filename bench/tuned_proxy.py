"""The reference: the best simple aiohttp reverse proxy, the honest baseline for the gateway.

What someone who knows aiohttp writes when speed matters, and nothing more: uvloop; one
ClientSession for the process with a DummyCookieJar (no cookie bookkeeping), no response
decompression, a connection pool sized for the benchmark's load (keep-alive connections are
reused, never opened per request); bodies streamed both ways with iter_any() (whatever
arrived, no fixed chunking). No auth, no header policy, no logging or metrics.

    python -m bench.tuned_proxy --port 8100 --upstream http://127.0.0.1:8200 [--pool 128]
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
import uvloop
from aiohttp import web

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade", "host"}
)
SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def forward(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    async with session.request(
        request.method,
        request.app[UPSTREAM] + request.rel_url.raw_path_qs,
        headers=headers,
        data=request.content.iter_any() if request.body_exists else None,
        allow_redirects=False,
    ) as upstream:
        response = web.StreamResponse(
            status=upstream.status,
            headers=[(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP],
        )
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def serve(port: int, upstream: str, pool: int) -> None:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    connector = aiohttp.TCPConnector(limit=pool, limit_per_host=pool, keepalive_timeout=30)
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )
    app[SESSION] = session
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()  # until the benchmark terminates the process
    finally:
        await session.close()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--pool", type=int, default=128, help="upstream connections (default 128)")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.upstream, args.pool))


if __name__ == "__main__":
    main()
