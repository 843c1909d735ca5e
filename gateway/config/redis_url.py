"""The Redis URL forms the gateway accepts, checked when the settings load (the store's
client connects with them: gateway.store.client)."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

MEMORY_SCHEME: Final = "memory"
SCHEMES: Final = (MEMORY_SCHEME, "redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


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
        cluster_nodes(parts.netloc)


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


def cluster_nodes(netloc: str) -> list[tuple[str, int]]:
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


def _host_port(item: str, default_port: int = 26379) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    return (host or item, int(port) if port else default_port)
