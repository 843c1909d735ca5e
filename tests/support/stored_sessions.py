"""Sessions written and rotated in a SessionStore as the token service does it, for tests of the
store itself (the token service's own tests go through the gateway's endpoints)."""

from __future__ import annotations

from typing import Any

from gateway.authserver.token_service import open_successor, seal_successor
from gateway.store import (
    RotateResult,
    SessionStore,
    new_refresh_token,
    new_sid,
    refresh_token_hash,
)


async def open_session(
    store: SessionStore, sub: str = "alice", *, lifetime: float = 3600, **fields: Any
) -> tuple[str, str]:
    """A new session for `sub` (device, roles … in `fields`): its id and its refresh token."""
    sid = new_sid(sub)
    token = new_refresh_token(sid)
    await store.create(
        sub=sub, sid=sid, refresh_hash=refresh_token_hash(token), lifetime=lifetime, **fields
    )
    return sid, token


async def rotate_session(
    store: SessionStore, sid: str, token: str, grace: float = 10, *, delivered: bool = True
) -> tuple[RotateResult, str]:
    """Rotate `token` as the token service does: seal its successor, and confirm the delivery
    once the successor is in hand (unless `delivered` is False: the answer was lost). The
    result and the successor the client now holds."""
    successor = new_refresh_token(sid)
    result = await store.rotate(
        sid=sid,
        presented_hash=refresh_token_hash(token),
        new_hash=refresh_token_hash(successor),
        successor_box=seal_successor(token, successor, sid),  # what the token service stores
        grace=grace,
    )
    if result.successor_box is not None:
        successor = open_successor(token, result.successor_box, sid) or ""
    if delivered and result.pending:
        await store.confirm_delivery(
            sid=sid, successor_hash=refresh_token_hash(successor), grace=grace
        )
    return result, successor
