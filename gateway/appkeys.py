"""Every typed key of application and request state: how handlers reach what `gateway.app`
wired. The types are imported for the checker only, so no plane imports another through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

if TYPE_CHECKING:
    from gateway.admin.actions import AdminActions
    from gateway.authserver.federation.exchange import FederatedLogin
    from gateway.authserver.introspection import Introspection
    from gateway.authserver.login import LoginService
    from gateway.authserver.revoker import Revoker
    from gateway.authserver.token_service import TokenService
    from gateway.config import Settings
    from gateway.edge import Exchange
    from gateway.edge.bodies import BodyReader
    from gateway.proxy.bearer import Authenticator
    from gateway.proxy.endpoint import ProxyEndpoint
    from gateway.runtime.metrics import Metrics
    from gateway.store import AuditLog, ConsoleSession, RevocationStore
    from gateway.tokens.keys import KeyRing
    from gateway.tokens.revocation_sync import RevocationSync
    from gateway.tokens.revocation_view import RevocationView
    from gateway.tokens.verifier import Principal, TokenVerifier
    from gateway.typedefs import Clock

# Application state: the same service objects on the public and the admin app.
SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
KEYRING: web.AppKey[KeyRing] = web.AppKey("keyring")
VERIFIER: web.AppKey[TokenVerifier] = web.AppKey("verifier")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
REVOCATIONS: web.AppKey[RevocationView] = web.AppKey("revocations")
REVOCATION_SYNC: web.AppKey[RevocationSync] = web.AppKey("revocation_sync")
REVOCATION_STORE: web.AppKey[RevocationStore] = web.AppKey("revocation_store")
AUDIT: web.AppKey[AuditLog] = web.AppKey("audit")
REVOKER: web.AppKey[Revoker] = web.AppKey("revoker")
TOKEN_SERVICE: web.AppKey[TokenService] = web.AppKey("token_service")
LOGIN: web.AppKey[LoginService] = web.AppKey("login")
FEDERATION: web.AppKey[FederatedLogin] = web.AppKey("federation")
INTROSPECTION: web.AppKey[Introspection] = web.AppKey("introspection")
PROXY: web.AppKey[ProxyEndpoint] = web.AppKey("proxy")
BODIES: web.AppKey[BodyReader] = web.AppKey("bodies")
ADMIN_ACTIONS: web.AppKey[AdminActions] = web.AppKey("admin_actions")
# The public app's edge layer, also called directly by the fast lane.
EDGE: web.AppKey[Middleware] = web.AppKey("edge")

# Request state.
EXCHANGE: web.RequestKey[Exchange] = web.RequestKey("exchange")
ADMIN_ID: web.RequestKey[str] = web.RequestKey("admin_id")
# The caller as a browser's cookies identify it, on /auth endpoints that accept them.
COOKIE_PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("cookie_principal")
CONSOLE_SESSION: web.RequestKey[ConsoleSession] = web.RequestKey("console_session")
CONSOLE_FORM: web.RequestKey[dict[str, str]] = web.RequestKey("console_form")
