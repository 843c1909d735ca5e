"""Navigations and where to send them: the login redirect and a safe `return_to`."""

from __future__ import annotations

from typing import Final
from urllib.parse import quote, unquote

from gateway.edge.request_view import RequestView

LOGIN_PATH: Final = "/auth/browser/login"
MAX_RETURN_TO: Final = 2048
_HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml"})
_DECODING_ROUNDS: Final = 4


def is_navigation(request: RequestView) -> bool:
    """A top-level navigation: `Sec-Fetch-Mode: navigate` of a document, or (browsers
    without Fetch Metadata) a GET whose Accept prefers HTML."""
    if request.method not in ("GET", "HEAD"):
        return False
    headers = request.headers
    mode = headers.get("Sec-Fetch-Mode")
    if mode is not None:
        return mode == "navigate" and headers.get("Sec-Fetch-Dest", "document") == "document"
    return prefers_html(headers.get("Accept", ""))


def prefers_html(accept: str) -> bool:
    """Whether the Accept header's most preferred media range (first among equals) is HTML."""
    best, best_q = "", -1.0
    for item in accept.split(",")[:32]:
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > best_q:
            best, best_q = media.lower(), q
    return best in _HTML_TYPES and best_q > 0


def safe_return_to(value: str | None) -> str:
    """`value` when it is a path on this origin, else `/`.

    SECURITY: an open redirect after login hands the user to a phishing page with the
    gateway's authority. Only a single leading `/` is accepted; `//host`, `/\\host`,
    schemes, whitespace and control characters (browsers drop tabs and newlines, turning
    `/\\t/host` into `//host`) are refused, at every level of percent-decoding.
    """
    if not value or len(value) > MAX_RETURN_TO or " " in value:
        return "/"
    decoded = value
    for _ in range(_DECODING_ROUNDS):
        if not _is_local_path(decoded):
            return "/"
        once_more = unquote(decoded)
        if once_more == decoded:
            return value
        decoded = once_more
    return "/"  # still encoded after several rounds: nothing a real page links to


def _is_local_path(value: str) -> bool:
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return False
    return all(0x20 <= ord(c) != 0x7F for c in value)


def login_location(request: RequestView) -> str:
    """The login page, returning to what was asked for."""
    raw = request.rel_url.raw_path_qs
    return f"{LOGIN_PATH}?return_to={quote(safe_return_to(raw), safe='')}"
