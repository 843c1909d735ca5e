"""The in-memory revocation view: "is this token revoked?" answered with dict lookups only,
so the request path does no I/O. gateway.tokens.revocation_sync keeps it current.
"""

from __future__ import annotations

from typing import Protocol

from gateway.errors import InvalidToken, RevocationStale
from gateway.store import Revocation, RevocationBatch, sub_key
from gateway.tokens.verifier import Principal
from gateway.typedefs import Clock, RevocationKind


class SessionLike(Protocol):
    @property
    def sid(self) -> str: ...
    @property
    def sub(self) -> str: ...
    @property
    def created_at(self) -> float: ...


class RevocationView:
    """Revoked jti/sid (until when) and per-user watermarks (tokens issued before are dead)."""

    def __init__(self, *, clock: Clock):
        self._clock = clock
        self._jti: dict[str, float] = {}
        self._sid: dict[str, float] = {}
        self._sub: dict[str, float] = {}  # sub → watermark
        self._sub_until: dict[str, float] = {}
        # Users known only by the hash their unreadable record's key names (keyspace.sub_key):
        # hash → watermark, and until when. Empty unless a record could not be read.
        self._hashed_sub: dict[str, float] = {}
        self._hashed_sub_until: dict[str, float] = {}
        self.refusing = False  # set by the sync when stale past the bound in fail mode "closed"

    def apply(
        self, kind: RevocationKind, ident: str, *, until: float, at: float | None = None
    ) -> None:
        """Record one revocation (idempotent; a user watermark never moves back)."""
        if kind == "jti":
            self._jti[ident] = max(until, self._jti.get(ident, 0.0))
        elif kind == "sid":
            self._sid[ident] = max(until, self._sid.get(ident, 0.0))
        else:
            # iat has whole-second precision: floor the instant so a login in the same second
            # as the revoke-all still works (older sessions die by their sid revocations).
            instant = float(int(at if at is not None else until))
            self._sub[ident] = max(instant, self._sub.get(ident, 0.0))
            self._sub_until[ident] = max(until, self._sub_until.get(ident, 0.0))

    def apply_unreadable(
        self, kind: RevocationKind, ident: str, *, at: float, until: float
    ) -> None:
        """Fail closed for a record that could not be read: its jti or sid is revoked until
        `until`; for a user (`ident` is the hash of the sub its key names), tokens issued
        before `at` are."""
        if kind != "sub":
            self.apply(kind, ident, until=until)
            return
        instant = float(int(at))
        self._hashed_sub[ident] = max(instant, self._hashed_sub.get(ident, 0.0))
        self._hashed_sub_until[ident] = max(until, self._hashed_sub_until.get(ident, 0.0))

    def apply_record(self, record: Revocation) -> None:
        self.apply(record.kind, record.id, until=record.until, at=record.at)

    def apply_batch(self, batch: RevocationBatch) -> None:
        """Bulk form of apply for full loads (a million records in one pass)."""
        for table, entries in ((self._jti, batch.jti), (self._sid, batch.sid)):
            if not table:
                table.update(entries)
                continue
            known = table.get
            for ident, until in entries.items():
                if until > known(ident, 0.0):
                    table[ident] = until
        for record in batch.users:
            self.apply_record(record)

    def check(self, principal: Principal) -> None:
        """Raise InvalidToken(revoked), or RevocationStale when refusing; else return."""
        if self.refusing:
            raise RevocationStale()
        if self._jti and principal.jti in self._jti:
            raise InvalidToken("the access token has been revoked", reason="revoked")
        if self._sid and principal.sid in self._sid:
            raise InvalidToken("the session has been revoked", reason="revoked")
        if self._sub:
            watermark = self._sub.get(principal.sub)
            # auth_time too: a token minted just after a revoke-all from an older session dies.
            if watermark is not None and min(principal.iat, principal.auth_time) < watermark:
                raise InvalidToken("the access token has been revoked", reason="revoked")
        if self._hashed_sub:
            watermark = self._hashed_sub.get(sub_key(principal.sub))
            if watermark is not None and min(principal.iat, principal.auth_time) < watermark:
                raise InvalidToken("the access token has been revoked", reason="revoked")

    def sid_revoked(self, sid: str) -> bool:
        """True when the session id is revoked (known before anything else of the session)."""
        return sid in self._sid

    def session_revoked(self, session: SessionLike) -> bool:
        """True when the session's sid is revoked or its user was revoked after it began."""
        if session.sid in self._sid:
            return True
        watermark = self._sub.get(session.sub)
        if watermark is not None and session.created_at < watermark:
            return True
        if self._hashed_sub:
            watermark = self._hashed_sub.get(sub_key(session.sub))
            return watermark is not None and session.created_at < watermark
        return False

    def prune(self) -> int:
        """Forget entries whose protected tokens have all expired; returns how many."""
        now = self._clock()
        removed = 0
        for table in (self._jti, self._sid):
            dead = [ident for ident, until in table.items() if until <= now]
            for ident in dead:
                del table[ident]
            removed += len(dead)
        users = ((self._sub_until, self._sub), (self._hashed_sub_until, self._hashed_sub))
        for untils, watermarks in users:
            dead = [ident for ident, until in untils.items() if until <= now]
            for ident in dead:
                del untils[ident]
                watermarks.pop(ident, None)
            removed += len(dead)
        return removed

    def entries(self, limit: int) -> list[tuple[str, str, float]]:
        """Up to `limit` (kind, id, until) rows, for the admin API."""
        rows: list[tuple[str, str, float]] = []
        tables = (
            ("jti", self._jti),
            ("sid", self._sid),
            ("sub", self._sub_until),
            ("sub", self._hashed_sub_until),  # an unreadable user record: the sub's hash
        )
        for kind, table in tables:
            for ident, until in table.items():
                if len(rows) >= limit:
                    return rows
                rows.append((kind, ident, until))
        return rows

    def __len__(self) -> int:
        return len(self._jti) + len(self._sid) + len(self._sub) + len(self._hashed_sub)
