"""Revoker: ends sessions and revokes tokens, store first, then this instance's view at once.

Shared by the token service, the admin API and the operator CLI.
"""

from __future__ import annotations

import logging

from gateway.config import TokenSettings
from gateway.store import Revocation, RevocationStore, Session, SessionStore
from gateway.tokens.revocation_view import RevocationView
from gateway.typedefs import Clock

log = logging.getLogger("gateway.sessions")


class Revoker:
    """Ends sessions and revokes tokens: store first, then the local view (if any) at once.

    Used by the token service, the admin API and the operator CLI alike; other instances
    learn of each revocation through the store's pub/sub channel.
    """

    def __init__(
        self,
        *,
        sessions: SessionStore,
        revocations: RevocationStore,
        view: RevocationView | None,
        settings: TokenSettings,
        clock: Clock,
    ):
        self.sessions = sessions
        self._revocations = revocations
        self._view = view
        self._settings = settings
        self._clock = clock

    async def end_session(self, sid: str) -> Session | None:
        """Reject the session's access tokens everywhere, then delete it. None if unknown.

        In that order so that a session gone from Redis always had its revocation written
        first: a retry after a failure in between (which finds nothing left to delete) is
        answered only when the revocation stands."""
        await self.revoke_sid(sid)
        session = await self.sessions.delete(sid)
        if session is not None:
            log.info("session ended sid=%s sub=%s", sid, session.sub)
        return session

    async def revoke_sid(self, sid: str) -> None:
        """Deny the session's access tokens until the newest of them has expired."""
        until = self._clock() + self._settings.access_ttl + self._settings.leeway
        self._apply(await self._revocations.revoke_session(sid, until=until))

    async def revoke_access_token(self, jti: str, exp: float) -> Revocation | None:
        """Deny one access token until it expires; None when it has expired already."""
        record = await self._revocations.revoke_jti(jti, exp=exp, leeway=self._settings.leeway)
        if record is not None:
            self._apply(record)
        return record

    async def revoke_user(self, sub: str, *, at: float | None = None) -> list[str]:
        """End every session of `sub` and reject every token issued to it before now (or
        before `at`)."""
        now = self._clock() if at is None else at
        t = self._settings
        until = now + t.refresh_ttl + t.access_ttl + t.leeway
        self._apply(await self._revocations.revoke_user(sub, at=now, until=until))
        sids = await self.sessions.delete_all_for_user(sub)
        for sid in sids:
            await self.revoke_sid(sid)
        log.info("user revoked sub=%s sessions=%d", sub, len(sids))
        return sids

    async def sessions_of(self, sub: str) -> list[Session]:
        return await self.sessions.list_for_user(sub)

    async def get_session(self, sid: str) -> Session | None:
        return await self.sessions.get(sid)

    def _apply(self, record: Revocation) -> None:
        if self._view is not None:
            self._view.apply(record.kind, record.id, until=record.until, at=record.at)
