"""The admin console as a sub-application of the admin listener, mounted at /admin/console:
its routes, its own sign-in and CSRF layer (gateway.admin.console.guard) instead of the API's
bearer keys, and its error pages for browsers. Every action goes through AdminActions,
audited under the admin key's id as on the API."""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from aiohttp import web

from gateway.admin.console.guard import console_middleware, error_page
from gateway.admin.console.pages import STATIC_DIR, Pages, see_other, wants_html
from gateway.admin.console.signin import ConsoleSignIn
from gateway.admin.console.views import ConsoleViews
from gateway.edge.bodies import OWN_BODY_LIMIT, BodyReader, defer_expectation
from gateway.edge.own_routes import own_routes
from gateway.errors import GatewayError
from gateway.store import ConsoleSessionStore

CONSOLE_PATH: Final = "/admin/console"


class Console:
    """The console's pages and forms; `mount` puts them on the admin app."""

    def __init__(
        self,
        *,
        signin: ConsoleSignIn,
        views: ConsoleViews,
        sessions: ConsoleSessionStore,
        key_ids: Collection[str],
        pages: Pages,
        bodies: BodyReader,
    ):
        self._signin = signin
        self._views = views
        self._sessions = sessions
        self._key_ids = key_ids
        self._pages = pages
        self._bodies = bodies
        self._app = self._make_app()

    def mount(self, admin: web.Application) -> None:
        """/admin/console (redirected to /admin/console/) and everything under it."""
        admin.router.add_get(CONSOLE_PATH, _to_console, name="console-root")
        admin.add_subapp(CONSOLE_PATH, self._app)

    def serves(self, request: web.Request) -> bool:
        """Requests the console answers itself, as the router resolved them (the admin API's
        bearer check skips them)."""
        match = request.match_info
        return self._app in match.apps or match.route.name == "console-root"

    def render_error(self, request: web.Request, error: GatewayError) -> web.Response | None:
        """The edge's renderer: an error page for a browser on the console, else None (the
        JSON error body)."""
        if self.serves(request) and wants_html(request):
            return error_page(request, self._pages, error)
        return None

    def _make_app(self) -> web.Application:
        guard = console_middleware(self._sessions, self._key_ids, self._pages, self._bodies)
        console = web.Application(middlewares=[guard], client_max_size=OWN_BODY_LIMIT)
        router = console.router
        signin, views = self._signin, self._views
        sign_in = router.add_resource("/signin", name="console-signin")
        sign_in.add_route("GET", signin.form)
        sign_in.add_route("POST", signin.sign_in, expect_handler=defer_expectation)
        console.add_routes(
            own_routes(
                ("POST", "/signout", signin.sign_out),
                ("GET", "/", views.home),
                ("GET", "/users", views.user),
                ("GET", "/users/revoke", views.confirm_revoke_user),
                ("POST", "/users/revoke", views.revoke_user),
                ("GET", "/sessions/revoke", views.confirm_revoke_session),
                ("POST", "/sessions/revoke", views.revoke_session),
                ("GET", "/clients", views.clients),
                ("GET", "/clients/revoke", views.confirm_revoke_client),
                ("POST", "/clients/revoke", views.revoke_client),
                ("GET", "/token", views.token_form),
                ("POST", "/token/inspect", views.inspect_token),
                ("POST", "/token/revoke", views.revoke_token),
                ("GET", "/revocations", views.revocations),
                ("GET", "/audit", views.audit),
            )
        )
        router.add_static("/static/", STATIC_DIR, name="console-static")
        return console


async def _to_console(_request: web.Request) -> web.Response:
    return see_other(CONSOLE_PATH + "/")
