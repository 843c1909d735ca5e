"""The store's boundary: Redis and socket failures leave it as StoreUnavailable, nothing else.

One context manager does the mapping; the decorator is that context manager around a
coroutine, and the store's generators and context managers (where a decorator cannot reach
the code that talks to Redis) use the context manager directly.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Final, ParamSpec, TypeVar

import redis
from redis.exceptions import RedisError

from gateway.errors import StoreUnavailable

log = logging.getLogger("gateway.store")

P = ParamSpec("P")
T = TypeVar("T")
# Everything redis-py can raise: its own tree, socket errors and its timeouts.
FOREIGN_ERRORS: Final = (RedisError, OSError, asyncio.TimeoutError)
# The code below redis-py on a connection: itself and the event loop's transports and streams.
IO_LAYERS: Final = (os.path.dirname(redis.__file__), os.path.dirname(asyncio.__file__))


@contextmanager
def store_errors(operation: str) -> Iterator[None]:
    """Map Redis/socket errors raised in the block to StoreUnavailable (never echoing
    Redis's message, which may name keys or hosts)."""
    try:
        yield
    except FOREIGN_ERRORS as exc:
        log.warning("redis unavailable in %s: %s", operation, type(exc).__name__)
        raise StoreUnavailable() from exc
    except (AttributeError, TypeError, RuntimeError) as exc:
        where = io_layer_origin(exc)
        if where is None:
            raise  # raised by the gateway's own code: a bug, answered as one
        log.warning("redis unavailable in %s: %s in %s", operation, type(exc).__name__, where)
        raise StoreUnavailable() from exc


def io_layer_origin(exc: BaseException) -> str | None:
    """Where in redis-py, asyncio or uvloop `exc` was raised ("file:line"), else None.

    When a connection is closed under it (a primary dies, a peer resets an idle connection),
    redis-py lets transport internals through instead of its ConnectionError: AttributeError
    or TypeError on a torn-down transport or stream, uvloop's RuntimeError for a write on a
    closed transport, "Event loop is closed". Raised there, they mean the connection is gone.
    """
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is None:
        return None
    filename = frame.tb_frame.f_code.co_filename
    if filename.startswith(IO_LAYERS) or "uvloop" in filename:
        return f"{os.path.basename(filename)}:{frame.tb_lineno}"
    return None


def translated(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """`store_errors` around a whole coroutine method."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with store_errors(fn.__qualname__):
            return await fn(*args, **kwargs)

    return wrapper
