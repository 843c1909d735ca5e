"""The typed keys of application and request state. Handlers receive their services through
their constructors; the app holds the process's Services for its lifetimes, its runner and
tests, and the two pieces the fast lane calls directly. The types are imported for the
checker only, so no plane imports another through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import HttpVersion, web
from aiohttp.typedefs import Middleware

if TYPE_CHECKING:
    from gateway.edge import Exchange
    from gateway.edge.observer import InFlight
    from gateway.proxy.decision_endpoint import DecisionEndpoint
    from gateway.proxy.endpoint import ProxyEndpoint
    from gateway.services import Services
    from gateway.store import ConsoleSession
    from gateway.tokens.verifier import Principal

# Application state, on the public and the admin app.
SERVICES: web.AppKey[Services] = web.AppKey("services")
# The public app's edge layer and proxy endpoint, which the fast lane calls directly.
EDGE: web.AppKey[Middleware] = web.AppKey("edge")
PROXY: web.AppKey[ProxyEndpoint] = web.AppKey("proxy")
# The decision listener's endpoint (forward_auth.listen), which its lean server calls directly.
DECISIONS: web.AppKey[DecisionEndpoint] = web.AppKey("decisions")
# The requests the app is serving now, counted by its edge middleware (a reloaded
# configuration's apps are retired once they are done).
IN_FLIGHT: web.AppKey[InFlight] = web.AppKey("in_flight")

# Request state.
EXCHANGE: web.RequestKey[Exchange] = web.RequestKey("exchange")
# The version a request line claimed when it was neither HTTP/1.0 nor 1.1 (the request itself
# carries 1.1 then, so that its refusal is answered in HTTP/1.1).
CLAIMED_VERSION: web.RequestKey[HttpVersion] = web.RequestKey("claimed_version")
ADMIN_ID: web.RequestKey[str] = web.RequestKey("admin_id")
# The caller as a browser's cookies identify it, on /auth endpoints that accept them.
COOKIE_PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("cookie_principal")
CONSOLE_SESSION: web.RequestKey[ConsoleSession] = web.RequestKey("console_session")
CONSOLE_FORM: web.RequestKey[dict[str, str]] = web.RequestKey("console_form")
