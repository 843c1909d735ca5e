"""SIGTERM drains: in-flight requests finish (up to proxy.drain_timeout), then the process exits."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

import aiohttp
import pytest

from tests.support.gateway_client import GatewayProcessFactory
from tests.support.recording_upstream import Upstream
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow  # starts gateway processes and waits for drains


async def test_sigterm_lets_a_slow_response_finish(
    gateway_process: GatewayProcessFactory, upstream: Upstream
) -> None:
    process, base = await gateway_process(drain_timeout=10)
    async with aiohttp.ClientSession() as session:
        slow = asyncio.ensure_future(session.get(f"{base}/slow?s=1"))
        await eventually(lambda: reached(upstream, "/slow"), what="the request is in flight")
        process.send_signal(signal.SIGTERM)
        resp = await slow
        assert resp.status == 200
        assert (await resp.json())["path"] == "/slow"
        with pytest.raises(aiohttp.ClientError):  # no longer accepting
            await session.get(f"{base}/healthz")
    assert await asyncio.to_thread(process.wait, 15) == 0


async def test_sigterm_cuts_a_slow_request_at_the_drain_timeout(
    gateway_process: GatewayProcessFactory, upstream: Upstream
) -> None:
    process, base = await gateway_process(drain_timeout=0.5)
    async with aiohttp.ClientSession() as session:
        slow = asyncio.ensure_future(session.get(f"{base}/slow?s=5"))
        await eventually(lambda: reached(upstream, "/slow"), what="the request is in flight")
        process.send_signal(signal.SIGTERM)
        with pytest.raises(aiohttp.ClientError):  # cut at the drain timeout, never a fake 200
            await slow
    assert await asyncio.to_thread(process.wait, 15) == 0


def reached(upstream: Upstream, path: str) -> bool:
    return any(r.path == path for r in upstream.received)


@dataclass
class SlowReader:
    """A client reading a body slowly: a pause once per MiB (paced by bytes, not by reads:
    under load reads return smaller pieces, and pacing per read would stretch the download
    past the drain)."""

    pause: float
    received: int = 0

    async def read(self, resp: aiohttp.ClientResponse) -> int:
        paced = 0
        async for chunk in resp.content.iter_chunked(1 << 20):
            self.received += len(chunk)
            if self.received - paced >= 1 << 20:
                paced = self.received
                await asyncio.sleep(self.pause)
        return self.received


async def test_sigterm_lets_a_streaming_download_finish(
    gateway_process: GatewayProcessFactory,
) -> None:
    process, base = await gateway_process(drain_timeout=20)
    size = 32 << 20
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/download?size={size}") as resp,
    ):
        assert resp.status == 200
        reader = SlowReader(pause=0.05)
        reading = asyncio.ensure_future(reader.read(resp))
        await eventually(lambda: reader.received > 0, what="the body is arriving")
        process.send_signal(signal.SIGTERM)
        assert await reading == size
    assert await asyncio.to_thread(process.wait, 30) == 0


async def test_sigterm_cuts_a_streaming_download_cleanly_at_the_drain_timeout(
    gateway_process: GatewayProcessFactory,
) -> None:
    process, base = await gateway_process(drain_timeout=0.5)
    size = 256 << 20
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/download?size={size}") as resp,
    ):
        assert resp.status == 200 and resp.content_length == size
        reader = SlowReader(pause=0.05)
        reading = asyncio.ensure_future(reader.read(resp))
        await eventually(lambda: reader.received > 0, what="the body is arriving")
        process.send_signal(signal.SIGTERM)
        # cut short of the declared length: the client sees an error, never a short success
        with pytest.raises(aiohttp.ClientPayloadError):
            await reading
    assert await asyncio.to_thread(process.wait, 15) == 0
