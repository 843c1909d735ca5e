"""Demo echo upstream: answers every request with JSON describing the request it received."""

from __future__ import annotations

import argparse

from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
    return web.json_response(
        {
            "method": request.method,
            "path": request.rel_url.raw_path,
            "query": request.rel_url.raw_query_string,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_size": size,
        }
    )


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="demo echo upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
