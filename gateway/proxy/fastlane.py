"""The fast lane: plain proxied requests go from the server straight to the proxy endpoint.

aiohttp hands every request to the application, which resolves it in the router, builds the
match info and runs the middleware chain before the handler sees it: a measurable share of
what a proxied request costs (docs/benchmark.md has the figure). Nearly every
request is a proxied one on a plain path, and for those the answer of the router is known in advance
(the catch-all route). The fast lane gives them straight to the edge layer and the proxy
endpoint, the same code the router would end up calling; everything else — the gateway's
own endpoints, paths that need decoding or normalizing to be matched, `Expect` and
`Upgrade` requests — takes the application's normal path, unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from gateway.appkeys import EDGE, PROXY
from gateway.proxy.endpoint import ProxyEndpoint
from gateway.proxy.routing import is_plain_path

_LEAVE_TO_THE_APP = (hdrs.EXPECT, hdrs.UPGRADE)


class FastLane:
    """The server's request handler: plain proxied requests go straight to the proxy
    endpoint (through the edge layer), every other request to the application."""

    def __init__(self, app: web.Application, application: Any):
        self._application = application  # the app's own handler: router, middleware chain
        self._edge: Middleware = app[EDGE]
        self._proxy: ProxyEndpoint = app[PROXY]
        self._own_paths, self._own_prefixes = own_endpoints(app.router)

    def __call__(self, request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        if self.takes(request.rel_url.raw_path, request.headers):
            # the app's request factory made it: a web.Request (without match info)
            return self._edge(cast(web.Request, request), self._proxy.handle)
        return self._application(request)  # type: ignore[no-any-return]

    def takes(self, raw_path: str, headers: Any) -> bool:
        """Whether the router would send this request to the catch-all proxy route and the
        app's expect handling has nothing to do: a plain path (decoding and normalizing
        change nothing, so the router matches these exact characters) that names none of
        the gateway's own endpoints, and no Expect or Upgrade header."""
        if raw_path in self._own_paths or raw_path.startswith(self._own_prefixes):
            return False
        if not is_plain_path(raw_path):
            return False
        return not any(name in headers for name in _LEAVE_TO_THE_APP)


def own_endpoints(router: web.UrlDispatcher) -> tuple[frozenset[str], tuple[str, ...]]:
    """Paths of every route but the catch-all: fixed paths, and the fixed part before the
    first variable of the others (`/auth/sessions/{sid}` → `/auth/sessions/`)."""
    paths: set[str] = set()
    prefixes: list[str] = []
    for route in router.routes():
        if isinstance(getattr(route.handler, "__self__", None), ProxyEndpoint):
            continue  # the catch-all
        if route.resource is None:
            continue
        canonical = route.resource.canonical
        if "{" in canonical:
            prefixes.append(canonical.split("{", 1)[0])
        else:
            paths.add(canonical)
    return frozenset(paths), tuple(prefixes)
