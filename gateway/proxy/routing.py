"""Route table: longest-prefix match on the normalized path, which is also what is forwarded."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from yarl import URL

from gateway.config import RouteSettings
from gateway.errors import InvalidRequest
from gateway.typedefs import RoutePolicy

_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT: Final = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SLASHES: Final = re.compile(r"/{2,}")
# Already normal: sub-delims, unreserved, ":" and "@" only (no "%", "\\", controls), and no
# empty or dot segments. Most requests take this path and skip the rewriting below.
_PLAIN_PATH: Final = re.compile(r"(?:/(?!\.{1,2}(?:[/;]|$))[A-Za-z0-9\-._~!$&'()*+,;=:@]+)*/?")
MAX_PATH_LENGTH: Final = 8192


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str  # normalized, no trailing slash ("" for the root route)
    upstream: URL
    policy: RoutePolicy
    roles: frozenset[str]
    scopes: frozenset[str]
    strip_prefix: bool
    preserve_host: bool
    websocket: bool
    name: str  # the prefix as configured; used in logs and metrics
    blocked: bool = False  # a reserved prefix: 404, never forwarded

    def matches(self, path: str) -> bool:
        return not self.prefix or path == self.prefix or path.startswith(self.prefix + "/")

    def upstream_path(self, path: str) -> str:
        """The path sent upstream: the upstream's base path plus the (optionally stripped) path."""
        tail = path[len(self.prefix) :] if self.strip_prefix else path
        if not tail.startswith("/"):
            tail = "/" + tail
        base = self.upstream.raw_path.rstrip("/")
        return base + tail


class RouteTable:
    """Routes sorted longest prefix first."""

    def __init__(self, routes: Sequence[Route]):
        self._routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)

    @classmethod
    def from_settings(
        cls, routes: Sequence[RouteSettings], *, blocked: Sequence[str] = ()
    ) -> RouteTable:
        """Configured routes plus `blocked` prefixes that answer 404 (never proxied)."""
        reserved = [
            Route(p, URL(), "public", frozenset(), frozenset(), False, False, False, p, True)
            for p in blocked
        ]
        return cls([*reserved, *(route_from_settings(r) for r in routes)])

    def match(self, path: str) -> Route | None:
        for route in self._routes:
            if route.matches(path):
                return route
        return None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._routes)


def route_from_settings(settings: RouteSettings) -> Route:
    return Route(
        prefix=settings.prefix.rstrip("/"),
        upstream=URL(settings.upstream),
        policy=settings.policy,
        roles=frozenset(settings.roles),
        scopes=frozenset(settings.scopes),
        strip_prefix=settings.strip_prefix,
        preserve_host=settings.preserve_host,
        websocket=settings.websocket,
        name=settings.prefix,
    )


def is_plain_path(raw_path: str) -> bool:
    """A path that normalization leaves as it is: no percent-escapes, backslashes, empty,
    `.` or `..` segments, only characters allowed unescaped in a path."""
    return len(raw_path) <= MAX_PATH_LENGTH and _PLAIN_PATH.fullmatch(raw_path) is not None


def normalize_path(raw_path: str) -> str:
    """RFC 3986 §6 normalization, stricter where backends disagree; raises InvalidRequest.

    SECURITY: authorization is decided on this path and this path is what the upstream gets,
    so `/public/../admin`, `/public/%2e%2e/admin`, `/public%2f..%2fadmin`, `//admin`,
    backslashes and `..;` segments cannot reach a protected route under a public policy.
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
    path = _SLASHES.sub("/", path.replace("\\", "/"))
    return _remove_dot_segments(path)


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
