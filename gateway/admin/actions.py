"""Operator actions, one implementation for the admin API and the CLI.

Each action goes through the Revoker (store first; running gateways learn of it through the
store's pub/sub channel) and is written to the audit trail before it is reported.
"""

from __future__ import annotations

import getpass
import math
import re
import socket
from dataclasses import dataclass
from typing import Any, Final

from gateway.authserver.revoker import Revoker
from gateway.errors import InvalidRequest, InvalidToken, NotFound
from gateway.store import (
    SID_RE,
    AuditEntry,
    AuditLog,
    Session,
)
from gateway.tokens.verifier import Principal, TokenVerifier
from gateway.typedefs import Clock

JTI_RE: Final = re.compile(r"^[A-Za-z0-9._~:-]{1,128}$")
CLIENT_ID_RE: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
CLIENT_SUBJECT_PREFIX: Final = "client:"  # the `sub` of a client's own tokens
SUB_MAX: Final = 256
# No access token of the gateway lives this long: a revocation further ahead is a mistake.
MAX_EXP_AHEAD: Final = 366 * 86400
# An audit entry id (a Redis stream id): two unsigned 64-bit numbers, ASCII digits only.
AUDIT_ID_RE: Final = re.compile(r"^([0-9]{1,20})-([0-9]{1,20})$")
MAX_ID_PART: Final = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, as the audit trail records it: `admin-key:<id>` or `cli:<user>@<host>`."""

    name: str
    source: str | None


class AdminActions:
    """Revocations and the reads operators need; every change audited before it returns."""

    def __init__(self, revoker: Revoker, audit: AuditLog, verifier: TokenVerifier, clock: Clock):
        self.revoker = revoker
        self.audit = audit
        self._verifier = verifier
        self._clock = clock

    async def revoke_token(
        self,
        actor: Actor,
        *,
        token: object = None,
        jti: object = None,
        exp: object = None,
    ) -> dict[str, Any]:
        """One access token, given whole or as jti + exp; an expired one is a no-op."""
        jti_text, expiry = self._token_target(token, jti, exp)
        record = await self.revoker.revoke_access_token(jti_text, expiry)
        result: dict[str, Any] = {
            "kind": "jti",
            "id": jti_text,
            "revoked": record is not None,
            "until": expiry,
        }
        if record is None:
            result["detail"] = "the token has already expired; nothing to revoke"
        await self._record(actor, "revoke_token", jti_text, result)
        return result

    def inspect_token(self, token: object) -> Principal:
        """Who an access token of this gateway speaks for (signature checked, expiry not)."""
        if not isinstance(token, str):
            raise InvalidRequest("token must be a string")
        try:
            return self._verifier.inspect(token)
        except InvalidToken:
            raise InvalidRequest("token is not a valid access token of this gateway") from None

    def _token_target(self, token: object, jti: object, exp: object) -> tuple[str, float]:
        if token is not None:
            principal = self.inspect_token(token)
            return principal.jti, principal.exp
        if not isinstance(jti, str) or not JTI_RE.match(jti):
            raise InvalidRequest("jti must be a string of 1-128 URL-safe characters")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise InvalidRequest("exp must be a Unix time in seconds")
        try:
            expiry = float(exp)
        except OverflowError:
            expiry = math.inf
        # NaN fails the comparison too: a client fault, never a store error later
        if not 0 < expiry <= self._clock() + MAX_EXP_AHEAD:
            raise InvalidRequest(
                f"exp must be a Unix time in seconds, at most {MAX_EXP_AHEAD // 86400} days ahead"
            )
        return jti, expiry

    async def revoke_session(self, actor: Actor, sid: str) -> dict[str, Any]:
        """The session's refresh chain and access tokens die; NotFound for an unknown sid."""
        session = await self.revoker.end_session(sid) if SID_RE.match(sid) else None
        if session is None:
            raise NotFound("no such session")
        result = {"kind": "sid", "id": sid, "sub": session.sub, "revoked": True}
        await self._record(actor, "revoke_session", sid, result)
        return result

    async def revoke_user(self, actor: Actor, sub: str) -> dict[str, Any]:
        """Every session of the user ends; every token issued to it before now dies."""
        check_sub(sub)
        sids = await self.revoker.revoke_user(sub)
        result = {
            "kind": "sub",
            "id": sub,
            "sessions_revoked": len(sids),
            "at": int(self._clock()),
        }
        await self._record(actor, "revoke_user", sub, result)
        return result

    async def revoke_client(self, actor: Actor, client_id: str) -> dict[str, Any]:
        """Every token a client holds of its own (client credentials: `sub` client:<id>)
        issued before now dies on every instance; the client may fetch new ones."""
        if not CLIENT_ID_RE.match(client_id):
            raise InvalidRequest("invalid client id")
        sub = CLIENT_SUBJECT_PREFIX + client_id
        # SECURITY: token times have whole seconds; a user's watermark spares tokens of the
        # current second (logging in again works at once), a client's kills them too: a
        # leaked token fetched a moment before the revocation must not survive it.
        at = math.floor(self._clock()) + 1
        await self.revoker.revoke_user(sub, at=at)
        result = {"kind": "client", "id": client_id, "sub": sub, "at": at}
        await self._record(actor, "revoke_client", client_id, result)
        return result

    async def sessions_of(self, sub: str) -> list[Session]:
        check_sub(sub)
        return await self.revoker.sessions_of(sub)

    async def audit_entries(self, count: int, before: str | None = None) -> list[AuditEntry]:
        """Newest first, older than the entry id `before`; InvalidRequest for a cursor that
        is no entry id (a client's fault, never sent to Redis to fail there)."""
        if before is not None:
            check_audit_id(before)
        return await self.audit.recent(count=count, before=before)

    async def config_reloaded(
        self, actor: Actor, *, reloaded: bool, generation: int, refusal: str | None
    ) -> None:
        """A reload asked for through the admin API, and how it ended in this process."""
        detail: dict[str, Any] = {"reloaded": reloaded, "generation": generation}
        if refusal is not None:
            detail["refusal"] = refusal
        await self._record(actor, "reload_config", f"configuration {generation}", detail)

    async def console_signed(self, actor: Actor, action: str, handle: str) -> None:
        """A console sign-in or sign-out (`handle`: a short, non-secret name of it)."""
        await self._record(actor, action, handle, {"console_session": handle})

    async def _record(self, actor: Actor, action: str, target: str, detail: dict[str, Any]) -> None:
        await self.audit.record(
            actor=actor.name, action=action, target=target, source=actor.source, detail=detail
        )


def check_audit_id(ident: str) -> None:
    match = AUDIT_ID_RE.match(ident)
    if match is None or max(int(match[1]), int(match[2])) > MAX_ID_PART:
        raise InvalidRequest("before must be an audit entry id (<milliseconds>-<sequence>)")


def check_sub(sub: str) -> None:
    if not sub or len(sub) > SUB_MAX or not sub.isprintable():
        raise InvalidRequest("invalid user id")


def cli_actor() -> Actor:
    return Actor(f"cli:{getpass.getuser()}@{socket.gethostname()}", "cli")
