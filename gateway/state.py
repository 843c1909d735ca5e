"""Typed application-state keys: how handlers reach the components `create_app` wired."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from gateway.auth import Authenticator
from gateway.config import Settings
from gateway.keys import KeyRing
from gateway.login import LoginService
from gateway.revocation import RevocationSync, RevocationView
from gateway.routing import RouteTable
from gateway.sessions import Revoker, TokenService
from gateway.store import AuditLog, RevocationStore
from gateway.tokens import TokenVerifier

SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
KEYRING = web.AppKey("keyring", KeyRing)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
VERIFIER = web.AppKey("verifier", TokenVerifier)
ROUTES = web.AppKey("routes", RouteTable)
REVOCATIONS = web.AppKey("revocations", RevocationView)
REVOCATION_SYNC = web.AppKey("revocation_sync", RevocationSync)
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
REDIS = web.AppKey("redis", Redis)
REVOCATION_STORE = web.AppKey("revocation_store", RevocationStore)
AUDIT = web.AppKey("audit", AuditLog)
REVOKER = web.AppKey("revoker", Revoker)
TOKEN_SERVICE = web.AppKey("token_service", TokenService)
LOGIN = web.AppKey("login", LoginService)
