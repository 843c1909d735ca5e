"""Operator actions for the CLI: the admin API's revocations with only Redis access.

They reach running gateways the same way admin calls do (the store's pub/sub channel), and
each one is written to the audit trail before the command reports success.
"""

from __future__ import annotations

import getpass
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from gateway.config import Settings
from gateway.errors import ConfigError, InvalidToken
from gateway.keys import load_keyring
from gateway.sessions import Revoker
from gateway.store import AuditLog, RevocationStore, SessionStore, connect_redis, is_memory_url
from gateway.tokens import TokenVerifier


@dataclass(frozen=True, slots=True)
class Operator:
    revoker: Revoker
    audit: AuditLog
    actor: str

    async def record(self, action: str, target: str, detail: dict[str, Any]) -> None:
        await self.audit.record(
            actor=self.actor, action=action, target=target, source="cli", detail=detail
        )


@asynccontextmanager
async def operator(settings: Settings) -> AsyncIterator[Operator]:
    """Stores on the configured Redis, for one CLI command."""
    r = settings.redis
    if is_memory_url(r.url):
        raise ConfigError(
            "redis.url is memory://: the operator CLI needs the Redis the gateways share "
            "(set redis.url or GATEWAY_REDIS__URL)"
        )
    client = connect_redis(
        r.url, connect_timeout=r.connect_timeout, socket_timeout=r.socket_timeout, max_connections=4
    )
    try:
        revoker = Revoker(
            sessions=SessionStore(client, clock=time.time, prefix=r.prefix),
            revocations=RevocationStore(client, clock=time.time, prefix=r.prefix),
            view=None,
            settings=settings.tokens,
            clock=time.time,
        )
        audit = AuditLog(client, clock=time.time, prefix=r.prefix)
        yield Operator(revoker, audit, f"cli:{getpass.getuser()}@{socket.gethostname()}")
    finally:
        await client.aclose()


async def revoke_token(
    settings: Settings, *, token: str | None, jti: str | None, exp: float | None
) -> str:
    if token is not None:
        verifier = TokenVerifier(
            load_keyring(settings.keys),
            issuer=settings.tokens.issuer,
            audience=settings.tokens.audience,
            leeway=settings.tokens.leeway,
            clock=time.time,
            cache_size=0,
        )
        try:
            principal = verifier.inspect(token)
        except InvalidToken as exc:
            raise ValueError(
                f"not a valid access token of this gateway: {exc.description}"
            ) from None
        jti, exp = principal.jti, principal.exp
    if jti is None or exp is None:
        raise ValueError("give --token, or --jti with --exp")
    async with operator(settings) as op:
        record = await op.revoker.revoke_access_token(jti, exp)
        await op.record("revoke_token", jti, {"revoked": record is not None, "until": exp})
    if record is None:
        return f"token {jti} has already expired; nothing to revoke"
    return f"revoked token {jti} until {int(record.until)}"


async def revoke_session(settings: Settings, sid: str) -> str:
    async with operator(settings) as op:
        session = await op.revoker.end_session(sid)
        if session is None:
            return f"no session {sid}"
        await op.record("revoke_session", sid, {"sub": session.sub})
    return f"revoked session {sid} of {session.sub}"


async def revoke_user(settings: Settings, sub: str) -> str:
    async with operator(settings) as op:
        sids = await op.revoker.revoke_user(sub)
        await op.record("revoke_user", sub, {"sessions_revoked": len(sids)})
    return f"revoked user {sub}: {len(sids)} sessions ended, earlier tokens rejected"


async def list_sessions(settings: Settings, sub: str) -> list[dict[str, Any]]:
    async with operator(settings) as op:
        sessions = await op.revoker.sessions_of(sub)
    return [
        {
            "sid": s.sid,
            "device_id": s.device_id,
            "device_name": s.device_name,
            "created_at": int(s.created_at),
            "last_used_at": int(s.last_used_at),
            "ip": s.ip,
            "user_agent": s.user_agent,
        }
        for s in sessions
    ]


async def audit_entries(settings: Settings, count: int) -> list[dict[str, Any]]:
    async with operator(settings) as op:
        entries = await op.audit.recent(count=count)
    return [
        {
            "id": e.id,
            "at": e.at,
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "source": e.source,
            "detail": e.detail,
        }
        for e in entries
    ]
