"""Redis connections from a URL, with the gateway's own deadlines on every wait."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff

from gateway.config.redis_url import MEMORY_SCHEME, check_redis_url, cluster_nodes, sentinel_parts


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
        nodes = [ClusterNode(host, port) for host, port in cluster_nodes(parts.netloc)]
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
