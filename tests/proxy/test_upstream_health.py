"""Active health checks of a pool's targets: a target failing its check leaves the rotation
until a check passes; the checking loops belong to their configuration (a reload replaces
them, a stop ends them: none is left running). Per-target metrics and the console's status
page show the targets."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import fakeredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import Settings
from gateway.proxy.health_checks import HealthChecks
from tests.support.admin_access import ADMIN_KEYS, CONSOLE, HTML, console_sign_in
from tests.support.faulty_upstream import Fault, FaultyUpstream
from tests.support.gateway_client import GatewayFactory, GatewayPairFactory
from tests.support.processes import free_port
from tests.support.recording_upstream import RecordingUpstreams, Upstream
from tests.support.reloading import reload_config, reloadable_gateway
from tests.support.waiting import eventually


class Switchable:
    """A target whose health path answers 200 or 503 as the test says; every other path 200."""

    def __init__(self) -> None:
        self.healthy = True
        self.served = 0
        self.checks = 0
        self.url = ""
        app = web.Application()
        app.router.add_get("/healthz", self._health)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self.server = TestServer(app, host="127.0.0.1")

    async def _health(self, _request: web.Request) -> web.Response:
        self.checks += 1
        return web.Response(status=200 if self.healthy else 503)

    async def _serve(self, _request: web.Request) -> web.Response:
        self.served += 1
        return web.json_response({"ok": True})

    async def __aenter__(self) -> Switchable:
        await self.server.start_server(access_log=None)
        self.url = f"http://127.0.0.1:{self.server.port}"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.server.close()


def health_loops() -> int:
    """Health checking loops running in this event loop now."""
    return sum(
        getattr(t.get_coro(), "__qualname__", "") == f"{HealthChecks.__name__}._loop"
        for t in asyncio.all_tasks()
        if not t.done()
    )


async def test_a_target_failing_its_check_leaves_the_rotation_until_one_passes(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstreams: RecordingUpstreams,
) -> None:
    steady = await upstreams.start()
    async with Switchable() as flaky:
        settings = settings_factory(
            upstreams={
                "api": {
                    "targets": [flaky.url, steady.url],
                    "health": {"path": "/healthz", "interval": 0.05, "timeout": 1},
                }
            },
            routes=[{"prefix": "/", "upstream": "api", "policy": "public"}],
        )
        client = await gateway_factory(settings)

        async def state() -> str:
            ready = await (await client.get("/readyz")).json()
            return str(ready["upstreams"]["api"]["targets"][0]["state"])

        await eventually(lambda: flaky.checks > 0, what="a first check")
        flaky.healthy = False

        async def out() -> bool:
            return await state() == "unhealthy"

        await eventually(out, what="the failing target out of rotation")
        served = flaky.served
        for _ in range(4):
            assert (await client.get("/x")).status == 200
        assert flaky.served == served  # every request went to the healthy target
        metrics = await (await client.get("/metrics")).text()
        label = f'target="{flaky.url}",upstream="api"'
        assert f'gateway_upstream_target_state{{state="unhealthy",{label}}} 1.0' in metrics
        assert f"gateway_upstream_target_in_flight{{{label}}} 0.0" in metrics

        flaky.healthy = True

        async def back() -> bool:
            return await state() == "up"

        await eventually(back, what="the target back after a passing check")
        for _ in range(4):
            assert (await client.get("/x")).status == 200
        assert flaky.served > served


async def test_reloads_replace_the_checks_and_a_stop_ends_them(
    key_files: dict[str, Path], upstream: Upstream, users_file: Path, tmp_path: Path
) -> None:
    def config(*, checked: bool, interval: float = 0.05) -> dict[str, Any]:
        pool: dict[str, Any] = {"targets": [upstream.url]}
        if checked:
            pool["health"] = {"path": "/healthz", "interval": interval}
        return reload_config(
            key_files,
            upstream.url,
            users_file,
            upstreams={"api": pool, "other": pool},
            routes=[
                {"prefix": "/api/", "upstream": "api", "policy": "public"},
                {"prefix": "/other/", "upstream": "other", "policy": "public"},
            ],
        )

    assert health_loops() == 0
    async with reloadable_gateway(config(checked=True), tmp_path / "gateway.yaml") as gw:
        assert health_loops() == 2  # one per checked pool
        await eventually(lambda: any(r.path == "/healthz" for r in upstream.received))
        for interval in (0.06, 0.07):
            gw.write(config(checked=True, interval=interval))
            assert (await gw.reload()).reloaded
            await eventually(lambda: health_loops() == 2, what="the retired loops stopped")
        gw.write(config(checked=False))
        assert (await gw.reload()).reloaded
        await eventually(lambda: health_loops() == 0, what="no loop without health settings")
        assert await gw.status("/api/x") == 200
        gw.write(config(checked=True))
        assert (await gw.reload()).reloaded
        assert health_loops() == 2
    assert health_loops() == 0  # the gateway stopped: nothing left running


async def test_the_consoles_status_page_shows_each_pools_targets(
    gateway_pair_factory: GatewayPairFactory,
    settings_factory: Callable[..., Settings],
    upstreams: RecordingUpstreams,
    fake_server: fakeredis.FakeServer,
) -> None:
    alive = await upstreams.start()
    dead = f"http://127.0.0.1:{free_port()}"
    settings = settings_factory(
        admin=ADMIN_KEYS,
        upstreams={"api": {"targets": [dead, alive.url], "max_in_flight": 50}},
        routes=[{"prefix": "/", "upstream": "api", "policy": "public"}],
    )
    public, admin = await gateway_pair_factory(
        settings, redis=fakeredis.FakeAsyncRedis(server=fake_server)
    )
    assert (await public.get("/x")).status == 200  # the dead target tried first, then out
    await console_sign_in(admin)
    page = await (await admin.get(CONSOLE, headers=HTML)).text()
    assert "Upstream api" in page and "1 of 2 in rotation, 0 in flight (cap 50)" in page
    table = page[page.index("upstream-targets") :]
    table = table[: table.index("</table>")]
    rows = re.findall(r'<tr( class="alert")?><th scope="row">([^<]+)</th><td[^>]*>([^<(]+)', table)
    assert [(bool(alert), url, state.strip()) for alert, url, state in rows] == [
        (True, dead, "backing off"),
        (False, alive.url, "up"),
    ]
    assert "cannot connect to the upstream" in page


async def test_a_check_that_takes_longer_than_its_timeout_fails(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstreams: RecordingUpstreams,
    faulty_upstream_factory: Callable[[Fault], Awaitable[FaultyUpstream]],
) -> None:
    stalled = await faulty_upstream_factory("stall")
    steady = await upstreams.start()
    settings = settings_factory(
        upstreams={
            "api": {
                "targets": [stalled.url, steady.url],
                "health": {"path": "/healthz", "interval": 0.05, "timeout": 0.1},
            }
        },
        routes=[{"prefix": "/", "upstream": "api", "policy": "public"}],
    )
    client = await gateway_factory(settings)

    async def timed_out() -> bool:
        ready = await (await client.get("/readyz")).json()
        target = ready["upstreams"]["api"]["targets"][0]
        return bool(target["state"] == "unhealthy") and target["last_error"] == (
            "health check timed out after 0.1 s"
        )

    await eventually(timed_out, what="the stalled target failing its checks")
    for _ in range(3):  # never sent to the stalled target (it would wait for read_timeout)
        assert (await client.post("/x", data=b"1")).status == 200
    assert [r.method for r in steady.received if r.path == "/x"] == ["POST"] * 3
