"""Route table: host, then longest prefix (whole segments, `*` for any one), then method,
matched on the normalized path, which is also what is forwarded."""

from __future__ import annotations

import re
import sys
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote, unquote_to_bytes

from gateway.config import RouteSettings
from gateway.errors import ConfigError, InvalidRequest
from gateway.policy.access import AccessPolicy
from gateway.policy.host_names import normalize_host
from gateway.proxy.route_limits import RouteLimiter, RouteLimits
from gateway.proxy.upstream_group import UpstreamGroup, url_group
from gateway.typedefs import Clock, PathFolding, PathParameters, RoutePolicy

_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT: Final = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SLASHES: Final = re.compile(r"/{2,}")
# Already normal: sub-delims but ";", unreserved, ":" and "@" only (no "%", "\\", controls,
# no path parameters), and no empty or dot segments. Most requests take this path and skip
# the rewriting below.
_PLAIN_PATH: Final = re.compile(r"(?:/(?!\.{1,2}(?:/|$))[A-Za-z0-9\-._~!$&'()*+,=:@]+)*/?")
_PARAMS: Final = re.compile(r";[^/]*")
MAX_PATH_LENGTH: Final = 8192
_SEPARATORS: Final = "./\\;"


_NOWHERE: Final = url_group("http://reserved.invalid")  # blocked prefixes: never forwarded


def _folding_characters() -> dict[str, str]:
    """Every non-ASCII character whose compatibility form (NFKC) holds ".", "/", "\\" or ";"
    (fullwidth full stop U+FF0E and solidus U+FF0F, two dot leader U+2025, small reverse
    solidus U+FE68, ...) → that form, computed from the running Python's Unicode tables."""
    folded = {}
    for code in range(0x80, sys.maxunicode + 1):
        char = chr(code)
        form = unicodedata.normalize("NFKC", char)
        if form != char and any(c in form for c in _SEPARATORS):
            folded[char] = form
    return folded


# SECURITY: a backend that normalizes paths to NFKC reads `/public/．．/admin` (fullwidth
# full stops, percent-encoded or not) as `/public/../admin`.
FOLDS_TO_SEPARATOR: Final = _folding_characters()
# Each such character as it appears in a path: unescaped, or its UTF-8 escaped (upper case
# hex, as normalization writes escapes).
_FOLDING_FORMS: Final = {
    **FOLDS_TO_SEPARATOR,
    **{quote(c, safe=""): form for c, form in FOLDS_TO_SEPARATOR.items()},
}
_FOLDING: Final = re.compile(
    "|".join(map(re.escape, sorted(_FOLDING_FORMS, key=len, reverse=True)))
)


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str  # normalized, no trailing slash ("" for the root route); `*` for one segment
    upstream: UpstreamGroup  # a named pool, or the route's URL as a pool of one
    policy: RoutePolicy
    roles: frozenset[str]
    scopes: frozenset[str]
    strip_prefix: bool
    preserve_host: bool
    websocket: bool
    name: str  # `name`, else the prefix as configured; used in logs and metrics
    blocked: bool = False  # a reserved prefix: 404, never forwarded
    methods: frozenset[str] = frozenset()  # empty: every method
    hosts: tuple[str, ...] = ()  # exact names and `*.` patterns, lower case
    access: AccessPolicy | None = None  # allow / deny / expr and roles / scopes
    limits: RouteLimits | None = None  # token buckets
    # The issuers whose tokens the route takes (`routes[].accept`), or None for the gateway's
    # own alone (the default, verified on the synchronous path).
    issuers: frozenset[str] | None = None
    _glob: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if "*" in self.prefix:
            segments = (re.escape(s) if s != "*" else "[^/]+" for s in self.prefix.split("/"))
            object.__setattr__(self, "_glob", re.compile("/".join(segments) + "(?=/|$)"))

    def matches(self, path: str) -> bool:
        if self._glob is not None:
            return self._glob.match(path) is not None
        return not self.prefix or path == self.prefix or path.startswith(self.prefix + "/")

    def takes(self, method: str) -> bool:
        """Whether the route matches this method."""
        return not self.methods or method in self.methods

    def upstream_path(self, path: str) -> str:
        """The path sent to the (first) target: its base path plus `tail(path)`."""
        return self.upstream.first.base_path + self.tail(path)

    def tail(self, path: str) -> str:
        """The (optionally stripped) path a target's base path is prefixed to."""
        if not self.strip_prefix:
            tail = path
        elif self._glob is not None:
            matched = self._glob.match(path)
            tail = path[matched.end() :] if matched is not None else path
        else:
            tail = path[len(self.prefix) :]
        if not tail.startswith("/"):
            tail = "/" + tail
        return tail

    def specificity(self) -> tuple[int, int, int]:
        """Sort key, most specific first: more segments, more literal characters, methods."""
        segments = self.prefix.count("/")
        literal = len(self.prefix.replace("*", ""))
        return (-segments, -literal, 0 if self.methods else 1)


class RouteTable:
    """Routes by host (exact names, then `*.` patterns, then routes without hosts), each
    group most specific prefix first; reserved (blocked) prefixes before all of them."""

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        path_parameters: PathParameters = "match_without",
        path_folding: PathFolding = "fold",
    ):
        ordered = sorted(routes, key=lambda r: (not r.blocked, r.specificity()))
        self._routes = ordered
        self._blocked = [r for r in ordered if r.blocked]
        self._hostless = [r for r in ordered if not r.blocked and not r.hosts]
        self._exact: dict[str, list[Route]] = {}
        self._wildcard: dict[str, list[Route]] = {}
        for route in ordered:
            for host in route.hosts:
                if host.startswith("*."):
                    self._wildcard.setdefault(host[2:], []).append(route)
                else:
                    self._exact.setdefault(host, []).append(route)
        self._by_host = bool(self._exact or self._wildcard)
        self._refuse_parameters = path_parameters == "refuse"
        self._refuse_folding = path_folding == "refuse"

    @classmethod
    def from_settings(
        cls,
        routes: Sequence[RouteSettings],
        *,
        blocked: Sequence[str] = (),
        path_parameters: PathParameters = "match_without",
        path_folding: PathFolding = "fold",
        clock: Clock = time.time,
        limiter: RouteLimiter | None = None,
        upstreams: Mapping[str, UpstreamGroup] | None = None,
    ) -> RouteTable:
        """Configured routes plus `blocked` prefixes that answer 404 (never proxied). Their
        policies are compiled here: a bad expression or pattern is a ConfigError."""
        reserved = [
            Route(p, _NOWHERE, "public", frozenset(), frozenset(), False, False, False, p, True)
            for p in blocked
        ]
        configured = [
            route_from_settings(r, clock=clock, limiter=limiter, upstreams=upstreams)
            for r in routes
        ]
        return cls(
            [*reserved, *configured], path_parameters=path_parameters, path_folding=path_folding
        )

    def normalize(self, raw_path: str) -> str:
        """`normalize_path`, refusing characters that fold to a separator when configured."""
        return normalize_path(raw_path, refuse_folding=self._refuse_folding)

    def resolve(self, path: str, method: str, host: str | None) -> tuple[Route | None, str]:
        """(route, path to forward) for a normalized path, the request's method and Host.

        SECURITY: servlet containers (Tomcat, Jetty, Spring) drop `;params` from every
        segment, so `/reports;x=1/q` is `/reports/q` to them: the route is chosen on the
        path as they will read it, or such paths are refused (proxy.path_parameters). The
        path is forwarded as received, except when the route strips its prefix.
        """
        if ";" not in path:
            return self.match(path, method, host), path
        if self._refuse_parameters:
            raise InvalidRequest("path parameters (;) are not accepted")
        bare = _PARAMS.sub("", path)
        route = self.match(bare, method, host)
        return route, bare if route is not None and route.strip_prefix else path

    def match(self, path: str, method: str, host: str | None) -> Route | None:
        for route in self._blocked:
            if route.matches(path):
                return route
        if self._by_host and host:
            name = normalize_host(host)
            found = _first(self._exact.get(name, ()), path, method)
            if found is None and "." in name:
                found = _first(self._wildcard.get(name.split(".", 1)[1], ()), path, method)
            if found is not None:
                return found
        return _first(self._hostless, path, method)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._routes)


def _first(routes: Iterable[Route], path: str, method: str) -> Route | None:
    for route in routes:
        if route.matches(path) and (not route.methods or method in route.methods):
            return route
    return None


def route_from_settings(
    settings: RouteSettings,
    *,
    clock: Clock = time.time,
    limiter: RouteLimiter | None = None,
    upstreams: Mapping[str, UpstreamGroup] | None = None,
) -> Route:
    name = settings.upstream_name
    if name is None:
        upstream = url_group(settings.upstream)
    elif upstreams is not None and name in upstreams:
        upstream = upstreams[name]
    else:
        raise ConfigError(f"routes[{settings.prefix}].upstream: no upstream named {name!r}")
    return Route(
        prefix=settings.prefix.rstrip("/"),
        upstream=upstream,
        policy=settings.policy,
        roles=frozenset(settings.roles),
        scopes=frozenset(settings.scopes),
        strip_prefix=settings.strip_prefix,
        preserve_host=settings.preserve_host,
        websocket=settings.websocket,
        name=settings.route_name,
        methods=frozenset(settings.methods),
        hosts=tuple(settings.hosts),
        access=AccessPolicy.from_settings(settings, clock=clock),
        limits=limiter.for_route(settings) if limiter is not None else None,
        issuers=None if settings.accept == ["gateway"] else frozenset(settings.accept),
    )


def is_plain_path(raw_path: str) -> bool:
    """A path that normalization leaves as it is: no percent-escapes, backslashes, empty,
    `.` or `..` segments, only characters allowed unescaped in a path."""
    return len(raw_path) <= MAX_PATH_LENGTH and _PLAIN_PATH.fullmatch(raw_path) is not None


def normalize_path(raw_path: str, *, refuse_folding: bool = False) -> str:
    """RFC 3986 §6 normalization, stricter where backends disagree; raises InvalidRequest.

    SECURITY: authorization is decided on this path and this path is what the upstream gets,
    so `/public/../admin`, `/public/%2e%2e/admin`, `/public%2f..%2fadmin`, `//admin`,
    backslashes, `..;` segments, overlong UTF-8 and characters whose compatibility form is a
    separator (`/public/%EF%BC%8E%EF%BC%8E/admin`: fullwidth dots; folded to it first, or
    refused with `refuse_folding`) cannot reach a protected route under a public policy.
    """
    if len(raw_path) > MAX_PATH_LENGTH or not raw_path.startswith("/"):
        raise InvalidRequest("invalid request path")
    if _PLAIN_PATH.fullmatch(raw_path):
        return raw_path
    if _BAD_PERCENT.search(raw_path):
        raise InvalidRequest("invalid percent-encoding in path")
    path = _PERCENT.sub(_decode_safe_escape, raw_path) if "%" in raw_path else raw_path
    if "\x00" in path or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise InvalidRequest("invalid character in path")
    if not _check_utf8(path).isascii() and _FOLDING.search(path):
        if refuse_folding:
            raise InvalidRequest("path characters that fold to '.', '/', '\\' or ';' are refused")
        path = _FOLDING.sub(lambda m: _FOLDING_FORMS[m.group()], path)
    path = _SLASHES.sub("/", path.replace("\\", "/"))
    return _remove_dot_segments(path)


def _check_utf8(path: str) -> str:
    """The decoded path. SECURITY: the bytes a path encodes must be UTF-8. Overlong forms such
    as `%c0%ae` (a "." some decoders accept) or `%c0%af` ("/") would let a backend see another
    path."""
    try:
        return unquote_to_bytes(path).decode("utf-8")
    except UnicodeError:
        raise InvalidRequest("invalid UTF-8 in path") from None


def _decode_safe_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    if char in _UNRESERVED:
        return char
    if char in "/\\":
        return "/"  # encoded separators are separators to many backends: treat them as such
    if char == "\x00":
        raise InvalidRequest("invalid character in path")
    return "%" + match.group(1).upper()


def _remove_dot_segments(path: str) -> str:
    output: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        # Servlet containers drop ";params" before resolving dots: treat "..;x" as "..".
        bare = segment.split(";", 1)[0]
        last = index == len(segments) - 1
        if bare == "..":
            if output:
                output.pop()
            if last:
                output.append("")
        elif bare == ".":
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/" + "/".join(output)
