"""Foreign errors are translated once, at their boundary, and none is left unmapped: every
exception class redis-py or the upstream clients can raise becomes the gateway's own."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import redis.asyncio.connection
import redis.exceptions

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


async def test_transport_internals_leaking_from_redis_py_are_store_unavailable() -> None:
    # what redis-py lets through when a connection is closed under it: its stream is gone
    connection = redis.asyncio.connection.Connection()
    connection._writer = None
    try:
        await connection._send_packed_command([b"PING"])
    except AttributeError as exc:
        leaked: BaseException = exc
    assert isinstance(raise_in(store_errors("test"), leaked), StoreUnavailable)
    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon(print)
    except RuntimeError as exc:  # "Event loop is closed", raised inside asyncio
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
