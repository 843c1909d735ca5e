"""Route tables of the gateway's own endpoints, as each plane declares them: `Expect:
100-continue` is left to the body reader (aiohttp's default answers it before any check
runs), a GET also answers HEAD, and a POST-only path answers 405 to other methods instead of
falling through to the proxy's catch-all route."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.edge.bodies import defer_expectation
from gateway.errors import MethodNotAllowed

Route = tuple[str, str, Handler]  # (method, path, handler)


def own_routes(*routes: Route) -> list[web.RouteDef]:
    """RouteDefs for (method, path, handler) triples; each GET also answers HEAD (aiohttp
    registers a GET RouteDef with `add_get`, which adds it)."""
    return [
        web.route(method, path, handler, expect_handler=defer_expectation)
        for method, path, handler in routes
    ]


def post_only(*routes: tuple[str, Handler]) -> list[web.RouteDef]:
    """POST routes whose paths answer any other method with 405 and `Allow: POST`."""
    table: list[web.RouteDef] = []
    for path, handler in routes:
        table += own_routes(("POST", path, handler), ("*", path, _use_post))
    return table


async def _use_post(_request: web.Request) -> web.Response:
    raise MethodNotAllowed("use POST", headers={"Allow": "POST"})
