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
from gateway.appkeys import EDGE, PROXY, SERVICES
from gateway.config import Settings
from gateway.edge import edge_middleware
from gateway.edge.bodies import OWN_BODY_LIMIT
from gateway.edge.observer import RequestObserver
from gateway.runtime.lifetimes import (
    clients_lifetime,
    federation_lifetime,
    keys_lifetime,
    limits_lifetime,
    sampling_lifetime,
    store_lifetime,
    telemetry_lifetime,
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


def public_app(s: Services) -> web.Application:
    """The public listener's application: proxied routes, /auth/*, /.well-known/*, health."""
    settings = s.settings
    edge = edge_middleware(
        realm=settings.proxy.realm,
        max_header_size=settings.proxy.max_header_size,
        observer=RequestObserver(s.resources.metrics, json_logs=settings.logging.format == "json"),
        render=None if s.browser is None else s.browser.render_error,  # provider sign-in pages
    )
    edge = s.resources.telemetry.wrap_edge(edge)  # itself unless OpenTelemetry export is on
    app = web.Application(middlewares=[edge], client_max_size=OWN_BODY_LIMIT)
    app[SERVICES] = s
    app[EDGE] = edge
    app[PROXY] = s.proxy.endpoint
    r = s.resources
    app.cleanup_ctx.append(clients_lifetime(r.http, r.upstream_pool))
    app.cleanup_ctx.append(store_lifetime(r.store.redis, r.sync, owned=r.store.owned))
    app.cleanup_ctx.append(telemetry_lifetime(r.telemetry))
    app.cleanup_ctx.append(sampling_lifetime(r.metrics, r.history))
    app.cleanup_ctx.append(limits_lifetime(r.limiter))
    if s.auth.federation is not None:
        app.cleanup_ctx.append(federation_lifetime(s.auth.federation))
    # registered clients' keys fetched from their jwks_uri; providers' keys for routes on a
    # gateway without the token exchange: fetches in flight cancelled on the way out
    providers = () if s.auth.federation is not None else s.auth.providers
    app.cleanup_ctx.append(keys_lifetime(s.auth.clients.registry, [p.keys for p in providers]))
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
    app.add_routes(s.proxy.endpoint.routes())  # the catch-all: everything else is proxied
    return app


def admin_app(s: Services) -> web.Application:
    """The admin API and the console, on their own listener, over the public app's services
    (which the public app starts and stops)."""
    console = s.admin.console
    middlewares: list[Middleware] = [
        edge_middleware(
            realm=ADMIN_REALM, render=None if console is None else console.render_error
        ),
        admin_auth_middleware(s.admin.keys, exempt=None if console is None else console.serves),
    ]
    app = web.Application(middlewares=middlewares, client_max_size=OWN_BODY_LIMIT)
    app[SERVICES] = s
    app.add_routes(s.admin.api.routes())
    if console is not None:
        console.mount(app)
    return app
