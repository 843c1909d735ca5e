"""What the request path reads of a request, as one small type: the admission chain
(gateway.proxy.admission, the browser's cookie gate, route limits, the bearer credential)
decides on a `RequestView`, which an aiohttp `web.Request` is, and so are the forward-auth
decision's description of the original request and the decision listener's parsed request.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import HttpVersion
from multidict import CIMultiDictProxy
from yarl import URL


class RequestView(Protocol):
    """A request as the admission reads it: its method, Host, headers, peer and target."""

    @property
    def method(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def headers(self) -> CIMultiDictProxy[str]: ...

    @property
    def remote(self) -> str | None: ...

    @property
    def rel_url(self) -> URL: ...


class EdgeRequest(RequestView, Protocol):
    """A request as the edge layer (gateway.edge.middleware) reads it: also its version and
    raw header fields; it keeps the request's Exchange as request state (`request[EXCHANGE]`,
    which both a `web.Request` and the decision listener's `LeanRequest` hold)."""

    @property
    def version(self) -> HttpVersion: ...

    @property
    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]: ...


class DescribedRequest:
    """A request described by another one (a forward-auth decision's original request): its
    own method, target and Host, the describing request's peer and headers."""

    __slots__ = ("headers", "host", "method", "rel_url", "remote")

    def __init__(
        self,
        method: str,
        rel_url: URL,
        host: str,
        headers: CIMultiDictProxy[str],
        remote: str | None,
    ):
        self.method = method
        self.rel_url = rel_url
        self.host = host
        self.headers = headers
        self.remote = remote
