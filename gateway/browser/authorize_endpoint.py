"""GET /auth/authorize: the authorization endpoint of the code flow (RFC 6749 §4.1, PKCE,
OAuth 2.1), where an app sends its user's browser to sign in.

The client and its redirect URI are checked first; until both are good, every problem is a
page for the user (never a redirect: the gateway is no open redirector). Then the request
itself; its problems go back to the app (`error=…&state=…&iss=…`, RFC 9207). The user signs
in on the gateway's own login page (the browser session's cookies; a transparent refresh
counts), a third-party client (`consent: true`) asks the user on a consent page, and the
browser goes back to the app with a single-use code bound to the client, the redirect URI,
the PKCE challenge, the nonce and the scope.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from string import Template
from typing import Final
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import web

from gateway.authserver.authorization_requests import (
    AuthorizationError,
    AuthorizationRequest,
    CodeIssuer,
    Target,
    identify,
    query_params,
    validate,
)
from gateway.authserver.client_registry import ClientRegistry
from gateway.authserver.revoker import Revoker
from gateway.browser.gate import CookieGate, Resolved
from gateway.browser.html_pages import PAGE_HEADERS, page
from gateway.browser.navigation import LOGIN_PATH
from gateway.edge import NO_STORE, add_cookies
from gateway.edge.bodies import BodyReader
from gateway.edge.own_routes import own_routes, post_only
from gateway.edge.params import FORM, form_params
from gateway.errors import ClientFault, InvalidRequest, InvalidToken
from gateway.store import Session

log = logging.getLogger("gateway.clients")

AUTHORIZE_PATH: Final = "/auth/authorize"
CONSENT_PATH: Final = "/auth/authorize/consent"
MAX_CONSENT_FORM: Final = 4096
_NETLOC: Final = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


@cache
def _template(name: str) -> Template:
    return Template((resources.files(__package__) / "templates" / name).read_text("utf-8"))


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


class AuthorizeEndpoint:
    """GET /auth/authorize and the consent page's POST /auth/authorize/consent."""

    def __init__(
        self,
        *,
        gate: CookieGate,
        registry: ClientRegistry,
        codes: CodeIssuer,
        revoker: Revoker,
        issuer: str,
        bodies: BodyReader,
    ):
        self._gate = gate
        self._registry = registry
        self._codes = codes
        self._revoker = revoker
        self._issuer = issuer
        self._bodies = bodies

    def routes(self) -> list[web.RouteDef]:
        return own_routes(("GET", AUTHORIZE_PATH, self.authorize)) + post_only(
            (CONSENT_PATH, self.consent)
        )

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        """GET /auth/authorize?response_type=code&client_id=…&redirect_uri=…&
        code_challenge=…&code_challenge_method=S256&scope=…&state=…&nonce=…"""
        raw = request.rel_url.raw_query_string
        try:
            params = query_params(raw)
            target = identify(params, self._registry)
        except ClientFault as exc:
            return _error_page(exc)
        try:
            wanted = validate(params, target)
        except AuthorizationError as exc:
            return self._send_back(
                target, {"error": exc.error, "error_description": exc.description}
            )
        if request.method == "HEAD":  # a safe method: nothing is issued for it
            return web.Response(status=204, headers=NO_STORE)
        prompt = params.get("prompt", "").split()
        signed_in = await self._signed_in(request)
        if signed_in is None:
            if "none" in prompt:
                return self._send_back(
                    target, _error("login_required", "the user is not signed in")
                )
            return self._to_login(raw)
        resolved, session = signed_in
        if wanted.client.consent:
            if "none" in prompt:
                return self._send_back(target, _error("consent_required", "the user must consent"))
            response = _consent_page(wanted, session, raw)
        else:
            # Reached by the login form's redirect (Sec-Fetch-Site: same-origin): browsers
            # apply the login page's CSP `form-action 'self'` to every redirect that follows
            # its form, so the way back to the app is a page that continues there instead.
            same_origin = request.headers.get("Sec-Fetch-Site") == "same-origin"
            response = await self._grant(wanted, session, status=200 if same_origin else 302)
        if resolved.cookies:
            add_cookies(response.headers, resolved.cookies)
        return response

    async def consent(self, request: web.Request) -> web.StreamResponse:
        """POST /auth/authorize/consent (form `request`, `decision` allow | deny)."""
        self._gate.cross_site.check(request)  # only the consent page itself may decide
        try:
            if request.content_type != FORM:
                raise InvalidRequest("the consent form is a form")
            form = form_params(await self._bodies.own_body(request))
            raw = form.get("request", "")
            decision = form.get("decision")
            if len(raw) > MAX_CONSENT_FORM or decision not in ("allow", "deny"):
                raise InvalidRequest("the consent form is malformed")
            params = query_params(raw)
            target = identify(params, self._registry)
        except ClientFault as exc:
            return _error_page(exc)
        try:
            wanted = validate(params, target)
        except AuthorizationError as exc:
            return self._send_back(target, _error(exc.error, exc.description), status=303)
        signed_in = await self._signed_in(request)
        if signed_in is None:
            return self._to_login(raw, status=303)
        resolved, session = signed_in
        if decision == "deny":
            log.info("consent denied client=%s sub=%s", wanted.client.id, session.sub)
            response = self._send_back(
                target, _error("access_denied", "the user denied the request"), status=303
            )
        else:
            response = await self._grant(wanted, session, status=303)
        if resolved.cookies:
            add_cookies(response.headers, resolved.cookies)
        return response

    async def _grant(
        self, wanted: AuthorizationRequest, session: Session, *, status: int
    ) -> web.Response:
        code = await self._codes.issue(wanted, session)
        log.info("authorization code issued client=%s sub=%s", wanted.client.id, session.sub)
        return self._send_back(wanted.target, {"code": code}, status=status)

    def _send_back(
        self, target: Target, answer: dict[str, str], *, status: int = 302
    ) -> web.Response:
        """The browser back to the client's (validated) redirect URI with the answer, its
        state and our issuer (RFC 9207: the client can tell which server answered): a 302 or
        303, or (status 200) a page that continues there."""
        params = dict(answer)
        if target.state is not None:
            params["state"] = target.state
        params["iss"] = self._issuer
        uri = target.redirect_uri
        separator = "&" if "?" in uri else "?"
        location = f"{uri}{separator}{urlencode(params)}"
        if status == 200:
            body = _template("authorize_continue.html").substitute(
                location=_e(location), client=_e(target.client.name)
            )
            response = page(body)
            response.headers["Referrer-Policy"] = "no-referrer"
            return response
        headers = {"Location": location, **NO_STORE, "Referrer-Policy": "no-referrer"}
        return web.Response(status=status, headers=headers)

    def _to_login(self, raw_query: str, *, status: int = 302) -> web.Response:
        """The login page, coming back to this very request once signed in."""
        back = f"{AUTHORIZE_PATH}?{raw_query}" if raw_query else AUTHORIZE_PATH
        location = f"{LOGIN_PATH}?return_to={quote(back, safe='')}"
        return web.Response(status=status, headers={"Location": location, **NO_STORE})

    async def _signed_in(self, request: web.Request) -> tuple[Resolved, Session] | None:
        """Who the browser's session cookies speak for (refreshed when needed), with their
        live session; None without a usable session."""
        gate = self._gate
        presented = gate.presented(request)
        if not presented.any:
            return None
        try:
            resolved = gate.resolve_at_once(presented) or await gate.resolve(presented)
        except InvalidToken:
            return None
        session = await self._revoker.get_session(resolved.principal.sid)
        if session is None or session.sub != resolved.principal.sub:
            return None
        return resolved, session


def _error(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description}


def _error_page(error: ClientFault) -> web.Response:
    body = _template("authorize_error.html").substitute(
        description=_e(error.description), code=_e(error.code)
    )
    return page(body, status=error.status)


def _consent_page(wanted: AuthorizationRequest, session: Session, raw_query: str) -> web.Response:
    items: Sequence[str] = [f"    <li>{_e(scope)}</li>" for scope in wanted.scopes] or [
        "    <li>your identity (no further access)</li>"
    ]
    body = _template("consent.html").substitute(
        client=_e(wanted.client.name),
        user=_e(session.sub),
        scopes="\n".join(items),
        request=_e(raw_query),
        redirect=_e(wanted.target.redirect_uri),
    )
    response = page(body)
    # The decision's answer redirects to the app: its origin joins the form's allowed
    # targets (browsers check form-action on the redirects a form submission follows too).
    csp = PAGE_HEADERS["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {_origin(wanted.target.redirect_uri)}"
    )
    response.headers["Content-Security-Policy"] = csp
    return response


def _origin(uri: str) -> str:
    """The CSP source of a redirect URI: scheme://host[:port], or `scheme:` for a private-use
    scheme (redirect URIs hold no spaces, quotes or semicolons: see check_redirect_uri)."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        # SECURITY: only a plain host[:port] enters the header (no `;` starting a directive)
        return f"{parts.scheme}://{parts.netloc}" if _NETLOC.match(parts.netloc) else ""
    return f"{parts.scheme}:"
