"""Settings of the request path: routes and how requests are forwarded."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import Field, field_validator

from gateway.config.fields import HEADER_NAME_RE, RESTART, PositiveSeconds, Section
from gateway.typedefs import PathParameters, RoutePolicy


class RouteSettings(Section):
    prefix: str
    """path prefix, matched on whole segments of the normalized path"""
    upstream: str
    """http(s):// base URL requests are forwarded to"""
    policy: RoutePolicy = "required"
    """public, optional (identity when a valid token is sent) or required"""
    roles: list[str] = Field(default_factory=list, description="all of these roles are required")
    scopes: list[str] = Field(default_factory=list, description="all of these scopes are required")
    strip_prefix: bool = False
    """remove the prefix before forwarding"""
    preserve_host: bool = False
    """forward the client's Host instead of the upstream's"""
    websocket: bool = True
    """allow WebSocket upgrades (after the same checks)"""
    browser: bool | None = None
    """accept the browser cookies on this route (default: true when browser mode is on)"""
    csrf_header: bool = False
    """cookie-authenticated requests the CSRF check covers must also send `X-CSRF: 1`"""
    csrf_all_methods: bool = False
    """apply the CSRF check to GET, HEAD and OPTIONS too (apps that change state on GET)"""

    @field_validator("prefix")
    @classmethod
    def _prefix_is_absolute(cls, value: str) -> str:
        if (
            not value.startswith("/")
            or "//" in value
            or "/../" in value + "/"
            or "%" in value
            or ";" in value
        ):
            raise ValueError("must be an absolute, normalized path such as /api/")
        return value

    @field_validator("upstream")
    @classmethod
    def _upstream_is_http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
            raise ValueError("must be an http:// or https:// base URL without query")
        return value.rstrip("/")


def _default_stripped_headers() -> list[str]:
    return [
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-Override-URL",
        "X-Original-URI",
        "X-Forwarded-URI",
        "X-Forwarded-Path",
        "X-Forwarded-Prefix",
        "X-Envoy-Original-Path",
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ]


class ProxySettings(Section):
    connect_timeout: Annotated[PositiveSeconds, RESTART] = 5
    """seconds to connect to an upstream (else 504; refused or unreachable: 502)"""
    read_timeout: Annotated[PositiveSeconds, RESTART] = 60
    """seconds an upstream may stay silent while the gateway waits on it (else 504)"""
    header_timeout: PositiveSeconds = 15
    """seconds a client has to send a whole request head, from the connection's opening or
    the first byte of a head on a kept-alive one (else 408 and the connection closes)"""
    keepalive_timeout: Annotated[PositiveSeconds, RESTART] = 75
    """seconds an idle client connection is kept open (idle upstream connections: at most 30)"""
    body_timeout: PositiveSeconds = 60
    """seconds a request body may stall between two reads (else 408)"""
    min_body_rate: int = Field(default=256, ge=0)
    """bytes/s a request body must average while the gateway waits for it, once body_timeout
    has passed (else 408; 0 = off): a body trickled a byte at a time is cut"""
    send_timeout: PositiveSeconds = 60
    """seconds a client may leave a response unread before its connection is closed"""
    max_connections: int = Field(default=4096, ge=1)
    """open client connections per worker; past it new ones get 503 and are closed"""
    max_concurrency: Annotated[int, RESTART] = Field(default=1024, ge=1)
    """requests in flight per worker before 503"""
    max_body_size: int = Field(default=1 << 30, ge=0, description="bytes; 0 = unlimited")
    max_header_size: int = Field(default=16 * 1024, ge=1024, description="bytes, all headers")
    drain_timeout: Annotated[PositiveSeconds, RESTART] = Field(
        default=30, description="on SIGTERM: seconds in-flight requests may take to finish"
    )
    forward_authorization: bool = False
    """forward the client's Authorization header upstream"""
    trusted_proxies: list[str] = Field(default_factory=list)
    """networks whose X-Forwarded-* headers are kept (CIDR)"""
    identity_headers: dict[str, str] = Field(
        default_factory=lambda: {"sub": "X-User-Id", "roles": "X-User-Roles", "sid": "X-Session-Id"}
    )
    """claim → header set on forwarded requests (client copies removed)"""
    identity_header_prefixes: list[str] = Field(default_factory=lambda: ["X-User-", "X-Auth-"])
    """client headers with these prefixes are always removed"""
    realm: str = "gateway"
    """realm of the WWW-Authenticate challenge"""
    path_parameters: PathParameters = "match_without"
    """`;params` in path segments (servlet containers serve /a;x=1/b as /a/b): match routes on
    the path without them (the path is forwarded as received), or refuse such paths (400)"""
    strip_request_headers: list[str] = Field(default_factory=_default_stripped_headers)
    """client headers removed before forwarding: ones that make some frameworks serve another
    URL or method than the request line's (any case, `_` for `-`)"""

    @field_validator("strip_request_headers")
    @classmethod
    def _stripped_names(cls, value: list[str]) -> list[str]:
        for header in value:
            if not HEADER_NAME_RE.match(header):
                raise ValueError(f"{header!r} is not a valid header name")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @field_validator("identity_headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for header in value.values():
            if not HEADER_NAME_RE.match(header):
                raise ValueError(f"{header!r} is not a valid header name")
        return value
