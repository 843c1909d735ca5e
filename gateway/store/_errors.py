"""The store's boundary: Redis and socket failures leave it as StoreUnavailable, nothing else."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from redis.exceptions import RedisError

from gateway.errors import StoreUnavailable

log = logging.getLogger("gateway.store")

P = ParamSpec("P")
T = TypeVar("T")
FOREIGN_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


def translated(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Map Redis/socket errors to StoreUnavailable (never echoing Redis's message)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except FOREIGN_ERRORS as exc:
            log.warning("redis unavailable in %s: %s", fn.__qualname__, type(exc).__name__)
            raise StoreUnavailable() from exc

    return wrapper
