"""A minimal fast upstream for when nginx is not installed: /small (JSON) and /64k.

python -m bench.static_upstream --port 8200
"""

from __future__ import annotations

import argparse

from aiohttp import web

SMALL = b'{"ok":true,"items":[1,2,3],"message":"hello from the upstream"}'
LARGE = b"x" * (64 * 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    async def answer_small(_request: web.Request) -> web.Response:
        return web.Response(body=SMALL, content_type="application/json")

    async def answer_large(_request: web.Request) -> web.Response:
        return web.Response(body=LARGE, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/small", answer_small)
    app.router.add_get("/64k", answer_large)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
