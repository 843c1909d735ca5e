"""Admin API keys: only `sha256:` hashes are configured; requests carry the key as a bearer."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.appkeys import ADMIN_ID
from gateway.authserver.guessing import GuessThrottle
from gateway.config import AdminKeySettings
from gateway.errors import InvalidClient


def admin_key_hash(key: str) -> str:
    """The configuration form of an admin key: `sha256:<hex>` (keys are 256-bit random)."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_admin_key() -> str:
    return "gwadm_" + secrets.token_urlsafe(32)


class AdminKeys:
    """The configured admin keys: which id, if any, a presented key belongs to."""

    def __init__(self, keys: list[AdminKeySettings], *, throttle: GuessThrottle | None = None):
        self._digests = [(k.id, bytes.fromhex(k.hash.removeprefix("sha256:"))) for k in keys]
        self.ids = frozenset(k.id for k in keys)
        self._throttle = throttle

    async def verify(self, key: str, address: str | None) -> str | None:
        """The id of the key presented from `address`, or None (a failure, counted).

        SECURITY: guessing is throttled (admin.key_failures_per_ip, shared by the admin API
        and the console sign-in): past the limit, RateLimited before the key is compared.
        """
        throttle = self._throttle
        if throttle is not None:
            await throttle.check(address)
        matched = self.match(key)
        if matched is None and throttle is not None:
            await throttle.failed(address)
        return matched

    def match(self, key: str) -> str | None:
        """The id of the key, or None; compares every digest in constant time."""
        digest = hashlib.sha256(key.strip().encode()).digest()
        matched = None
        for key_id, expected in self._digests:  # SECURITY: constant time, and no early exit
            if hmac.compare_digest(digest, expected):
                matched = key_id
        return matched


def admin_auth_middleware(
    admin_keys: AdminKeys, *, exempt: Callable[[web.Request], bool] | None = None
) -> Middleware:
    """`Authorization: Bearer <admin key>`: 401 when missing or wrong; records the key id.
    Requests `exempt` accepts (the console, which has its own sign-in) pass untouched."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if exempt is not None and exempt(request):
            return await handler(request)
        values = request.headers.getall("Authorization", [])
        scheme, _, key = values[0].partition(" ") if len(values) == 1 else ("", "", "")
        if scheme.lower() != "bearer" or not key.strip():
            raise InvalidClient("an admin API key is required")
        matched = await admin_keys.verify(key, request.remote)
        if matched is None:
            raise InvalidClient("invalid admin API key")
        request[ADMIN_ID] = matched
        return await handler(request)

    return middleware
