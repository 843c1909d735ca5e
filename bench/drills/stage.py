"""The failover drill's stage: gateway processes on one Redis, the backend behind them, their
configuration, and probes of their readiness and revocation view reloads while the drill runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web
from argon2 import PasswordHasher

from bench.drills.traffic import ADMIN_KEY, PASSWORD, Instance
from gateway.admin.apikeys import admin_key_hash
from gateway.tokens.keys import generate_key_material, write_secret_file
from tests.support.processes import clean_env, free_port
from tests.support.waiting import eventually

VICTIMS: Final = 1000  # users the drill's revocations log in and revoke, one each
RELOADS: Final = re.compile(r"^gateway_revocation_reloads_total (\S+)$", re.MULTILINE)


class Gateways:
    """`gateway serve` processes on one Redis; each logs to its own file."""

    def __init__(self, workdir: Path, base: dict[str, Any]):
        self._workdir = workdir
        self._base = base
        self._processes: list[subprocess.Popen[bytes]] = []

    async def start(self, name: str) -> Instance:
        port, admin_port = free_port(), free_port()
        config = {**self._base, "listen": {"port": port, "workers": 1}}
        config["admin"] = {**self._base["admin"], "port": admin_port}
        path = self._workdir / f"gateway-{name}.yaml"
        path.write_text(json.dumps(config))
        env = clean_env()
        with (self._workdir / f"gateway-{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--config", str(path)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self._processes.append(process)
        instance = Instance(name, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}")
        async with aiohttp.ClientSession() as http:

            async def started() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"gateway {name}: the process exited ({process.returncode})")
                return await ready(http, instance)

            await eventually(started, 60, what=f"gateway {name} ready")
        return instance

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def ready(http: aiohttp.ClientSession, instance: Instance) -> bool:
    try:
        async with http.get(f"{instance.base}/readyz", timeout=aiohttp.ClientTimeout(2)) as resp:
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def reloads(http: aiohttp.ClientSession, instance: Instance) -> int:
    async with http.get(f"{instance.base}/metrics", timeout=aiohttp.ClientTimeout(5)) as resp:
        found = RELOADS.search(await resp.text())
    return int(float(found.group(1))) if found else 0


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[str]:
    """A tiny backend behind the gateways' protected route."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"user": request.headers.get("X-User-Id")})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def gateway_config(
    workdir: Path, url: str, backend: str, acks: int, sessions: int
) -> dict[str, Any]:
    """Production-like settings with short Redis deadlines and cheap password hashes."""
    key = workdir / "signing.pem"
    if not key.exists():
        write_secret_file(key, generate_key_material("EdDSA"))
    hashed = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    names = [f"user-{i}" for i in range(sessions)] + ["login-user"]
    names += [f"victim-{j}" for j in range(VICTIMS)]
    users = workdir / "users.json"
    users.write_text(json.dumps({"users": {n: {"password_hash": hashed} for n in names}}))
    return {
        "environment": "production",
        "admin": {"keys": [{"id": "drill", "hash": admin_key_hash(ADMIN_KEY)}]},
        "redis": {
            "url": url,
            "connect_timeout": 0.5,
            "socket_timeout": 1.0,
            "min_replicas_ack": acks,
            "replica_ack_timeout": 0.5,
        },
        "keys": {"active": "drill", "items": [{"kid": "drill", "private_key_file": str(key)}]},
        "auth": {
            "users_file": str(users),
            "rate_limits": {
                "per_ip": {"limit": 1_000_000, "window": 60},
                "failures_per_username": {"limit": 1_000_000, "window": 60},
            },
        },
        "revocation": {"check_interval": 0.5, "max_staleness": 30},
        "logging": {"format": "json", "level": "INFO", "access_log": False},
        "routes": [{"prefix": "/", "upstream": backend, "policy": "required"}],
    }


class Watch:
    """Polls each instance's /readyz and view reload count every 0.1 s while the drill runs."""

    def __init__(self, http: aiohttp.ClientSession, instances: list[Instance]):
        self._http = http
        self._instances = instances
        self.ready: dict[str, list[tuple[float, bool]]] = {i.name: [] for i in instances}
        self.reloads: dict[str, list[tuple[float, int]]] = {i.name: [] for i in instances}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for instance in self._instances:
                now = time.monotonic()
                self.ready[instance.name].append((now, await ready(self._http, instance)))
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    count = await reloads(self._http, instance)
                    self.reloads[instance.name].append((now, count))
            await asyncio.sleep(0.1)

    def count_at(self, name: str, moment: float) -> int:
        """The instance's reload count last seen before `moment`."""
        seen = [count for when, count in self.reloads[name] if when <= moment]
        return seen[-1] if seen else 0

    def reloaded_after(self, name: str, moment: float) -> float | None:
        """When the instance's view was first seen reloaded after `moment`."""
        base = self.count_at(name, moment)
        return next((w for w, c in self.reloads[name] if w > moment and c > base), None)

    def unready(self, name: str, moment: float) -> tuple[float, float] | None:
        """The first stretch after `moment` where /readyz was not 200: (from, to)."""
        seen = [(w, ok) for w, ok in self.ready[name] if w >= moment]
        down = next((w for w, ok in seen if not ok), None)
        if down is None:
            return None
        up = next((w for w, ok in seen if w > down and ok), seen[-1][0])
        return down, up
