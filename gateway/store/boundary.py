"""The store's boundary: Redis and socket failures leave it as StoreUnavailable, nothing else.

One context manager does the mapping; the decorator is that context manager around a
coroutine, and the store's generators and context managers (where a decorator cannot reach
the code that talks to Redis) use the context manager directly.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Final, ParamSpec, TypeVar

from redis.exceptions import RedisError

from gateway.errors import StoreUnavailable

log = logging.getLogger("gateway.store")

P = ParamSpec("P")
T = TypeVar("T")
# Everything redis-py can raise: its own tree, socket errors and its timeouts.
FOREIGN_ERRORS: Final = (RedisError, OSError, asyncio.TimeoutError)


@contextmanager
def store_errors(operation: str) -> Iterator[None]:
    """Map Redis/socket errors raised in the block to StoreUnavailable (never echoing
    Redis's message, which may name keys or hosts)."""
    try:
        yield
    except FOREIGN_ERRORS as exc:
        log.warning("redis unavailable in %s: %s", operation, type(exc).__name__)
        raise StoreUnavailable() from exc
    except RuntimeError as exc:
        if not closed_transport(exc):
            raise
        log.warning("redis unavailable in %s: connection closed under a write", operation)
        raise StoreUnavailable() from exc


def closed_transport(exc: RuntimeError) -> bool:
    """uvloop's answer (a RuntimeError, where asyncio's own loop says nothing) when redis-py
    writes on a connection whose transport is already closed: seen when a primary dies."""
    return str(exc).startswith("unable to perform operation on <")


def translated(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """`store_errors` around a whole coroutine method."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with store_errors(fn.__qualname__):
            return await fn(*args, **kwargs)

    return wrapper
