"""The store's writes: Lua scripts and pipelines, acknowledged by Redis replicas when required.

Redis replicates asynchronously: a write the primary acknowledged is lost when the primary dies
before a replica has it, and the failover then forgets a rotation the client already received
or a revocation an operator was told about. With `redis.min_replicas_ack` = N > 0, each write
of the token service, the revocations and the audit trail is followed by `WAIT N <ms>` on the
same connection (WAIT counts the writes of the connection it is sent on): one pipeline, one
round trip. Success is reported only once N replicas hold the write (and, since replication is
one ordered stream, everything written before it). Fewer within `redis.replica_ack_timeout`:
ReplicaAckMissing (503). The write may stand on the primary; every write of the store is safe
to retry (idempotent, or a refresh whose successor is redelivered).

On Redis Cluster the acknowledged commands and their WAIT go to one node, the master of the
write's slot, without redirection (a redirected write would leave WAIT counting nothing); a
MOVED answer updates the slot map and the write is sent again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import MovedError, NoScriptError

from gateway.errors import ReplicaAckMissing
from gateway.store.keyspace import KeySpace

log = logging.getLogger("gateway.store")

# A script the (new) primary lacks is loaded and a moved slot followed, each then sent again.
ATTEMPTS: Final = 3

Target = dict[str, Any]  # keyword arguments that pin a command to the WAIT's node (Cluster)
Queue = Callable[[Any, Target], None]  # adds commands to a pipeline
NeedsAck = Callable[[Any], bool]  # from a script's result: did it write anything worth waiting for


@dataclass(frozen=True, slots=True)
class Durability:
    """How many replicas must hold each write before it counts, and how long to wait for them."""

    replicas: int = 0  # 0: the primary's answer is enough
    timeout: float = 0.5  # seconds


class LuaScript:
    """A Lua script, run by its SHA1 and loaded wherever Redis lacks it (the script cache of a
    promoted replica starts empty)."""

    def __init__(self, source: str):
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 (Redis names scripts so)


class Writer:
    """Runs the store's writes on one client, with WAIT after them when durability asks."""

    def __init__(self, redis: Redis, durability: Durability | None = None):
        self._redis = redis
        self.durability = durability or Durability()
        self._cluster: RedisCluster | None = redis if isinstance(redis, RedisCluster) else None

    async def run(
        self,
        script: LuaScript,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        durable: bool | NeedsAck = True,
    ) -> Any:
        """EVALSHA `script`; when durable (or `durable(result)` says so), acknowledged by
        replicas before it returns."""
        if not (durable and self.durability.replicas):
            try:
                return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self._redis.script_load(script.source)
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)

        def queue(pipe: Any, target: Target) -> None:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args, **target)

        (result,) = await self._execute(
            queue, keys[0], scripts=(script,), needs_ack=None if durable is True else durable
        )
        return result

    async def pipeline(self, queue: Queue, *, key: str, durable: bool = True) -> list[Any]:
        """The commands `queue` adds, in one pipeline (not a transaction), then WAIT when
        durable. Commands that must be acknowledged take the target it passes (`**target`):
        on Cluster they go to the master of `key`'s slot, as the WAIT does."""
        return await self._execute(queue, key, acked=durable and self.durability.replicas > 0)

    async def _execute(
        self,
        queue: Queue,
        key: str,
        *,
        scripts: Sequence[LuaScript] = (),
        acked: bool = True,
        needs_ack: NeedsAck | None = None,
    ) -> list[Any]:
        wanted = self.durability.replicas
        for attempt in range(1, ATTEMPTS + 1):
            target: Target = {}
            if self._cluster is not None:
                pipe: Any = self._cluster.pipeline()
                if acked:
                    target = {"target_nodes": self._cluster.get_node_from_key(key)}
            else:
                pipe = self._redis.pipeline(transaction=False)
            queue(pipe, target)
            if acked:
                pipe.execute_command("WAIT", wanted, int(self.durability.timeout * 1000), **target)
            if self._cluster is not None and acked:
                results = await pipe.execute(raise_on_error=False, allow_redirections=False)
            else:
                results = await pipe.execute(raise_on_error=False)
            written: list[Any] = list(results[:-1] if acked else results)
            failure = next((r for r in results if isinstance(r, Exception)), None)
            if failure is None:
                if acked and results[-1] < wanted:
                    if needs_ack is not None and not needs_ack(written[0]):
                        return written  # nothing was written that needed replicas
                    log.warning(
                        "redis replicas acknowledged %s of %d writes within %.2fs",
                        results[-1],
                        wanted,
                        self.durability.timeout,
                    )
                    raise ReplicaAckMissing()
                return written
            if attempt == ATTEMPTS:
                raise failure
            if isinstance(failure, NoScriptError):
                for script in scripts:
                    await self._redis.script_load(script.source)
            elif isinstance(failure, MovedError) and self._cluster is not None:
                await self._cluster.nodes_manager.move_slot(failure)
            else:
                raise failure
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


class DurableStore:
    """What every store of token state holds: the client, the clock, its key names and the
    Writer that makes its writes durable as `redis.min_replicas_ack` asks."""

    def __init__(
        self,
        redis: Redis,
        *,
        clock: Callable[[], float],
        prefix: str = "gw",
        durability: Durability | None = None,
    ):
        self._redis = redis
        self._clock = clock
        self._keys = KeySpace(prefix)
        self._writes = Writer(redis, durability)
