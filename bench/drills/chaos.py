"""A fault drill: the gateway under steady load while Redis is paused, killed and restarted,
and while the upstream refuses, stalls and resets connections; then an upstream pool of three
targets while one is killed and another stalled (bench/drills/pool_faults.py).

    python -m bench.drills.chaos              # make chaos: phases of 6 s
    python -m bench.drills.chaos --quick      # phases of 3 s (the harness check)
    python -m bench.drills.chaos --pool-only  # the pool's phases alone

Per phase it prints the proxied requests served, the 5xx answers by code, what the refresh
chains saw (clients refreshing their sessions every 20 ms, retrying after a 503 as the protocol
says), sessions lost (chains whose refresh token stopped working) and, after Redis returns,
how long until refreshes succeed again. Everything runs on 127.0.0.1 on free ports and is
stopped on exit; every wait is bounded. Results go to bench/results/chaos-*.json and
chaos-latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.drills.pool_faults import pool_drill
from bench.drills.wrk_load import wrk_tally
from gateway.authserver.credentials import hash_password
from gateway.tokens.keys import generate_key_material, write_secret_file
from tests.support.processes import clean_env, free_port, stop_processes, wait_for_port
from tests.support.redis_servers import spawn_redis

RESULTS = Path(__file__).resolve().parents[1] / "results"  # bench/results, beside the benchmark's

USER, PASSWORD = "chaos", "chaos-password"
GRACE = 10  # tokens.refresh_reuse_grace, seconds
CHAINS = 16
REFRESH_EVERY = 0.02  # seconds between a chain's refreshes: some are always in flight


class ChaosError(Exception):
    """A clear reason the drill cannot run."""


# ---- an upstream that can be told to misbehave ---------------------------------------------


class Upstream:
    """A small JSON upstream; `mode` makes it answer, stall or reset, `stop()` refuses."""

    def __init__(self, port: int):
        self.port = port
        self.mode = "ok"
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "stall":
            await asyncio.sleep(3600)
        if self.mode == "reset" and request.transport is not None:
            request.transport.abort()
        return web.json_response({"ok": True})


# ---- refresh chains: clients that keep their sessions alive --------------------------------


@dataclass
class Chains:
    base: str
    refresh_tokens: list[str | None] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    last_success: float = 0.0

    async def login(self, session: aiohttp.ClientSession) -> None:
        for n in range(CHAINS):
            body = {"username": USER, "password": PASSWORD, "device_id": f"d{n}"}
            async with session.post(f"{self.base}/auth/login", json=body) as resp:
                if resp.status != 200:
                    raise ChaosError(f"login failed: {resp.status} {await resp.text()}")
                self.refresh_tokens.append((await resp.json())["refresh_token"])

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._chain(session, n, stop) for n in range(CHAINS)))

    async def _chain(self, session: aiohttp.ClientSession, n: int, stop: asyncio.Event) -> None:
        while not stop.is_set() and self.refresh_tokens[n] is not None:
            token = self.refresh_tokens[n]
            try:
                async with session.post(
                    f"{self.base}/auth/refresh",
                    json={"refresh_token": token},
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:
                    status, body = resp.status, await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.outcomes[f"client error {type(exc).__name__}"] += 1
            else:
                if status == 200:
                    self.refresh_tokens[n] = body["refresh_token"]
                    self.outcomes["200"] += 1
                    self.last_success = time.monotonic()
                elif status == 503:
                    self.outcomes["503 (retried)"] += 1  # keep the token, try again later
                else:
                    self.outcomes[f"{status} {body.get('error')}"] += 1
                    self.refresh_tokens[n] = None  # this session is lost
            await asyncio.sleep(REFRESH_EVERY)

    @property
    def lost(self) -> int:
        return sum(1 for token in self.refresh_tokens if token is None)


# ---- the drill ----------------------------------------------------------------------------


@dataclass
class Stack:
    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        stop_processes(self.processes)


def with_signal(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.poll() is None:
        os.kill(process.pid, signum)


def gateway_config(workdir: Path, redis_port: int, upstream_port: int) -> Path:
    key = workdir / "signing.pem"
    if not key.exists():
        write_secret_file(key, generate_key_material("EdDSA"))
    users = workdir / "users.json"
    users.write_text(
        json.dumps({"users": {USER: {"password_hash": hash_password(PASSWORD), "roles": ["u"]}}})
    )
    config = {
        "environment": "production",
        "listen": {"port": free_port()},
        "admin": {"port": free_port()},
        "redis": {
            "url": f"redis://127.0.0.1:{redis_port}/0",
            "connect_timeout": 0.5,
            "socket_timeout": 0.5,
        },
        "keys": {"active": "k", "items": [{"kid": "k", "private_key_file": str(key)}]},
        "tokens": {"access_ttl": 600, "refresh_reuse_grace": GRACE},
        "auth": {
            "users_file": str(users),
            "rate_limits": {"per_ip": {"limit": 100_000, "window": 60}},
        },
        "revocation": {"max_staleness": 30, "fail_mode": "closed"},
        "logging": {"format": "json", "access_log": False, "level": "WARNING"},
        "proxy": {"read_timeout": 1.5, "connect_timeout": 1.0},
        "routes": [{"prefix": "/", "upstream": f"http://127.0.0.1:{upstream_port}"}],
    }
    path = workdir / "gateway.json"
    path.write_text(json.dumps(config))
    return path


async def wrk_phase(wrk: str, base: str, token: str, seconds: float, workdir: Path) -> Counter[int]:
    tally = await wrk_tally(
        wrk, f"{base}/api/items", token, seconds, workdir, threads=1, connections=8
    )
    return tally.statuses


@dataclass
class Phase:
    name: str
    statuses: Counter[int]
    refreshes: Counter[str]
    recovery_s: float | None = None

    def row(self) -> str:
        served = sum(v for k, v in self.statuses.items() if k < 500)
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()) if k >= 500)
        refreshes = ", ".join(f"{k}: {v}" for k, v in sorted(self.refreshes.items()))
        recovery = "" if self.recovery_s is None else f"{self.recovery_s:.2f} s"
        return f"| {self.name} | {served:,} | {errors or '—'} | {refreshes or '—'} | {recovery} |"


async def drill(args: argparse.Namespace) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise ChaosError("wrk is not installed (apt-get install wrk)")
    seconds = args.phase
    workdir = Path(tempfile.mkdtemp(prefix="gateway-chaos-"))
    stack = Stack(workdir)
    upstream = Upstream(free_port())
    try:
        redis_port = free_port()
        redis_dir = workdir / "redis"
        redis_dir.mkdir()
        redis = spawn_redis(redis_port, redis_dir, appendonly=True)
        stack.processes.append(redis)
        await upstream.start()
        config = gateway_config(workdir, redis_port, upstream.port)
        log = (workdir / "gateway.log").open("wb")
        env = clean_env()
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--workers", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        stack.processes.append(gateway)
        port = json.loads(config.read_text())["listen"]["port"]
        wait_for_port(port, gateway)
        base = f"http://127.0.0.1:{port}"
        phases: list[Phase] = []
        async with aiohttp.ClientSession() as session:
            chains = Chains(base)
            await chains.login(session)
            async with session.post(
                f"{base}/auth/login", json={"username": USER, "password": PASSWORD}
            ) as resp:
                access = (await resp.json())["access_token"]
            stop = asyncio.Event()
            refreshing = asyncio.ensure_future(chains.run(session, stop))

            async def phase(
                name: str, during: Any = None, after: Any = None, length: float = seconds
            ) -> Phase:
                before = Counter(chains.outcomes)
                load = asyncio.ensure_future(wrk_phase(wrk, base, access, length, workdir))
                if during is not None:
                    await during()
                statuses = await load
                recovery = await after() if after is not None else None
                result = Phase(name, statuses, chains.outcomes - before, recovery)
                phases.append(result)
                print(result.row(), flush=True)
                return result

            async def until_refreshes_work() -> float:
                """Seconds from Redis's return until a refresh chain succeeds again."""
                returned = time.monotonic()
                deadline = returned + 60
                while chains.last_success < returned and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                return chains.last_success - returned

            def redis_back() -> Any:
                async def resume() -> float:
                    with_signal(redis, signal.SIGCONT)
                    return await until_refreshes_work()

                return resume

            async def restart_redis() -> float:
                nonlocal redis
                redis = spawn_redis(redis_port, redis_dir, appendonly=True)
                stack.processes.append(redis)
                return await until_refreshes_work()

            async def set_mode(mode: str) -> None:
                upstream.mode = mode

            print("| phase | proxied requests served | 5xx | refreshes | recovery |")
            print("|---|---:|---|---|---|")
            await phase("steady")

            async def pause() -> None:
                await asyncio.sleep(0.5)
                with_signal(redis, signal.SIGSTOP)

            # Longer than the refresh grace window: a rotation Redis applies once it resumes
            # is answered 503 meanwhile, and its retry must not count as reuse.
            await phase("Redis paused", pause, redis_back(), length=max(seconds, GRACE + 2))

            async def kill() -> None:
                await asyncio.sleep(0.5)
                with_signal(redis, signal.SIGKILL)
                redis.wait()

            await phase("Redis killed", kill, restart_redis)
            await phase("after Redis returned")

            async def refuse() -> None:
                upstream.mode = "ok"
                await upstream.stop()

            await phase("upstream refuses", refuse, upstream.start)
            await phase("upstream stalls", lambda: set_mode("stall"))
            await phase("upstream resets", lambda: set_mode("reset"))
            upstream.mode = "ok"
            await phase("recovered")
            stop.set()
            await asyncio.wait_for(refreshing, 30)
        return {
            "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "phase_seconds": seconds,
            "chains": CHAINS,
            "sessions_lost": chains.lost,
            "phases": [
                {
                    "name": p.name,
                    "statuses": dict(p.statuses),
                    "refreshes": dict(p.refreshes),
                    "recovery_s": p.recovery_s,
                }
                for p in phases
            ],
            "table": [p.row() for p in phases],
        }
    finally:
        await upstream.stop()
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def pool_report(pool: dict[str, Any]) -> list[str]:
    return [
        "",
        f"Upstream pool of three targets, phases of {pool['phase_seconds']} s under wrk -c4 GETs "
        "and wrk -c4 POSTs at once (one target killed, another stalled, both brought back):",
        "",
        *pool["table"],
        "",
        *pool["summary"],
    ]


def report(result: dict[str, Any]) -> str:
    if "phases" not in result:  # --pool-only
        return (
            "\n".join([f"Fault drill, {result['measured_at']}.", *pool_report(result["pool"])])
            + "\n"
        )
    five_xx: Counter[int] = Counter()
    for p in result["phases"]:
        for status, count in p["statuses"].items():
            if int(status) >= 500:
                five_xx[int(status)] += count
    lines = [
        f"Fault drill, {result['measured_at']}: phases of {result['phase_seconds']} s under "
        f"wrk -c8, {result['chains']} refresh chains (each refreshing every 20 ms, several "
        "always in flight).",
        "",
        "| phase | proxied requests served | 5xx | refreshes | recovery |",
        "|---|---:|---|---|---|",
        *result["table"],
        "",
        f"* Sessions lost: {result['sessions_lost']} of {result['chains']}.",
        "* 5xx over the drill: " + (", ".join(f"{k}: {v}" for k, v in sorted(five_xx.items()))),
    ]
    if "pool" in result:
        lines += pool_report(result["pool"])
    return "\n".join(lines) + "\n"


async def run_pool(args: argparse.Namespace) -> dict[str, Any]:
    """The pool's phases, as a result entry."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise ChaosError("wrk is not installed (apt-get install wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="gateway-pool-"))
    print("\nUpstream pool of three targets:", flush=True)
    try:
        pool = await pool_drill(wrk, workdir, args.phase)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"phase_seconds": args.phase, **pool.as_dict(), "summary": pool.summary()}


async def everything(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {} if args.pool_only else await drill(args)
    result.setdefault("measured_at", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    result["pool"] = await run_pool(args)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="phases of 3 s")
    parser.add_argument("--phase", type=float, default=6.0, help="seconds per phase")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--pool-only", action="store_true", help="only the upstream pool's phases")
    args = parser.parse_args(argv)
    if args.quick:
        args.phase = 3.0
    try:
        result = asyncio.run(everything(args))
    except ChaosError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    text = report(result)
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"chaos-{stamp}.json").write_text(json.dumps(result, indent=2))
    (args.out / "chaos-latest.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
