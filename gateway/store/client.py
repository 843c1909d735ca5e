"""Redis connections from a URL, with the gateway's own deadlines on every wait."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

MEMORY_SCHEME = "memory"


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
        hosts = [_host_port(h) for h in parts.netloc.rpartition("@")[2].split(",") if h]
        path = [p for p in parts.path.split("/") if p]
        if not hosts or not path:
            raise ValueError("redis+sentinel:// needs host:port[,host:port]/service_name[/db]")
        password = unquote(parts.password) if parts.password else None
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            hosts, sentinel_kwargs=timeouts, password=password, **timeouts
        )
        db = int(path[1]) if len(path) > 1 else 0
        master: Any = sentinel.master_for(path[0], db=db, max_connections=max_connections)
        return master  # type: ignore[no-any-return]
    if scheme == "redis+cluster":
        cluster_url = "redis://" + parts.netloc + parts.path
        cluster: Any = RedisCluster.from_url(
            cluster_url, max_connections=max_connections, **timeouts
        )
        return cluster  # type: ignore[no-any-return]
    raise ValueError(
        f"unsupported redis.url scheme {scheme!r}: use memory://, redis://, rediss://, unix://, "
        "redis+sentinel:// or redis+cluster://"
    )


def _host_port(item: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    return (host or item, int(port) if port else 26379)
