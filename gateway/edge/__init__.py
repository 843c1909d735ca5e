"""The edge: where a client's connection and request meet the gateway, before any plane.

exchange.py     each request's record and request id
middleware.py   request line and Host checks, header size limit, errors → JSON
connections.py  the connection layer: deadlines for slow and silent clients, a connection
                cap, parse errors answered as JSON
bodies.py       reading request bodies with deadlines; the gateway's own small bodies
"""

from gateway.edge.exchange import Exchange, new_request_id, request_id_from
from gateway.edge.middleware import (
    NO_STORE,
    PRIVATE_NO_STORE,
    add_cookies,
    edge_middleware,
    error_response,
    www_authenticate,
)

__all__ = [
    "NO_STORE",
    "PRIVATE_NO_STORE",
    "Exchange",
    "add_cookies",
    "edge_middleware",
    "error_response",
    "new_request_id",
    "request_id_from",
    "www_authenticate",
]
