"""Settings of the request path: routes and how requests are forwarded."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator

from gateway.config.fields import HEADER_NAME_RE, RESTART, PositiveSeconds, Section
from gateway.config.limit_settings import RouteLimitSettings
from gateway.config.policy_settings import METHOD_RE, RuleTree, check_host_pattern, one_or_many
from gateway.config.upstream_settings import UPSTREAM_NAME_RE, is_base_url
from gateway.typedefs import PathFolding, PathParameters, RoutePolicy


class RouteSettings(Section):
    prefix: str
    """path prefix, matched on whole segments of the normalized path; a `*` segment matches
    any one segment (`/api/*/reports/`)"""
    upstream: str
    """http(s):// base URL requests are forwarded to, or the name of one of `upstreams`"""
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
    name: str | None = Field(default=None, min_length=1, max_length=128)
    """the route's name in logs, metrics and `policy explain` (default: the prefix); routes
    that share a prefix need one each"""
    methods: list[str] = Field(default_factory=list)
    """the route matches only these methods (default: every method; GET brings HEAD)"""
    hosts: list[str] = Field(default_factory=list)
    """the route matches only these hosts: exact names or `*.example.com` (one label); the
    Host header is compared without its port, in lower case, without a trailing dot"""
    allow: RuleTree | None = Field(default=None, min_length=1)
    """rules a request must satisfy (a list: all of them); see docs/policy.md"""
    deny: RuleTree | None = Field(default=None, min_length=1)
    """rules that refuse a request (a list: any of them), whatever `allow` says"""
    expr: str | None = Field(default=None, min_length=1, max_length=4096)
    """a CEL expression over `claims` and `request` (method, path, host) that must be true"""
    limits: list[RouteLimitSettings] = Field(default_factory=list)
    """token-bucket rate limits; every one applies (429 past any)"""

    @property
    def route_name(self) -> str:
        """The route's name: `name`, else the prefix as configured."""
        return self.name if self.name is not None else self.prefix

    accept: list[str] = Field(default_factory=lambda: ["gateway"], min_length=1)
    """issuers whose access tokens this route takes: `gateway` (its own) and names of
    `federation.providers` that have an `access_tokens` policy"""

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
        if any("*" in s and s != "*" for s in value.split("/")):
            raise ValueError("a * stands for one whole segment (/api/*/reports/)")
        return value

    @field_validator("allow", "deny", mode="before")
    @classmethod
    def _rule_list(cls, value: object) -> object:
        return one_or_many(value)

    @field_validator("methods")
    @classmethod
    def _method_tokens(cls, value: list[str]) -> list[str]:
        methods = [m.upper() for m in value]
        for method in methods:
            if not METHOD_RE.match(method):
                raise ValueError(f"{method!r} is not an HTTP method")
        if "GET" in methods and "HEAD" not in methods:
            methods.append("HEAD")  # a HEAD is the GET without its body
        return list(dict.fromkeys(methods))

    @field_validator("hosts")
    @classmethod
    def _host_patterns(cls, value: list[str]) -> list[str]:
        return [check_host_pattern(h) for h in value]

    @field_validator("accept")
    @classmethod
    def _issuer_names(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("an issuer is listed twice")
        return value

    @field_validator("upstream")
    @classmethod
    def _upstream_is_http(cls, value: str) -> str:
        if UPSTREAM_NAME_RE.match(value):
            return value  # a named upstream (`upstreams.<name>`), checked with the whole
        if not is_base_url(value):
            raise ValueError(
                "must be an http:// or https:// base URL without query, or the name of an "
                "upstream of `upstreams`"
            )
        return value.rstrip("/")

    @property
    def upstream_name(self) -> str | None:
        """The named upstream this route forwards to, or None for a URL."""
        return None if "://" in self.upstream else self.upstream


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
        "X-Original-Method",
        "X-Forwarded-Method",
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
        # CGI meta-variables (RFC 3875 §4.1) as header names: some WSGI servers take them
        # from the request (gunicorn reads SCRIPT_NAME), CGI-style apps may confuse them
        "SCRIPT_NAME",
        "PATH_INFO",
        "PATH_TRANSLATED",
        "QUERY_STRING",
        "REQUEST_METHOD",
        "REQUEST_URI",
        "SCRIPT_FILENAME",
        "DOCUMENT_ROOT",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "SERVER_SOFTWARE",
        "GATEWAY_INTERFACE",
        "REMOTE_ADDR",
        "REMOTE_HOST",
        "REMOTE_IDENT",
        "REMOTE_USER",
        "AUTH_TYPE",
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
    path_folding: PathFolding = "fold"
    """characters whose Unicode compatibility form (NFKC) holds `.`, `/`, `\\` or `;`
    (fullwidth `．` `／` `＼`, `‥`, …), which backends that normalize paths read as those:
    route and forward the path with them folded, or refuse such paths (400)"""
    strip_request_headers: list[str] = Field(default_factory=_default_stripped_headers)
    """client headers removed before forwarding: ones that make some frameworks serve another
    URL or method than the request line's, and CGI meta-variables such as SCRIPT_NAME and
    PATH_INFO (any case, `_` for `-`)"""
    underscore_headers: Literal["drop", "forward"] = "drop"
    """client headers whose names contain `_`: drop them (as nginx does by default; CGI and
    WSGI backends read `X_User_Id` and `X-User-Id` as one variable) or forward them"""

    @field_validator("strip_request_headers")
    @classmethod
    def _stripped_names(cls, value: list[str]) -> list[str]:
        for header in value:
            if not HEADER_NAME_RE.match(header.replace("_", "-")):
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
