"""Foreign errors are translated once, at their boundary, and none is left unmapped: every
exception class redis-py or the upstream clients can raise becomes the gateway's own."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import aiohttp
import pytest
import redis
import redis.exceptions
import uvloop

from gateway.errors import StoreUnavailable, UpstreamTimeout, UpstreamUnavailable
from gateway.proxy import upstream
from gateway.proxy.forwarder import upstream_errors
from gateway.store.boundary import store_errors


def subclasses(cls: type[BaseException]) -> list[type[BaseException]]:
    """`cls` and every class derived from it, however deep."""
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(subclasses(sub))
    return found


def instance(kind: type[BaseException]) -> BaseException:
    try:
        return kind()
    except TypeError:
        return kind.__new__(kind)  # only the type matters to the mapping


def raise_in(block: object, error: BaseException) -> BaseException:
    try:
        with block:  # type: ignore[attr-defined]
            raise error
    except BaseException as exc:
        return exc
    raise AssertionError("the block swallowed the error")


REDIS_ERRORS = [
    *subclasses(redis.exceptions.RedisError),
    *subclasses(ConnectionError),
    OSError,
    asyncio.TimeoutError,
]


@pytest.mark.parametrize("kind", REDIS_ERRORS, ids=lambda k: k.__name__)
def test_every_redis_error_is_store_unavailable(kind: type[BaseException]) -> None:
    mapped = raise_in(store_errors("test"), instance(kind))
    assert isinstance(mapped, StoreUnavailable), kind
    assert "Error" not in mapped.description  # Redis's message never reaches a client


UPSTREAM_ERRORS = [
    *subclasses(upstream.UpstreamError),
    *subclasses(aiohttp.ClientError),
    asyncio.TimeoutError,
    ConnectionResetError,
]


@pytest.mark.parametrize("kind", UPSTREAM_ERRORS, ids=lambda k: k.__name__)
def test_every_upstream_client_error_is_502_or_504(kind: type[BaseException]) -> None:
    mapped = raise_in(upstream_errors(), instance(kind))
    assert isinstance(mapped, UpstreamUnavailable | UpstreamTimeout), kind


@pytest.mark.parametrize(
    "kind",
    [upstream.UpstreamTimeoutError, asyncio.TimeoutError, aiohttp.ServerTimeoutError],
    ids=lambda k: k.__name__,
)
def test_upstream_timeouts_are_504(kind: type[BaseException]) -> None:
    assert isinstance(raise_in(upstream_errors(), instance(kind)), UpstreamTimeout)


def raised_from(filename: str, error: BaseException) -> BaseException:
    """`error` as raised by code in `filename`: its traceback's innermost frame is there."""
    try:
        exec(compile("raise error", filename, "exec"), {"error": error})
    except BaseException as exc:
        return exc
    raise AssertionError("the error was not raised")


# Where a connection closed under redis-py lets transport internals through (see
# gateway.store.boundary.io_layer_origin): redis-py itself, asyncio's transports and
# streams, uvloop (whose Cython frames are named after its .pyx sources).
IO_LAYER_FILES = [
    os.path.join(os.path.dirname(redis.__file__), "asyncio", "connection.py"),
    os.path.join(os.path.dirname(asyncio.__file__), "selector_events.py"),
    "uvloop/handles/stream.pyx",
]
LEAKS = [
    AttributeError("'NoneType' object has no attribute 'write'"),  # the stream is gone
    TypeError("'NoneType' object is not subscriptable"),  # a torn-down reader's buffer
    RuntimeError("Event loop is closed"),
]


@pytest.mark.parametrize("filename", IO_LAYER_FILES, ids=os.path.basename)
@pytest.mark.parametrize("leak", LEAKS, ids=lambda e: type(e).__name__)
def test_transport_internals_leaking_from_the_io_layers_are_store_unavailable(
    filename: str, leak: BaseException
) -> None:
    mapped = raise_in(store_errors("test"), raised_from(filename, leak))
    assert isinstance(mapped, StoreUnavailable)
    assert "NoneType" not in mapped.description


@pytest.mark.parametrize("new_loop", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_a_closed_event_loop_raising_in_its_own_code_is_store_unavailable(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    loop = new_loop()
    loop.close()
    try:
        loop.call_soon(print)
    except RuntimeError as exc:  # "Event loop is closed", raised inside the loop's code
        closed: BaseException = exc
    assert isinstance(raise_in(store_errors("test"), closed), StoreUnavailable)


@pytest.mark.parametrize("kind", [AttributeError, TypeError, RuntimeError])
def test_the_same_errors_from_the_gateways_own_code_are_not_hidden(
    kind: type[BaseException],
) -> None:
    assert type(raise_in(store_errors("test"), kind("a bug"))) is kind


def test_other_errors_pass_through_both_boundaries() -> None:
    assert type(raise_in(store_errors("test"), KeyError("x"))) is KeyError
    assert type(raise_in(upstream_errors(), KeyError("x"))) is KeyError
