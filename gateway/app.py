"""The two applications of a gateway process, assembled from its Services: the public app
(edge middleware, the planes' routes with the proxy's catch-all last, the services'
lifetimes) and the admin app (the API behind admin keys, the console). Which service does
what is gateway.services; each plane declares its own routes.
"""

from __future__ import annotations

from typing import Final, Unpack

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.admin.apikeys import admin_auth_middleware
from gateway.admin.reload_endpoint import ConfigReload, ReloadEndpoint
from gateway.appkeys import DECISIONS, EDGE, IN_FLIGHT, PROXY, SERVICES
from gateway.config import Settings
from gateway.edge import edge_middleware
from gateway.edge.bodies import OWN_BODY_LIMIT
from gateway.edge.observer import InFlight, RequestObserver
from gateway.runtime.lifetimes import (
    cleanup_context,
    configuration_lifetimes,
    resource_lifetimes,
)
from gateway.services import Injected, Services, build_services

ADMIN_REALM: Final = "admin"  # the admin listener's challenge realm


def create_apps(
    settings: Settings, **injected: Unpack[Injected]
) -> tuple[web.Application, web.Application]:
    """(public app, admin app) sharing one set of services; the public app runs their
    lifetimes, so start it first and stop it last."""
    services = build_services(settings, **injected)
    return public_app(services), admin_app(services)


def create_app(settings: Settings, **injected: Unpack[Injected]) -> web.Application:
    """The public application alone, on services of its own."""
    return public_app(build_services(settings, **injected))


def public_app(s: Services, *, run_resources: bool = True) -> web.Application:
    """The public listener's application: proxied routes, /auth/*, /.well-known/*, health.
    It runs its configuration's lifetimes and, unless `run_resources` is false (a gateway
    that reloads runs them once itself), those of the process's Resources."""
    settings = s.settings
    observer = RequestObserver(s.resources.metrics, json_logs=settings.logging.format == "json")
    edge = edge_middleware(
        realm=settings.proxy.realm,
        max_header_size=settings.proxy.max_header_size,
        observer=observer,
        render=None if s.browser is None else s.browser.render_error,  # provider sign-in pages
    )
    edge = s.resources.telemetry.wrap_edge(edge)  # itself unless OpenTelemetry export is on
    app = web.Application(middlewares=[edge], client_max_size=OWN_BODY_LIMIT)
    app[SERVICES] = s
    app[EDGE] = edge
    app[PROXY] = s.proxy.endpoint
    app[IN_FLIGHT] = observer
    lifetimes = resource_lifetimes(s.resources) if run_resources else []
    for lifetime in lifetimes + configuration_lifetimes(s):
        app.cleanup_ctx.append(cleanup_context(lifetime))
    auth = s.auth
    token_routes: list[web.RouteDef] = []
    for endpoints in (auth.token_endpoints, auth.session_endpoints):
        if endpoints is not None:
            token_routes += endpoints.routes()
    if s.browser is not None:
        token_routes = s.browser.with_cookies(token_routes) + s.browser.routes()
    app.add_routes(token_routes)
    if s.authorize is not None:
        app.add_routes(s.authorize.routes())
    app.add_routes(auth.introspection.routes())
    if auth.backchannel_logout is not None:
        app.add_routes(auth.backchannel_logout.routes())
    app.add_routes(auth.well_known.routes())
    app.add_routes(s.health.routes())
    if s.proxy.decisions is not None:
        app.add_routes(s.proxy.decisions.routes())
    app.add_routes(s.proxy.endpoint.routes())  # the catch-all: everything else is proxied
    return app


def decision_app(s: Services) -> web.Application:
    """The decision listener's application (`forward_auth.listen`): the edge middleware and the
    decision endpoint alone, which its lean server (gateway.edge.lean_server) calls directly,
    as the fast lane does; the router is there for aiohttp's own runner (tests)."""
    decisions = s.proxy.decisions
    assert decisions is not None, "forward_auth.listen needs forward_auth.enabled"
    settings = s.settings
    observer = RequestObserver(s.resources.metrics, json_logs=settings.logging.format == "json")
    edge = edge_middleware(
        realm=settings.proxy.realm,
        max_header_size=settings.proxy.max_header_size,
        observer=observer,
    )
    edge = s.resources.telemetry.wrap_edge(edge)
    app = web.Application(middlewares=[edge], client_max_size=OWN_BODY_LIMIT)
    app[SERVICES] = s
    app[EDGE] = edge
    app[DECISIONS] = decisions
    app[IN_FLIGHT] = observer
    app.add_routes(decisions.routes())
    return app


def admin_app(s: Services, *, reload: ConfigReload | None = None) -> web.Application:
    """The admin API and the console, on their own listener, over the public app's services
    (which the public app starts and stops); POST /admin/reload where the process reloads."""
    console = s.admin.console
    in_flight = InFlight()
    middlewares: list[Middleware] = [
        edge_middleware(
            realm=ADMIN_REALM,
            render=None if console is None else console.render_error,
            observer=in_flight,
        ),
        admin_auth_middleware(s.admin.keys, exempt=None if console is None else console.serves),
    ]
    app = web.Application(middlewares=middlewares, client_max_size=OWN_BODY_LIMIT)
    app[SERVICES] = s
    app[IN_FLIGHT] = in_flight
    app.add_routes(s.admin.api.routes())
    if reload is not None:
        app.add_routes(ReloadEndpoint(reload, s.admin.actions).routes())
    if console is not None:
        console.mount(app)
    return app
