"""The console's own layer, inside the admin listener's edge: who is signed in (the session
cookie), CSRF checks on every form post, security headers; and the HTML page the edge
renders for a browser's error (`error_page`).

Every console state change is a POST that must carry the session's CSRF token in its form
and come from the console's own origin; the cookie alone (SameSite=Strict, but same-site is
not same-origin: another port on the same host is same-site) is never enough.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Collection
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.admin.console.pages import BASE_PATH, SECURITY_HEADERS, Pages, see_other, wants_html
from gateway.appkeys import CONSOLE_FORM, CONSOLE_SESSION
from gateway.edge.bodies import BodyReader
from gateway.edge.params import FORM, form_params
from gateway.errors import AccessDenied, GatewayError, InvalidClient
from gateway.store import ConsoleSession, ConsoleSessionStore

log = logging.getLogger("gateway.admin")

COOKIE_NAME: Final = "gw_console"
CSRF_FIELD: Final = "csrf"
PUBLIC_ROUTES: Final = frozenset({"console-signin", "console-static"})
SAFE_FETCH_SITES: Final = frozenset({"same-origin", "none"})


def console_middleware(
    sessions: ConsoleSessionStore, key_ids: Collection[str], pages: Pages, bodies: BodyReader
) -> Middleware:
    """Session cookie → CONSOLE_SESSION; the form of a POST (read under the gateway's body
    limits and deadlines, once it is allowed) → CONSOLE_FORM, its CSRF token checked;
    security headers. Errors leave to the edge, which renders them with `error_page` for a
    browser."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST":
            check_origin(request)
        session = None
        if request.match_info.route.name not in PUBLIC_ROUTES:
            session = await _signed_in(request, sessions, key_ids)
            if session is None:
                if request.method == "GET" and wants_html(request):
                    return see_other(f"{BASE_PATH}signin")
                raise InvalidClient("sign in to the console first")
            request[CONSOLE_SESSION] = session
        if request.method == "POST":
            request[CONSOLE_FORM] = await read_form(bodies, request)
            if session is not None:
                check_csrf(request[CONSOLE_FORM], session)
        response = await handler(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return middleware


async def _signed_in(
    request: web.Request, sessions: ConsoleSessionStore, key_ids: Collection[str]
) -> ConsoleSession | None:
    cookie = request.cookies.get(COOKIE_NAME)
    if not cookie:
        return None
    session = await sessions.get(cookie)
    if session is None or session.key_id not in key_ids:  # a key removed from the config
        return None
    return session


def check_origin(request: web.Request) -> None:
    """Refuse a form post sent from another origin (403), before anything is read or done."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in SAFE_FETCH_SITES:
        raise AccessDenied("cross-site request refused")
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise AccessDenied("cross-origin request refused")


async def read_form(bodies: BodyReader, request: web.Request) -> dict[str, str]:
    """An urlencoded form body (the console's forms); anything else reads as no fields."""
    if request.content_type != FORM:
        return {}
    return form_params(await bodies.own_body(request))


def check_csrf(form: dict[str, str], session: ConsoleSession) -> None:
    """The form's CSRF token must be the session's (403 otherwise)."""
    presented = form.get(CSRF_FIELD)
    if not isinstance(presented, str) or not hmac.compare_digest(
        presented.encode(), session.csrf.encode()
    ):
        raise AccessDenied("the form's CSRF token is missing or wrong; reload the page")


def error_page(request: web.Request, pages: Pages, exc: GatewayError) -> web.Response:
    """The console's page for an error (the edge's renderer for the console's browsers)."""
    session = request.get(CONSOLE_SESSION)
    response = pages.render(
        "error.html",
        {
            "title": "Error",
            "path": request.path,
            "session": session,
            "csrf": session.csrf if session else "",
            "status": exc.status,
            "code": exc.code,
            "description": exc.description,
            "retry_after": exc.headers().get("Retry-After"),
        },
        status=exc.status,
        headers=exc.headers(),
    )
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
