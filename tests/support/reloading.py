"""A gateway served in this process as `gateway serve` serves it (listeners on free loopback
ports, the Resources started once, reloads of its configuration file), with the file the
tests rewrite between reloads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway.admin.reload_endpoint import ReloadOutcome
from gateway.config import load_settings
from gateway.runtime.serve import Gateway, gateway_running
from tests.support.admin_access import ADMIN_KEYS
from tests.support.gateway_settings import auth_section
from tests.support.jwt_tokens import AUDIENCE, ISSUER
from tests.support.processes import clean_env, free_port
from tests.support.waiting import eventually


def reload_config(
    key_files: dict[str, Path], upstream_url: str, users_file: Path, **sections: Any
) -> dict[str, Any]:
    """A configuration (as the YAML file holds it) on free ports and the in-process store:
    the tests' EdDSA signer, the demo users, the test admin key, one protected route /api/
    and a public one /public/; `sections` replace whole sections."""
    config: dict[str, Any] = {
        "environment": "development",
        "listen": {"port": 0},
        "admin": {"port": 0, **ADMIN_KEYS},
        "tokens": {"issuer": ISSUER, "audience": AUDIENCE},
        "keys": {
            "active": "ed1",
            "items": [{"kid": "ed1", "alg": "EdDSA", "private_key_file": str(key_files["EdDSA"])}],
        },
        "auth": auth_section(users_file),
        "logging": {"format": "text", "access_log": False},
        "routes": [
            {"prefix": "/public/", "upstream": upstream_url, "policy": "public"},
            {"prefix": "/api/", "upstream": upstream_url},
        ],
    }
    config.update(sections)
    return config


@dataclass
class ReloadableGateway:
    """The running gateway, its configuration file, and a client session for it."""

    gateway: Gateway
    config: Path
    http: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.gateway.public.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.gateway.admin.port}"

    def write(self, config: dict[str, Any] | str) -> None:
        """Replace the configuration file (JSON is YAML); a string is written as it is."""
        text = config if isinstance(config, str) else json.dumps(config)
        self.config.write_text(text)

    async def reload(self) -> ReloadOutcome:
        """What SIGHUP does: reload and wait for the outcome."""
        return await self.gateway.reloader.reload()

    async def status(self, path: str, **kwargs: Any) -> int:
        """The status of GET `path` on the public listener."""
        async with self.http.get(f"{self.base}{path}", **kwargs) as resp:
            await resp.read()
            return resp.status


@asynccontextmanager
async def reloadable_gateway(
    config: dict[str, Any], path: Path
) -> AsyncIterator[ReloadableGateway]:
    """The gateway from `config`, written to `path`, served until the block ends."""
    path.write_text(json.dumps(config))
    settings = load_settings(path)
    async with gateway_running(settings, config=path) as gateway, aiohttp.ClientSession() as http:
        yield ReloadableGateway(gateway, path, http)


# ---- `gateway serve` in a child process -----------------------------------------------------


SERVE = (sys.executable, "-m", "gateway", "serve")


@dataclass
class ServedGateway:
    """`gateway serve` in a child process, with its configuration file, pid file and log."""

    process: subprocess.Popen[bytes]
    config: Path
    pid_file: Path
    log: Path
    base: str
    admin: str
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, config: dict[str, Any] | str) -> None:
        self.config.write_text(config if isinstance(config, str) else json.dumps(config))


def served_config(config: dict[str, Any]) -> dict[str, Any]:
    """`config` on free ports (a child process cannot report the ports it was given)."""
    return {
        **config,
        "listen": {**config.get("listen", {}), "port": free_port()},
        "admin": {**config.get("admin", {}), "port": free_port()},
    }


async def start_served(
    config: dict[str, Any], workdir: Path, *args: str, name: str = "gateway"
) -> ServedGateway:
    """`gateway serve --config … --pid-file … ARGS`, returned once /healthz answers (the
    caller stops it: `stop_served`)."""
    path = workdir / f"{name}.yaml"
    path.write_text(json.dumps(config))
    pid_file = workdir / f"{name}.pid"
    log = workdir / f"{name}.log"
    with log.open("wb") as log_file:  # a file: an unread pipe would block the workers' logs
        process = subprocess.Popen(
            [*SERVE, "--config", str(path), "--pid-file", str(pid_file), *args],
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    base = f"http://127.0.0.1:{config['listen']['port']}"
    served = ServedGateway(
        process, path, pid_file, log, base, f"http://127.0.0.1:{config['admin']['port']}"
    )
    async with aiohttp.ClientSession() as http:

        async def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"gateway serve exited with {process.returncode}")
            try:
                async with http.get(f"{base}/healthz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(healthy, 30, what=f"{base}/healthz answers 200")
    return served


def stop_served(served: ServedGateway) -> None:
    if served.process.poll() is None:
        served.process.kill()
    served.process.wait()


SERIES = re.compile(r"^(gateway_[a-z_]+)(?:\{([^}]*)\})? (\S+)$", re.MULTILINE)


async def scrape(http: aiohttp.ClientSession, base: str) -> dict[tuple[str, str], float]:
    """/metrics as {(series name, labels): value}."""
    async with http.get(f"{base}/metrics", timeout=aiohttp.ClientTimeout(5)) as resp:
        text = await resp.text()
    return {(m[1], m[2] or ""): float(m[3]) for m in SERIES.finditer(text)}


def per_worker(metrics: dict[tuple[str, str], float], name: str) -> dict[str, float]:
    """A per-worker gauge (`pid` label under --workers) by pid."""
    found = {}
    for (series, labels), value in metrics.items():
        pid = re.search(r'pid="(\d+)"', labels)
        if series == name:
            found[pid.group(1) if pid else ""] = value
    return found
