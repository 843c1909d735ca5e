"""One target of the upstream pool drill (bench/drills/chaos.py), in a process of its own so
the drill can kill it (SIGKILL) or stall it (SIGSTOP):

    python -m bench.drills.pool_target --port P --posts FILE

GET /health answers 200; every other request answers JSON; each POST's `X-Drill-Id` is
appended to FILE with one unbuffered write before the answer, so it survives a SIGKILL and a
POST the gateway sent twice shows as an id written twice (by one target or two).
"""

from __future__ import annotations

import argparse
import os

from aiohttp import web


def app(posts: int) -> web.Application:
    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        if request.method == "POST":
            os.write(posts, request.headers.get("X-Drill-Id", "-").encode() + b"\n")
        return web.json_response({"ok": True, "pid": os.getpid()})

    application = web.Application()
    application.router.add_get("/health", health)
    application.router.add_route("*", "/{tail:.*}", answer)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--posts", required=True, help="file the POSTs' ids are appended to")
    args = parser.parse_args()
    posts = os.open(args.posts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    web.run_app(
        app(posts),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        reuse_address=True,
    )


if __name__ == "__main__":
    main()
