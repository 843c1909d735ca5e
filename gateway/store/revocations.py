"""Revocation records (denylist keys with TTLs), their pub/sub feed and a version counter.

Each revocation: SET the record with an expiry no earlier than the token it blocks, INCR the
version, PUBLISH the record with that version. Instances detect a lost message as a version
they never received, and reload.

A key under the revocation prefix whose value is no record (another Redis type, garbage, an
expiry that is not a finite number) is reported as an UnreadableRecord with the id its key
names, never skipped: whoever loads it must treat that id as revoked.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Final, cast, get_args

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from gateway.safejson import parse_json
from gateway.store.boundary import FOREIGN_ERRORS, store_errors, translated
from gateway.store.keyspace import sub_key
from gateway.store.writes import DurableStore, Target
from gateway.typedefs import RevocationKind

KINDS: Final = frozenset(get_args(RevocationKind))
VERSION_TTL: Final = 90 * 86400
MAX_MESSAGE: Final = 4096


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: RevocationKind
    id: str
    until: float  # when the record may be forgotten (every token it blocks has expired)
    at: float | None = None  # kind "sub": tokens issued before this instant are rejected
    version: int = 0


def encode(record: Revocation) -> bytes:
    body = {"kind": record.kind, "id": record.id, "until": record.until, "at": record.at}
    if record.version:
        body["version"] = record.version
    return json.dumps(body, separators=(",", ":")).encode()


def decode(data: bytes | str) -> Revocation | None:
    """A record from untrusted bytes (pub/sub, Redis values); None when malformed."""
    if len(data) > MAX_MESSAGE:
        return None
    try:
        body = parse_json(data)
        kind, ident, until = body["kind"], body["id"], float(body["until"])
        at = None if body.get("at") is None else float(body["at"])
        version = int(body.get("version", 0))
    except (ValueError, TypeError, KeyError):
        return None
    if kind not in KINDS or not isinstance(ident, str) or not ident or not math.isfinite(until):
        return None
    return Revocation(kind, ident, until, at, version)


def stored_value(record: Revocation) -> bytes:
    """The Redis value: the expiry alone for jti/sid (the key names them), JSON for users."""
    if record.kind == "sub":
        return encode(record)
    return repr(record.until).encode()


@dataclass(frozen=True, slots=True)
class UnreadableRecord:
    """A revocation key whose value cannot be read: the id its key names must count as
    revoked. A user's key names a hash of the sub (keyspace.sub_key), so `ident` is that hash
    for kind "sub"."""

    key: str
    kind: RevocationKind
    ident: str
    problem: str  # what is wrong with it, for the log
    ttl: float | None  # seconds the key has left; None when it never expires


@dataclass(frozen=True, slots=True)
class UnreadableMessage:
    """A message on the revocation channel that is no record."""

    size: int


@dataclass(slots=True)
class RevocationBatch:
    """Live records from one full-load batch: jti and sid as id → until (no object per
    record: a million of them load in seconds), user watermarks as records, and the keys
    whose value could not be read."""

    jti: dict[str, float] = field(default_factory=dict)
    sid: dict[str, float] = field(default_factory=dict)
    users: list[Revocation] = field(default_factory=list)
    unreadable: list[UnreadableRecord] = field(default_factory=list)

    def records(self) -> list[Revocation]:
        return [
            *(Revocation("jti", ident, until) for ident, until in self.jti.items()),
            *(Revocation("sid", ident, until) for ident, until in self.sid.items()),
            *self.users,
        ]


class Feed:
    """A live subscription to the revocation channel."""

    def __init__(self, pubsub: PubSub):
        self._pubsub = pubsub

    async def get(self, timeout: float) -> Revocation | UnreadableMessage | None:
        """The next record (UnreadableMessage for one that is no record), or None after
        `timeout` seconds."""
        with store_errors("Feed.get"):
            message = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=timeout
            )
        if not message or message.get("type") != "message":
            return None
        data = message.get("data")
        record = decode(data) if isinstance(data, bytes | str) else None
        if record is None:
            return UnreadableMessage(len(data) if isinstance(data, bytes | str) else 0)
        return record


class RevocationStore(DurableStore):
    """Writes (acknowledged by replicas when `durability` asks), versions, publishes, loads."""

    async def revoke_jti(self, jti: str, *, exp: float, leeway: float) -> Revocation | None:
        """Deny one access token until exp + leeway; None (nothing written) if already past."""
        until = exp + leeway
        if until <= self._clock():
            return None
        return await self._write(Revocation("jti", jti, until), self._keys.revocation("jti", jti))

    async def revoke_session(self, sid: str, *, until: float) -> Revocation:
        return await self._write(Revocation("sid", sid, until), self._keys.revocation("sid", sid))

    async def revoke_user(self, sub: str, *, at: float, until: float) -> Revocation:
        """Watermark: tokens of `sub` issued before `at` are rejected; never moved back."""
        key = self._keys.revocation("sub", sub_key(sub))
        current = decode(raw) if (raw := await self._get(key)) else None
        if current is not None and current.at is not None:
            at, until = max(at, current.at), max(until, current.until)
        return await self._write(Revocation("sub", sub, until, at), key)

    @translated
    async def _get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(key)
        except ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
            return None  # an unreadable record: the new one replaces it (SET takes any type)
        return value.encode() if isinstance(value, str) else value

    @translated
    async def _write(self, record: Revocation, key: str) -> Revocation:
        version_key = self._keys.revocation_version

        def queue(pipe: Any, target: Target) -> None:
            # SECURITY: the record lives at least as long as the tokens it blocks (rounded up).
            expiry = math.ceil(record.until) + 1
            pipe.execute_command("SET", key, stored_value(record), "EXAT", expiry, **target)
            # The version only tells instances to reload: a version lost in a failover makes
            # the new primary's lower, which reloads them too.
            pipe.incr(version_key)
            pipe.expire(version_key, VERSION_TTL)

        _, version, _ = await self._writes.pipeline(queue, key=key)
        published = replace(record, version=int(version))
        await self._redis.publish(self._keys.revocation_channel, encode(published))
        return published

    @translated
    async def version(self) -> int:
        value = await self._redis.get(self._keys.revocation_version)
        return int(value) if value is not None else 0

    async def load_all(self, *, batch: int = 20_000) -> list[Revocation]:
        """Every live record (SCAN + MGET per batch, never KEYS)."""
        return [record async for found in self.batches(batch=batch) for record in found.records()]

    async def batches(self, *, batch: int = 20_000) -> AsyncIterator[RevocationBatch]:
        """Live records in batches, so a million of them never sit in memory twice."""
        prefix = self._keys.revocation_pattern[:-1].encode()
        keys: list[bytes] = []
        with store_errors("RevocationStore.batches"):
            async for key in self._redis.scan_iter(
                match=self._keys.revocation_pattern, count=batch
            ):
                keys.append(key)
                if len(keys) >= batch:
                    yield await self._fetch(keys, prefix)
                    keys = []
            if keys:
                yield await self._fetch(keys, prefix)

    async def _fetch(self, keys: list[bytes], prefix: bytes) -> RevocationBatch:
        if isinstance(self._redis, RedisCluster):  # keys of many slots: one MGET per slot
            values = await self._redis.mget_nonatomic(keys)
        else:
            values = await self._redis.mget(keys)
        now = self._clock()
        found = RevocationBatch()
        start = len(prefix)
        missing: list[bytes] = []  # expired between SCAN and MGET, or not a string
        spoiled: list[tuple[bytes, str]] = []
        for key, value in zip(keys, values, strict=True):
            if value is None:
                missing.append(key)
                continue
            kind = key[start : start + 4]
            if kind == b"jti:" or kind == b"sid:":
                try:
                    until = float(value)
                except ValueError:
                    until = math.nan
                if now < until < math.inf:  # nearly every record (NaN fails it too)
                    ident = key[start + 4 :].decode(errors="replace")
                    if ident:
                        (found.jti if kind == b"jti:" else found.sid)[ident] = until
                elif not math.isfinite(until):
                    spoiled.append((key, "its value is not an expiry"))
            elif kind == b"sub:":
                record = decode(value)
                # SECURITY: a record of another user under this key would lose this one's.
                if record is None or sub_key(record.id).encode() != key[start + 4 :]:
                    spoiled.append((key, "its value is not this user's record"))
                elif record.until > now:
                    found.users.append(record)
        if missing or spoiled:
            await self._unreadable(found, missing, spoiled, start)
        return found

    async def _unreadable(
        self,
        found: RevocationBatch,
        missing: list[bytes],
        spoiled: list[tuple[bytes, str]],
        start: int,
    ) -> None:
        """Add the keys that hold no readable record (rare: a key at a time)."""
        for key in missing:
            held: Any = await self._redis.type(key)
            held = held.decode() if isinstance(held, bytes) else str(held)
            if held != "none":  # "none": it expired meanwhile
                spoiled.append((key, f"it holds a Redis {held}"))
        for key, problem in spoiled:
            kind, colon, ident = key[start:].decode(errors="replace").partition(":")
            if kind not in KINDS or not colon:  # not a record's key
                continue
            ttl_ms = await self._redis.pttl(key)
            if ttl_ms == -2:  # gone meanwhile
                continue
            found.unreadable.append(
                UnreadableRecord(
                    key=key.decode(errors="replace"),
                    kind=cast(RevocationKind, kind),
                    ident=ident,
                    problem=problem,
                    ttl=ttl_ms / 1000 if ttl_ms >= 0 else None,
                )
            )

    @asynccontextmanager
    async def subscription(self) -> AsyncIterator[Feed]:
        """Subscribed to the revocation channel for the duration of the block."""
        pubsub = self._redis.pubsub()
        try:
            with store_errors("RevocationStore.subscription"):
                await pubsub.subscribe(self._keys.revocation_channel)
            yield Feed(pubsub)
        finally:
            with contextlib.suppress(*FOREIGN_ERRORS):
                await pubsub.aclose()

    @translated
    async def ping(self) -> bool:
        result: Any = await self._redis.ping()
        return bool(result)
