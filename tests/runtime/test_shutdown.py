"""SIGTERM drains: in-flight requests finish (up to proxy.drain_timeout), then the process exits."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest

from tests.support.gateway_client import GatewayProcessFactory

pytestmark = pytest.mark.slow  # starts gateway processes and waits for drains


async def test_sigterm_lets_a_slow_response_finish(gateway_process: GatewayProcessFactory) -> None:
    process, base = await gateway_process(drain_timeout=10)
    async with aiohttp.ClientSession() as session:
        slow = asyncio.ensure_future(session.get(f"{base}/slow?s=1"))
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        resp = await slow
        assert resp.status == 200
        assert (await resp.json())["path"] == "/slow"
        with pytest.raises(aiohttp.ClientError):  # no longer accepting
            await session.get(f"{base}/healthz")
    assert await asyncio.to_thread(process.wait, 15) == 0


async def test_sigterm_cuts_a_slow_request_at_the_drain_timeout(
    gateway_process: GatewayProcessFactory,
) -> None:
    process, base = await gateway_process(drain_timeout=0.5)
    async with aiohttp.ClientSession() as session:
        slow = asyncio.ensure_future(session.get(f"{base}/slow?s=5"))
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        with pytest.raises(aiohttp.ClientError):  # cut at the drain timeout, never a fake 200
            await slow
    assert await asyncio.to_thread(process.wait, 15) == 0


async def _read_slowly(resp: aiohttp.ClientResponse, pause: float) -> int:
    """Read the body, pausing once per MiB (paced by bytes, not by reads: under load reads
    return smaller pieces, and pacing per read would stretch the download past the drain)."""
    received = paced = 0
    async for chunk in resp.content.iter_chunked(1 << 20):
        received += len(chunk)
        if received - paced >= 1 << 20:
            paced = received
            await asyncio.sleep(pause)
    return received


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
        reading = asyncio.ensure_future(_read_slowly(resp, 0.05))
        await asyncio.sleep(0.3)
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
        reading = asyncio.ensure_future(_read_slowly(resp, 0.05))
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        # cut short of the declared length: the client sees an error, never a short success
        with pytest.raises(aiohttp.ClientPayloadError):
            await reading
    assert await asyncio.to_thread(process.wait, 15) == 0
