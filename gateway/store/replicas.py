"""How many replicas stand behind a Sentinel or Cluster URL, as the topology reports it now
(for `gateway check-config`: whether redis.min_replicas_ack survives a failover)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis

from gateway.config.redis_url import cluster_nodes, sentinel_parts
from gateway.store.boundary import FOREIGN_ERRORS


class ReplicasUnknown(Exception):
    """No sentinel or cluster node answered the question (the message says why)."""


async def fewest_replicas(url: str, *, connect_timeout: float, socket_timeout: float) -> int:
    """The fewest replicas any primary has behind a redis+sentinel:// URL (the sentinels'
    view, replicas they see as down left out) or a redis+cluster:// URL (CLUSTER SLOTS, which
    leaves failed replicas out). Each sentinel or startup node is asked in turn; raises
    ReplicasUnknown when none answers, or for another kind of URL."""
    parts = urlsplit(url)
    timeouts: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
    }
    failures: list[str] = []
    if parts.scheme == "redis+sentinel":
        hosts, service, _ = sentinel_parts(parts.netloc, parts.path)
        for host, port in hosts:
            try:
                replicas = await _ask(Redis(host=host, port=port, **timeouts), "sentinel", service)
            except FOREIGN_ERRORS as exc:
                failures.append(f"{host}:{port} {type(exc).__name__}")
                continue
            down = ("is_sdown", "is_odown", "is_disconnected")
            return sum(1 for r in replicas if not any(r.get(flag) for flag in down))
        raise ReplicasUnknown("no sentinel answered (" + ", ".join(failures) + ")")
    if parts.scheme == "redis+cluster":
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        for host, port in cluster_nodes(parts.netloc):
            client = Redis(host=host, port=port, username=username, password=password, **timeouts)
            try:
                slots = await _ask(client, "cluster")
            except FOREIGN_ERRORS as exc:
                failures.append(f"{host}:{port} {type(exc).__name__}")
                continue
            per_primary = {(p[0], p[1]): len(copies) for _start, _end, p, *copies in slots}
            return min(per_primary.values(), default=0)
        raise ReplicasUnknown("no cluster node answered (" + ", ".join(failures) + ")")
    raise ReplicasUnknown(f"{parts.scheme}:// names no Sentinel or Cluster")


async def _ask(client: Redis, what: str, service: str = "") -> Any:
    """One question on a connection of its own (closed after): a sentinel's view of the
    service's replicas, or a cluster node's slot map."""
    untyped: Any = client
    try:
        if what == "sentinel":
            return await untyped.sentinel_slaves(service)
        return await untyped.execute_command("CLUSTER", "SLOTS")
    finally:
        await client.aclose()
