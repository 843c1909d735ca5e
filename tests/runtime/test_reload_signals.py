"""Reloads of a running `gateway serve`: SIGHUP, `gateway reload --pid-file`, POST /admin/reload,
in one process and under a supervisor with workers (each worker reloads; a worker restarted
afterwards starts with the reloaded configuration)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.admin_access import ADMIN
from tests.support.gateway_cli import run_cli
from tests.support.recording_upstream import Upstream
from tests.support.redis_servers import RedisServer
from tests.support.reloading import (
    ServedGateway,
    per_worker,
    reload_config,
    scrape,
    served_config,
    start_served,
    stop_served,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow  # starts gateway processes

Start = Callable[..., Awaitable[ServedGateway]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Start]:
    started: list[ServedGateway] = []

    async def start(config: dict[str, Any], *args: str) -> ServedGateway:
        served = await start_served(config, tmp_path, *args)
        started.append(served)
        return served

    yield start
    for served in started:
        stop_served(served)


@pytest.fixture
def config(key_files: dict[str, Path], upstream: Upstream, users_file: Path) -> dict[str, Any]:
    return served_config(reload_config(key_files, upstream.url, users_file))


def with_route(config: dict[str, Any], prefix: str, upstream: Upstream) -> dict[str, Any]:
    route = {"prefix": prefix, "upstream": upstream.url, "policy": "public"}
    return {**config, "routes": [*config["routes"], route]}


async def status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as resp:
        return resp.status


async def test_one_process_reloads_on_sighup_and_gateway_reload(
    serve: Start, config: dict[str, Any], upstream: Upstream, tmp_path: Path
) -> None:
    served = await serve(config)
    assert int(served.pid_file.read_text()) == served.process.pid
    async with aiohttp.ClientSession() as http:
        served.write(with_route(config, "/one/", upstream))
        served.process.send_signal(signal.SIGHUP)
        await eventually(
            lambda: _answers(http, f"{served.base}/one/x", 200), 5, what="SIGHUP: /one/ served"
        )

        served.write(with_route(config, "/two/", upstream))
        result = run_cli("reload", "--pid-file", str(served.pid_file))
        assert result.returncode == 0, result.stderr
        assert f"pid {served.process.pid}" in result.stdout
        await eventually(lambda: _answers(http, f"{served.base}/two/x", 200), 5, what="/two/")

        # --config checks first, as check-config does: a broken file is never signalled
        served.write({**config, "tokens": {"access_ttl": 0}})
        result = run_cli(
            "reload", "--pid-file", str(served.pid_file), "--config", str(served.config)
        )
        assert result.returncode == 2
        assert "tokens.access_ttl" in result.stderr
        # without --config the gateway itself refuses it, and says so
        result = run_cli("reload", "--pid-file", str(served.pid_file))
        assert result.returncode == 0

        async def refused() -> bool:
            metrics = await scrape(http, served.base)
            return metrics[("gateway_config_reloads_total", 'outcome="refused"')] == 1

        await eventually(refused, 5, what="the broken configuration refused")
        metrics = await scrape(http, served.base)
        assert metrics[("gateway_config_reloads_total", 'outcome="ok"')] == 2
        assert await status(http, f"{served.base}/two/x") == 200  # still serving
    assert "configuration reload refused; configuration 3 keeps serving" in served.log.read_text()
    served.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(served.process.wait, 30) == 0
    assert not served.pid_file.exists()


def test_gateway_reload_refuses_what_is_no_gateway(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pid"
    result = run_cli("reload", "--pid-file", str(missing))
    assert result.returncode == 2
    assert "cannot read pid file" in result.stderr
    stale = tmp_path / "stale.pid"
    stale.write_text("999999999\n")
    result = run_cli("reload", "--pid-file", str(stale))
    assert result.returncode == 2
    assert "is stale" in result.stderr
    other = tmp_path / "other.pid"
    other.write_text(f"{os.getpid()}\n")  # pytest: running, and no gateway
    result = run_cli("reload", "--pid-file", str(other))
    assert result.returncode == 2
    assert "is not a gateway" in result.stderr


@pytest.mark.redis
async def test_every_worker_reloads_and_a_restarted_one_starts_reloaded(
    serve: Start, config: dict[str, Any], upstream: Upstream, redis_server: RedisServer
) -> None:
    config = {**config, "redis": {"url": redis_server.url}}
    served = await serve(config, "--workers", "2")
    fresh = aiohttp.TCPConnector(force_close=True)  # new connections spread over the workers
    async with aiohttp.ClientSession(connector=fresh) as http:

        async def generations() -> dict[str, float]:
            return per_worker(await scrape(http, served.base), "gateway_config_generation")

        async def every_worker_at(generation: int) -> bool:
            found = await generations()
            return len(found) == 2 and set(found.values()) == {generation}

        await eventually(lambda: every_worker_at(1), 30, what="both workers started")

        # SIGHUP to the supervisor: every worker reloads
        served.write(with_route(config, "/one/", upstream))
        served.process.send_signal(signal.SIGHUP)
        await eventually(lambda: every_worker_at(2), 5, what="both workers reloaded")
        for _ in range(10):
            assert await status(http, f"{served.base}/one/x") == 200

        # POST /admin/reload lands on one worker; it answers once its own reload is done
        served.write(with_route(config, "/two/", upstream))
        async with http.post(f"{served.admin}/admin/reload", headers=ADMIN) as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"reloaded": True, "generation": 3}
        await eventually(lambda: every_worker_at(3), 5, what="both workers at 3")

        served.write({**config, "keys": {"active": "nope", "items": []}})
        async with http.post(f"{served.admin}/admin/reload", headers=ADMIN) as resp:
            assert resp.status == 400
            body = await resp.json()
        assert body["error"] == "invalid_configuration"
        assert "keys.active" in body["error_description"]

        async def both_refused() -> bool:
            metrics = await scrape(http, served.base)
            return metrics[("gateway_config_reloads_total", 'outcome="refused"')] == 2

        await eventually(both_refused, 5, what="both workers refused it")
        assert set((await generations()).values()) == {3}

        # a worker that dies now is restarted with the last configuration that loaded (the
        # file is still broken: it could not start from that)
        before = set(await generations())
        os.kill(int(next(iter(before))), signal.SIGKILL)

        async def replaced() -> bool:
            found = await generations()
            return len(found) == 2 and len(set(found) - before) == 1

        await eventually(replaced, 30, what="the worker restarted")
        (newcomer,) = set(await generations()) - before

        async def newcomer_served() -> bool:
            for _ in range(10):  # whichever worker answers: the reloaded route table
                assert await status(http, f"{served.base}/two/x") == 200
            served_by = per_worker(await scrape(http, served.base), "gateway_worker_requests")
            return served_by.get(newcomer, 0) > 0  # (sampled every 5 s)

        await eventually(newcomer_served, 30, interval=0.5, what="the new worker serves")
    served.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(served.process.wait, 30) == 0


async def _answers(http: aiohttp.ClientSession, url: str, expected: int) -> bool:
    return await status(http, url) == expected
