"""`gateway serve --workers N`: N processes on one port, metrics added up, clean refusal."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support.gateway_client import GatewayProcessFactory
from tests.support.processes import clean_env, free_port
from tests.support.redis_servers import RedisServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow  # starts gateway processes


def test_several_workers_refuse_the_in_memory_store(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"redis": {"url": "memory://"}, "listen": {"port": free_port()}}))
    env = clean_env()
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--workers 2 needs a shared Redis" in result.stderr
    assert "memory://" in result.stderr


def _series(metrics: str, name: str) -> dict[str, float]:
    found = {}
    for line in metrics.splitlines():
        match = re.match(rf"^{name}(\{{[^}}]*\}})? (\S+)$", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


async def test_two_workers_share_the_port_and_add_up_metrics(
    gateway_process: GatewayProcessFactory, redis_server: RedisServer
) -> None:
    process, base = await gateway_process("--workers", "2", redis_url=redis_server.url)
    sent = 60
    connector = aiohttp.TCPConnector(force_close=True)  # new connections spread over workers
    async with aiohttp.ClientSession(connector=connector) as session:
        # /healthz answers as soon as the first worker listens; wait for the second one.
        await eventually(lambda: two_workers(session, base), what="both workers started")
        for _ in range(sent):
            async with session.get(f"{base}/public-thing") as resp:
                assert resp.status == 200
        pids: set[str] = set()
        totals: set[float] = set()
        for _ in range(20):  # whichever worker answers the scrape reports the same totals
            async with session.get(f"{base}/metrics") as resp:
                text = await resp.text()
            for labels in _series(text, "gateway_worker_start_time_seconds"):
                pids.update(re.findall(r'pid="(\d+)"', labels))
            proxied = _series(text, "gateway_requests_total")
            totals.add(sum(v for key, v in proxied.items() if 'route="gateway"' not in key))
    assert len(pids) == 2  # both workers alive and reporting
    assert totals == {sent}  # every worker's counts, not just the answering one's
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 30) == 0


async def test_workers_exit_when_the_supervisor_is_killed(
    gateway_process: GatewayProcessFactory, redis_server: RedisServer
) -> None:
    process, base = await gateway_process("--workers", "2", redis_url=redis_server.url)
    async with aiohttp.ClientSession() as session:
        await eventually(lambda: two_workers(session, base), what="both workers started")
        pids = await worker_pids(session, base)
    process.kill()  # SIGKILL: the supervisor cannot pass anything on
    await asyncio.to_thread(process.wait, 10)
    await eventually(
        lambda: not any(_running(pid) for pid in pids), 15, what="the orphaned workers exit"
    )


async def worker_pids(session: aiohttp.ClientSession, base: str) -> set[int]:
    """The workers whose start time the answering worker's /metrics reports."""
    async with session.get(f"{base}/metrics") as resp:
        started = _series(await resp.text(), "gateway_worker_start_time_seconds")
    return {int(p) for labels in started for p in re.findall(r'pid="(\d+)"', labels)}


async def two_workers(session: aiohttp.ClientSession, base: str) -> bool:
    return len(await worker_pids(session, base)) == 2


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited orphan waits for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
