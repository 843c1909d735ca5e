"""What one request leaves for the access log and metrics, filled in as it is served.

One object per request, made by the edge middleware: handlers set fields on it instead of
storing loose per-request keys, and the observer reads it without any lookups.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.errors import GatewayError
from gateway.tokens import Principal


@dataclass(slots=True)
class Exchange:
    request_id: str
    route: str = "gateway"  # the route name once routed; "gateway" for its own endpoints
    principal: Principal | None = None
    error: GatewayError | None = None
    upstream_status: int | None = None  # set once the request was forwarded
    upstream_seconds: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0


EXCHANGE = web.RequestKey("exchange", Exchange)
