"""CSRF defence for requests a browser's cookies authenticate (bearer requests are exempt).

Unsafe methods pass when the browser says the request comes from the gateway's own origin
(`Sec-Fetch-Site: same-origin`) or from the user (`none`: typed, bookmarked); browsers
without Fetch Metadata are judged by `Origin`, which must be an allowed origin; a request
with neither header is not from a browser page (curl) and passes. A route can ask for more:
a custom header (`X-CSRF: 1`, which no cross-site form can send and no cross-origin script
can send without a CORS preflight) and the check on safe methods too (apps that change
state on GET). WebSocket handshakes need an allowed `Origin`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, NoReturn

from gateway.edge.request_view import RequestView
from gateway.errors import CrossSiteRequest
from gateway.observability.metrics import Metrics

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
TRUSTED_SITES: Final = frozenset({"same-origin", "none"})


@dataclass(frozen=True, slots=True)
class CsrfRule:
    """What one route asks of cookie-authenticated requests."""

    header: bool = False  # X-CSRF: 1 required
    all_methods: bool = False  # GET, HEAD, OPTIONS checked too


STANDARD: Final = CsrfRule()


class CrossSiteCheck:
    """Refuses (403 access_denied) cookie requests that a foreign page could have sent."""

    def __init__(self, allowed_origins: Iterable[str], metrics: Metrics):
        self._allowed = frozenset(allowed_origins)
        self._rejections = metrics.csrf_rejections

    def check(self, request: RequestView, rule: CsrfRule = STANDARD) -> None:
        """Raise CrossSiteRequest unless the request may act with the browser's cookies."""
        headers = request.headers
        if not rule.all_methods and request.method in SAFE_METHODS:
            return
        site = headers.get("Sec-Fetch-Site")
        if site is not None:
            if site not in TRUSTED_SITES:
                reason = site if site in ("cross-site", "same-site") else "fetch_site"
                self._refuse(reason, f"request from another site (Sec-Fetch-Site: {reason})")
        else:
            origin = headers.get("Origin")
            if origin is not None and origin.lower() not in self._allowed:
                if origin == "null":
                    self._refuse("origin_null", "request from an opaque origin (Origin: null)")
                self._refuse("foreign_origin", "request from an origin that is not allowed")
        if rule.header and headers.get("X-CSRF") != "1":
            self._refuse("missing_header", "this route requires the header X-CSRF: 1")

    def check_websocket(self, request: RequestView) -> None:
        """A cookie-authenticated WebSocket handshake must name an allowed Origin."""
        origin = request.headers.get("Origin")
        if origin is None or origin.lower() not in self._allowed:
            self._refuse("websocket_origin", "WebSocket from an origin that is not allowed")

    def _refuse(self, reason: str, description: str) -> NoReturn:
        self._rejections.labels(reason).inc()
        raise CrossSiteRequest(description, reason=reason)
