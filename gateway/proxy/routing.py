"""Route table: longest-prefix match on the normalized path, which is also what is forwarded."""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote_to_bytes

from yarl import URL

from gateway.config import RouteSettings
from gateway.errors import InvalidRequest
from gateway.typedefs import PathFolding, PathParameters, RoutePolicy

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

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        path_parameters: PathParameters = "match_without",
        path_folding: PathFolding = "fold",
    ):
        self._routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)
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
    ) -> RouteTable:
        """Configured routes plus `blocked` prefixes that answer 404 (never proxied)."""
        reserved = [
            Route(p, URL(), "public", frozenset(), frozenset(), False, False, False, p, True)
            for p in blocked
        ]
        configured = [route_from_settings(r) for r in routes]
        return cls(
            [*reserved, *configured], path_parameters=path_parameters, path_folding=path_folding
        )

    def normalize(self, raw_path: str) -> str:
        """`normalize_path`, refusing characters that fold to a separator when configured."""
        return normalize_path(raw_path, refuse_folding=self._refuse_folding)

    def resolve(self, path: str) -> tuple[Route | None, str]:
        """(route, path to forward) for a normalized path.

        SECURITY: servlet containers (Tomcat, Jetty, Spring) drop `;params` from every
        segment, so `/reports;x=1/q` is `/reports/q` to them: the route is chosen on the
        path as they will read it, or such paths are refused (proxy.path_parameters). The
        path is forwarded as received, except when the route strips its prefix.
        """
        if ";" not in path:
            return self.match(path), path
        if self._refuse_parameters:
            raise InvalidRequest("path parameters (;) are not accepted")
        bare = _PARAMS.sub("", path)
        route = self.match(bare)
        return route, bare if route is not None and route.strip_prefix else path

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
