"""Refreshing browser sessions: a new access token from the refresh cookie, and rotation.

`mint` is what the proxy (and the session and devices endpoints) call when the access cookie
is missing, expired or unusable: one store call checks that the refresh cookie is live for
its session and a new access token is signed. It never rotates, so nothing a browser might
not receive (a long poll's late headers, a fetch a navigation cancelled) can end a session,
and any number of parallel requests, on any number of workers, all succeed; on one worker,
requests carrying the same refresh cookie share one store call and one token.

`rotate` (POST /auth/browser/refresh) stages a successor refresh token in the store; the old
one keeps working until the browser presents the new one (gateway.store.cookie_sessions).
A revoked session is noticed in the revocation view before any store call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import NoReturn

from gateway.authserver.revoker import Revoker
from gateway.authserver.token_service import open_successor, seal_successor
from gateway.errors import GatewayError, InvalidToken, RevocationStale, StoreUnavailable
from gateway.observability.metrics import Metrics
from gateway.store import Session, new_refresh_token, parse_refresh_token, refresh_token_hash
from gateway.store.cookie_sessions import CookieSessionStore
from gateway.tokens.issuer import IssuedToken, TokenIssuer
from gateway.tokens.revocation_view import RevocationView

log = logging.getLogger("gateway.browser")

_ENDED = "the session has ended; sign in again"


@dataclass(frozen=True, slots=True)
class Refreshed:
    session: Session
    access: IssuedToken
    refresh_token: str | None  # the refresh token to set after a rotation, else None
    outcome: str  # minted, rotated, reissued


def session_ended(reason: str) -> InvalidToken:
    """A definitive failure: the refresh cookie will never work again."""
    return InvalidToken(_ENDED, reason=reason)


class BrowserSessions:
    """Access tokens from refresh cookies (transparent refresh) and explicit rotation."""

    def __init__(
        self,
        *,
        store: CookieSessionStore,
        issuer: TokenIssuer,
        revoker: Revoker,
        view: RevocationView,
        metrics: Metrics,
        rotation_grace: float,
    ):
        self._store = store
        self._issuer = issuer
        self._revoker = revoker
        self._view = view
        self._outcomes = metrics.browser_refresh
        self._grace = rotation_grace
        self._flights: dict[str, asyncio.Task[Refreshed]] = {}

    async def mint(self, presented: str) -> Refreshed:
        """A new access token for the session the refresh token belongs to.

        Raises InvalidToken (definitive: unknown, expired, revoked, reused, malformed) or a
        ServiceFault (transient: Redis unavailable, revocation view stale)."""
        flight = self._flights.get(presented)
        if flight is None:
            flight = asyncio.get_running_loop().create_task(self._counted(self._mint(presented)))
            self._flights[presented] = flight
            flight.add_done_callback(functools.partial(self._landed, presented))
        # shielded: a request that goes away does not cancel the others' refresh
        return await asyncio.shield(flight)

    async def rotate(self, presented: str) -> Refreshed:
        """Stage a successor refresh token (or hand out the one staged already) and sign a
        new access token."""
        return await self._counted(self._rotate(presented))

    async def live_session(self, presented: str) -> Session:
        """The session a refresh token is live for (nothing minted); InvalidToken otherwise."""
        sid = self._sid_of(presented)
        result = await self._store.lookup(sid, refresh_token_hash(presented), grace=self._grace)
        if result.status == "reuse":
            await self._reused(sid, result.session)
        if result.session is None or result.status not in ("current", "promoted", "grace"):
            raise session_ended(f"refresh_{result.status}")
        return self._unrevoked(result.session)

    def _landed(self, presented: str, flight: asyncio.Task[Refreshed]) -> None:
        if self._flights.get(presented) is flight:
            del self._flights[presented]
        if not flight.cancelled():
            flight.exception()  # retrieved, even when every request waiting on it is gone

    async def _counted(self, work: Awaitable[Refreshed]) -> Refreshed:
        """`work`, its outcome counted (gateway_browser_refresh_total)."""
        try:
            refreshed: Refreshed = await work
        except InvalidToken as exc:
            self._outcomes.labels(exc.reason).inc()
            raise
        except GatewayError as exc:
            self._outcomes.labels(
                "store_unavailable" if isinstance(exc, StoreUnavailable) else exc.code
            ).inc()
            raise
        self._outcomes.labels(refreshed.outcome).inc()
        return refreshed

    async def _mint(self, presented: str) -> Refreshed:
        session = await self.live_session(presented)
        return Refreshed(session, self._issuer.for_session(session), None, "minted")

    async def _rotate(self, presented: str) -> Refreshed:
        sid = self._sid_of(presented)
        successor = new_refresh_token(sid)
        result = await self._store.stage(
            sid,
            refresh_token_hash(presented),
            refresh_token_hash(successor),
            seal_successor(presented, successor, sid),
            grace=self._grace,
        )
        if result.status == "reuse":
            await self._reused(sid, result.session)
        if result.session is None or result.status not in ("staged", "restaged", "grace"):
            raise session_ended(f"refresh_{result.status}")
        outcome = "rotated"
        if result.status != "staged":  # the token staged before (or the current one) again
            opened = open_successor(presented, result.box or b"", sid)
            if opened is None:
                raise session_ended("refresh_unknown")
            successor, outcome = opened, "reissued"
        session = self._unrevoked(result.session)
        return Refreshed(session, self._issuer.for_session(session), successor, outcome)

    def _sid_of(self, presented: str) -> str:
        if self._view.refusing:  # fail closed: a revocation we cannot see, we cannot enforce
            raise RevocationStale()
        sid = parse_refresh_token(presented)
        if sid is None:
            raise session_ended("refresh_malformed")
        if self._view.sid_revoked(sid):
            raise session_ended("refresh_revoked")
        return sid

    def _unrevoked(self, session: Session) -> Session:
        if self._view.session_revoked(session):
            raise session_ended("refresh_revoked")
        return session

    async def _reused(self, sid: str, session: Session | None) -> NoReturn:
        await self._revoker.revoke_sid(sid)
        sub = session.sub if session is not None else "?"
        log.warning("refresh cookie reuse: session revoked sid=%s sub=%s", sid, sub)
        raise session_ended("refresh_reused")
