"""The edge: where a client's connection and request meet the gateway, before any plane.

record.py        each request's record (Exchange) and request id
request_view.py  what the edge and the admission read of a request (RequestView)
middleware.py    request line and Host checks, header size limit, errors → responses
observer.py      each request counted and its access line written (access_lines.py)
connections.py   the connection layer: deadlines for slow and silent clients, a connection
                 cap, parse errors answered as JSON
bodies.py        reading request bodies with deadlines; the gateway's own small bodies
params.py        parameters of the gateway's own endpoints (JSON or form)
lean_server.py   the decision listener's HTTP/1.1 server (httptools), its requests and answers
own_routes.py    route tables of the gateway's own endpoints, as each plane declares them
"""

from gateway.edge.middleware import (
    NO_STORE,
    PRIVATE_NO_STORE,
    add_cookies,
    edge_middleware,
    error_response,
    www_authenticate,
)
from gateway.edge.record import Exchange, new_request_id, request_id_from

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
