"""Login: rate limits, credential check, then a new session from the token service."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import replace

from gateway.authserver.credentials import CredentialChecker
from gateway.authserver.scopes import narrowed
from gateway.authserver.token_service import Device, TokenPair, TokenService
from gateway.config import LoginRateLimits
from gateway.errors import BadCredentials, RateLimited
from gateway.store import RateLimiter

log = logging.getLogger("gateway.login")

SCOPE_IP = "login-ip"
SCOPE_USER_FAILURES = "login-fail-user"


class LoginService:
    """Password grant with per-IP and per-username limits; one answer for every failure."""

    def __init__(
        self,
        checker: CredentialChecker,
        tokens: TokenService,
        limiter: RateLimiter,
        limits: LoginRateLimits,
    ):
        self._checker = checker
        self._tokens = tokens
        self._limiter = limiter
        self._limits = limits

    async def login(
        self,
        username: str,
        password: str,
        device: Device,
        *,
        scope: str | None = None,
        within: Sequence[str] | None = None,
    ) -> TokenPair:
        """A new session for valid credentials. `scope` narrows the user's own scope (within
        the client's `within`, when a client is named): asking for more is InvalidScope."""
        per_ip, per_user = self._limits.per_ip, self._limits.failures_per_username
        allowed, retry = await self._limiter.hit(
            SCOPE_IP, device.ip or "unknown", limit=per_ip.limit, window=per_ip.window
        )
        if not allowed:
            raise RateLimited("too many login attempts from this address", retry_after=retry)
        blocked, retry = await self._limiter.peek(
            SCOPE_USER_FAILURES, username, limit=per_user.limit, window=per_user.window
        )
        if blocked:
            raise RateLimited("too many failed logins for this user", retry_after=retry)
        identity = await self._checker.check(username, password)
        if identity is None:
            await self._limiter.hit(
                SCOPE_USER_FAILURES, username, limit=per_user.limit, window=per_user.window
            )
            log.info("login failed (user hash %s)", _short_hash(username))
            raise BadCredentials()
        if scope is not None:
            held = (identity.scope or "").split()
            permitted = held if within is None else [s for s in held if s in within]
            identity = replace(identity, scope=narrowed(scope, permitted))
        return await self._tokens.open_session(identity, device)


def _short_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]
