"""Console sign-in and sign-out: an admin API key typed into a form becomes a short-lived
session cookie (HttpOnly, SameSite=Strict, Path=/admin/console/); both are audited."""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.admin.actions import Actor, AdminActions
from gateway.admin.apikeys import AdminKeys
from gateway.admin.console.guard import COOKIE_NAME
from gateway.admin.console.pages import BASE_PATH, Pages, see_other, wants_html
from gateway.appkeys import CONSOLE_FORM, CONSOLE_SESSION
from gateway.config import ConsoleSettings
from gateway.errors import InvalidClient, InvalidRequest
from gateway.store import ConsoleSessionStore

log = logging.getLogger("gateway.admin")

MAX_KEY_LENGTH = 512
NOTICES = {"signed-out": "You are signed out.", "expired": "Your console session has ended."}


class ConsoleSignIn:
    """GET/POST /admin/console/signin and POST /admin/console/signout."""

    def __init__(
        self,
        *,
        keys: AdminKeys,
        sessions: ConsoleSessionStore,
        actions: AdminActions,
        settings: ConsoleSettings,
        pages: Pages,
    ):
        self._keys = keys
        self._sessions = sessions
        self._actions = actions
        self._settings = settings
        self._pages = pages

    async def form(self, request: web.Request) -> web.Response:
        """The sign-in form."""
        notice = NOTICES.get(request.query.get("notice", ""))
        return self._page(notice=notice)

    async def sign_in(self, request: web.Request) -> web.Response:
        """Form `key`: 303 to the console with the session cookie; 401 for a wrong key."""
        key = request[CONSOLE_FORM].get("key")
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
            return self._refuse(request, InvalidRequest("type an admin API key"), 400)
        key_id = await self._keys.verify(key, request.remote)  # RateLimited: 429
        if key_id is None:
            log.warning("console sign-in refused: invalid admin key from %s", request.remote)
            return self._refuse(request, InvalidClient("invalid admin API key"), 401)
        cookie, session = await self._sessions.create(key_id, ttl=self._settings.session_ttl)
        await self._actions.console_signed(
            Actor(f"admin-key:{key_id}", request.remote), "console_sign_in", session.handle
        )
        log.info("console sign-in by key %s (session %s)", key_id, session.handle)
        response = see_other(BASE_PATH)
        response.set_cookie(
            COOKIE_NAME,
            cookie,
            max_age=int(self._settings.session_ttl),
            path=BASE_PATH,
            httponly=True,
            samesite="Strict",
            secure=self._settings.cookie_secure or request.secure,
        )
        return response

    async def sign_out(self, request: web.Request) -> web.Response:
        """Ends the session in Redis (every worker and instance), clears the cookie."""
        session = request[CONSOLE_SESSION]
        cookie = request.cookies.get(COOKIE_NAME, "")
        await self._sessions.delete(cookie)
        await self._actions.console_signed(
            Actor(f"admin-key:{session.key_id}", request.remote),
            "console_sign_out",
            session.handle,
        )
        log.info("console sign-out by key %s (session %s)", session.key_id, session.handle)
        response = see_other(f"{BASE_PATH}signin?notice=signed-out")
        response.del_cookie(COOKIE_NAME, path=BASE_PATH, httponly=True, samesite="Strict")
        return response

    def _refuse(
        self, request: web.Request, error: InvalidRequest | InvalidClient, status: int
    ) -> web.Response:
        if not wants_html(request):
            raise error
        return self._page(error=error.description, status=status)

    def _page(
        self, *, notice: str | None = None, error: str | None = None, status: int = 200
    ) -> web.Response:
        return self._pages.render(
            "signin.html",
            {"title": "Sign in", "session": None, "csrf": "", "notice": notice, "error": error},
            status=status,
        )
