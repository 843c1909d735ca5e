"""Admin console sign-ins: Redis keeps only the SHA-256 of the cookie value, with the admin
key id and the CSRF token, under a TTL equal to the sign-in's lifetime."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

from gateway.store.boundary import translated
from gateway.store.keyspace import KeySpace

COOKIE_PREFIX: Final = "gwcs_"
MAX_COOKIE_LENGTH: Final = 128


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """One signed-in console: which admin key, its CSRF token, and until when."""

    key_id: str
    csrf: str
    created_at: float
    expires_at: float

    @property
    def handle(self) -> str:
        """A short, non-secret name for logs and the audit trail (never the cookie)."""
        return hashlib.sha256(self.csrf.encode()).hexdigest()[:12]


class ConsoleSessionStore:
    def __init__(self, redis: Redis, *, clock: Callable[[], float], prefix: str = "gw"):
        self._redis = redis
        self._clock = clock
        self._keys = KeySpace(prefix)

    @translated
    async def create(self, key_id: str, *, ttl: float) -> tuple[str, ConsoleSession]:
        """A new sign-in: (cookie value, session). The cookie value is 256 random bits."""
        cookie = COOKIE_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        session = ConsoleSession(
            key_id=key_id,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + ttl,
        )
        fields = {
            "key_id": key_id,
            "csrf": session.csrf,
            "created_at": repr(now),
            "expires_at": repr(session.expires_at),
        }
        key = self._keys.console_session(_digest(cookie))
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        pipe.expire(key, max(1, int(ttl + 0.999)))
        await pipe.execute()
        return cookie, session

    @translated
    async def get(self, cookie: str) -> ConsoleSession | None:
        """The live session of a cookie value; None when unknown, malformed or expired."""
        if not cookie.startswith(COOKIE_PREFIX) or len(cookie) > MAX_COOKIE_LENGTH:
            return None
        raw: Any = await self._redis.hgetall(self._keys.console_session(_digest(cookie)))
        if not raw:
            return None
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        try:
            session = ConsoleSession(
                key_id=fields["key_id"],
                csrf=fields["csrf"],
                created_at=float(fields["created_at"]),
                expires_at=float(fields["expires_at"]),
            )
        except (KeyError, ValueError):
            return None
        return session if session.expires_at > self._clock() else None

    @translated
    async def delete(self, cookie: str) -> None:
        if cookie.startswith(COOKIE_PREFIX) and len(cookie) <= MAX_COOKIE_LENGTH:
            await self._redis.delete(self._keys.console_session(_digest(cookie)))


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()
