"""Redis connections from a URL, with the gateway's own deadlines on every wait."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff

MEMORY_SCHEME = "memory"
SCHEMES = (MEMORY_SCHEME, "redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


def check_redis_url(url: str) -> None:
    """Raise ValueError (saying what is accepted) for a URL `connect_redis` cannot use."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"unsupported scheme {parts.scheme + '://' if parts.scheme else url!r}: use "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    if parts.scheme == "redis+sentinel":
        sentinel_parts(parts.netloc, parts.path)
    if parts.scheme == "redis+cluster":
        _cluster_nodes(parts.netloc)


def sentinel_parts(netloc: str, path: str) -> tuple[list[tuple[str, int]], str, int]:
    """(sentinel hosts, service name, db) of a redis+sentinel:// URL; ValueError if malformed."""
    try:
        hosts = [_host_port(h) for h in netloc.rpartition("@")[2].split(",") if h]
        segments = [p for p in path.split("/") if p]
        db = int(segments[1]) if len(segments) > 1 else 0
    except ValueError:
        hosts, segments, db = [], [], 0
    if not hosts or not segments:
        raise ValueError("redis+sentinel:// needs host:port[,host:port]/service_name[/db]")
    return hosts, segments[0], db


def _cluster_nodes(netloc: str) -> list[tuple[str, int]]:
    """The startup nodes of a redis+cluster:// URL (any live one finds the rest)."""
    try:
        hosts = [_host_port(h, 6379) for h in netloc.rpartition("@")[2].split(",") if h]
    except ValueError:
        hosts = []
    if not hosts:
        raise ValueError("redis+cluster:// needs host:port[,host:port]")
    return hosts


def is_memory_url(url: str) -> bool:
    return urlsplit(url).scheme == MEMORY_SCHEME


def connect_redis(
    url: str, *, connect_timeout: float, socket_timeout: float, max_connections: int
) -> Redis:
    """A client for memory://, redis://, rediss://, unix://, redis+sentinel://, redis+cluster://.

    memory:// is an in-process store (fakeredis, with Lua): one instance, development only.
    """
    parts = urlsplit(url)
    scheme = parts.scheme
    timeouts: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
    }
    if scheme == MEMORY_SCHEME:
        import fakeredis

        memory: Any = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        return memory  # type: ignore[no-any-return]
    if scheme in ("redis", "rediss", "unix"):
        return Redis.from_url(
            url,
            max_connections=max_connections,
            health_check_interval=15,
            retry_on_timeout=False,
            **timeouts,
        )
    if scheme == "redis+sentinel":
        hosts, service, db = sentinel_parts(parts.netloc, parts.path)
        password = unquote(parts.password) if parts.password else None
        sentinel = Sentinel(hosts, sentinel_kwargs=timeouts, password=password, **timeouts)
        master: Any = sentinel.master_for(service, db=db, max_connections=max_connections)
        return master  # type: ignore[no-any-return]
    if scheme == "redis+cluster":
        nodes = [ClusterNode(host, port) for host, port in _cluster_nodes(parts.netloc)]
        cluster: Any = RedisCluster(
            startup_nodes=nodes,
            # A dead master's slots move to a replica within seconds: a few quick retries (each
            # re-reading the slot map) rather than redis-py's ten with up to 1 s between them,
            # so a request answers 503 within about a second instead of waiting out a failover.
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.25), retries=3),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            max_connections=max_connections,
            **timeouts,
        )
        return cluster  # type: ignore[no-any-return]
    check_redis_url(url)  # raises: the scheme is not one of SCHEMES
    raise AssertionError("unreachable")


def _host_port(item: str, default_port: int = 26379) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    return (host or item, int(port) if port else default_port)
