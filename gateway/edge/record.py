"""Each request's record (Exchange) and its request id."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from gateway.errors import GatewayError

if TYPE_CHECKING:  # filled in by the planes above, read by the observer
    from gateway.tokens.verifier import Principal

REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_ID_PREFIX: Final = os.urandom(8).hex()  # per process: workers are spawned, never forked
_ID_COUNTER: Final = itertools.count(1)


@dataclass(slots=True)
class Exchange:
    """What one request leaves for the access log and metrics, filled in as it is served.

    One object per request, made by the edge middleware: handlers set fields on it instead
    of storing loose per-request keys, and the observer reads it without any lookups.
    """

    request_id: str
    route: str = "gateway"  # the route name once routed; "gateway" for its own endpoints
    principal: Principal | None = None
    error: GatewayError | None = None
    upstream_status: int | None = None  # set once the request was forwarded
    auth_method: str | None = None  # "cookie" for browser sessions; bearer otherwise
    set_cookies: tuple[str, ...] = ()  # Set-Cookie values for the relayed response
    upstream_seconds: float = 0.0
    trace_id: str | None = None  # the trace id sent upstream, when the gateway chose it
    bytes_in: int = 0
    bytes_out: int = 0
    # a forward-auth decision: the request it decided on, as the ingress described it
    original_method: str | None = None
    original_path: str | None = None


def request_id_from(headers: Mapping[str, str]) -> str:
    """The client's X-Request-Id when well-formed, otherwise a fresh one."""
    value = headers.get("X-Request-Id")
    if value is not None and REQUEST_ID_RE.match(value):
        return value
    return new_request_id()


def new_request_id() -> str:
    """32 hex digits, unique per process and across processes: a random process prefix and a
    counter (no system call per request, unlike uuid4)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"
