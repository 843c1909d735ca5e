"""Reload under load: `gateway serve --workers 2` on a real redis-server under steady wrk load,
while its configuration is reloaded by SIGHUP ten times: each reload adds a route and a user,
three of them change the signing keys (a key published, then made the signer, then an old one
dropped), and one brings a broken users file, which must be refused while the previous
configuration keeps serving.

    python -m bench.drills.reload            # make reload-drill: a reload every 1.5 s
    python -m bench.drills.reload --quick    # a reload every 0.75 s (the harness check)

After each SIGHUP it measures how long until every worker serves the new configuration (both
workers report its generation and the new route answers), and checks what the reload changed:
the user logs in, the key is (or is no longer) in the JWKS, new tokens carry the new key id. It
prints a row per reload and wrk's counts: no request may fail. Everything runs on 127.0.0.1 on
free ports and is stopped on exit; every wait is bounded. Results go to
bench/results/reload-*.json and reload-latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web

from bench.drills.wrk_load import wrk_tally
from gateway.admin.apikeys import admin_key_hash
from gateway.authserver.credentials import hash_password
from gateway.tokens.keys import generate_key_material, write_secret_file
from tests.support.processes import clean_env, free_port, stop_processes, wait_for_port
from tests.support.redis_servers import spawn_redis

RESULTS = Path(__file__).resolve().parents[1] / "results"  # bench/results, beside the benchmark's

SERVE: Final = (sys.executable, "-m", "gateway", "serve")
WORKERS: Final = 2
RELOADS: Final = 10
BROKEN_AT: Final = 5  # this reload brings a users file that does not parse
PASSWORD: Final = "reload-drill-password"
ADMIN_KEY: Final = "gwadm_reload-drill-key"
NEW_CONFIG_DEADLINE: Final = 10.0  # seconds a reload may take before the drill gives up on it
SERIES: Final = re.compile(r'^(gateway_[a-z_]+)\{pid="(\d+)"\} (\S+)$', re.MULTILINE)
REFUSED: Final = re.compile(r'^gateway_config_reloads_total\{outcome="refused"\} (\S+)$', re.M)


class DrillError(Exception):
    """A clear reason the drill cannot run, or a reload that did not do what it should."""


@dataclass
class Row:
    """One reload: what it changed and how it went."""

    number: int
    change: str
    outcome: str  # "ok" or "refused"
    seconds: float  # SIGHUP → every worker serves it (or has refused it), as clients see it
    checks: list[str] = field(default_factory=list)
    # SIGHUP to the supervisor → each worker swapped it in (or refused it): the gateway's log
    in_workers: list[float] = field(default_factory=list)

    def line(self) -> str:
        checks = "; ".join(self.checks)
        workers = ", ".join(f"{s:.3f} s" for s in self.in_workers) or "—"
        return (
            f"| {self.number} | {self.change} | {self.outcome} | {self.seconds:.2f} s | "
            f"{workers} | {checks} |"
        )


@dataclass
class Report:
    rows: list[Row]
    statuses: Counter[int]
    socket_errors: dict[str, int]
    latency_ms: dict[str, float]  # wrk's p50, p99 and max
    baseline_ms: dict[str, float]  # the same without reloads, when measured
    wrk_seconds: float
    log: list[str]

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        """Answers other than 2xx, and requests that got no answer."""
        bad = sum(n for status, n in self.statuses.items() if not 200 <= status < 300)
        return bad + sum(self.socket_errors.values())


# ---- the stage ---------------------------------------------------------------------------------


async def upstream(port: int) -> web.AppRunner:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"user": request.headers.get("X-User-Id")})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


class Stage:
    """The configuration and the files it names, rewritten reload by reload."""

    def __init__(self, workdir: Path, redis_port: int, backend: str):
        self.workdir = workdir
        self.port, self.admin_port = free_port(), free_port()
        self.backend = backend
        self.redis_port = redis_port
        self.config = workdir / "gateway.yaml"
        self.users_file = workdir / "users.json"
        self.hash = hash_password(PASSWORD)  # the gateway's own hasher: costs as in production
        self.users = ["steady"]
        self.routes = {"/api/": "required"}  # wrk's: protected; the reloads add public ones
        self.keys = {kid: self._key(kid) for kid in ("old", "current", "next")}
        self.items = ["old", "current"]  # "old": a verification key left from a past rotation
        self.active = "current"

    def _key(self, kid: str) -> Path:
        path = self.workdir / f"{kid}.pem"
        write_secret_file(path, generate_key_material("EdDSA"))
        return path

    def write(self, *, broken_users: bool = False) -> None:
        if broken_users:
            self.users_file.write_text('{"users": {"half": ')
        else:
            users = {name: {"password_hash": self.hash} for name in self.users}
            self.users_file.write_text(json.dumps({"users": users}))
        config = {
            "environment": "production",
            "listen": {"port": self.port},
            "admin": {
                "port": self.admin_port,
                "keys": [{"id": "drill", "hash": admin_key_hash(ADMIN_KEY)}],
            },
            "redis": {"url": f"redis://127.0.0.1:{self.redis_port}/0"},
            "keys": {
                "active": self.active,
                "algorithms": ["EdDSA"],
                "items": [
                    {"kid": kid, "alg": "EdDSA", "private_key_file": str(self.keys[kid])}
                    for kid in self.items
                ],
            },
            "auth": {
                "users_file": str(self.users_file),
                "rate_limits": {
                    "per_ip": {"limit": 100_000, "window": 60},
                    "failures_per_username": {"limit": 100_000, "window": 60},
                },
            },
            "logging": {"format": "json", "level": "INFO", "access_log": False},
            "routes": [
                {"prefix": prefix, "upstream": self.backend, "policy": policy}
                for prefix, policy in self.routes.items()
            ],
        }
        partial = self.config.with_suffix(".partial")
        partial.write_text(json.dumps(config))
        os.replace(partial, self.config)  # a reload never reads half a file

    def change(self, number: int) -> tuple[str, bool]:
        """Reload `number`'s change (what it is, whether it is the broken one)."""
        self.routes[f"/r{number}/"] = "public"
        self.users.append(f"user{number}")
        change = f"route /r{number}/, user user{number}"
        if number == BROKEN_AT:
            return change + ", users file that does not parse", True
        if number == 3:
            self.items.append("next")
            change += ", key next published"
        elif number == 6:
            self.active = "next"
            change += ", key next signs"
        elif number == 9:
            self.items.remove("old")
            change += ", key old dropped"
        return change, False


# ---- what the drill watches ------------------------------------------------------------------


async def scrape(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/metrics", timeout=aiohttp.ClientTimeout(5)) as resp:
        return await resp.text()


def generations(metrics: str) -> dict[str, float]:
    return {
        pid: float(v)
        for name, pid, v in SERIES.findall(metrics)
        if name == "gateway_config_generation"
    }


def refused(metrics: str) -> float:
    found = REFUSED.search(metrics)
    return float(found.group(1)) if found else 0.0


async def status(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> int:
    async with http.get(url, timeout=aiohttp.ClientTimeout(5), **kwargs) as resp:
        await resp.read()
        return resp.status


async def login(http: aiohttp.ClientSession, base: str, user: str) -> tuple[int, str | None]:
    body = {"username": user, "password": PASSWORD}
    async with http.post(
        f"{base}/auth/login", json=body, timeout=aiohttp.ClientTimeout(10)
    ) as resp:
        if resp.status != 200:
            return resp.status, None
        return 200, (await resp.json())["access_token"]


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


async def jwks(http: aiohttp.ClientSession, base: str) -> set[str]:
    async with http.get(f"{base}/.well-known/jwks.json", timeout=aiohttp.ClientTimeout(5)) as resp:
        return {key["kid"] for key in (await resp.json())["keys"]}


async def until(condition: Any, what: str, since: float | None = None) -> float:
    """Seconds from `since` (now) until `condition()` holds, polled every 20 ms, within
    NEW_CONFIG_DEADLINE."""
    started = time.monotonic() if since is None else since
    while not await condition():
        if time.monotonic() - started > NEW_CONFIG_DEADLINE:
            raise DrillError(f"not within {NEW_CONFIG_DEADLINE:g} s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


# ---- the drill ---------------------------------------------------------------------------------


async def wrk_run(
    wrk: str, base: str, token: str, seconds: float, workdir: Path
) -> tuple[Counter[int], dict[str, int], dict[str, float]]:
    tally = await wrk_tally(
        wrk, f"{base}/api/items", token, seconds, workdir, threads=2, connections=16
    )
    return tally.statuses, tally.errors, tally.latency


async def drill(
    workdir: Path, *, interval: float = 1.5, reloads: int = RELOADS, baseline: bool = False
) -> Report:
    """The drill in `workdir`; raises DrillError when something cannot run or a reload did not
    do what it should (failed requests are reported, not raised). `baseline`: first the same
    load as long without reloads, for the latencies to compare with."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise DrillError("wrk is not installed (apt-get install wrk)")
    processes: list[subprocess.Popen[bytes]] = []
    backend_port = free_port()
    backend = await upstream(backend_port)
    try:
        redis_port = free_port()
        (workdir / "redis").mkdir()
        processes.append(spawn_redis(redis_port, workdir / "redis"))
        stage = Stage(workdir, redis_port, f"http://127.0.0.1:{backend_port}")
        stage.write()
        with (workdir / "gateway.log").open("wb") as gateway_log:
            gateway = subprocess.Popen(
                [*SERVE, "--config", str(stage.config), "--workers", str(WORKERS)],
                stdout=subprocess.DEVNULL,
                stderr=gateway_log,
                env=clean_env(),
            )
        processes.append(gateway)
        wait_for_port(stage.port, gateway, limit=60)
        base = f"http://127.0.0.1:{stage.port}"
        rows: list[Row] = []
        # fresh connections for every check: they spread over the workers (SO_REUSEPORT)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def all_workers_at(generation: int) -> bool:
                found = generations(await scrape(http, base))
                return len(found) == WORKERS and set(found.values()) == {generation}

            await until(lambda: all_workers_at(1), "both workers started")
            code, token = await login(http, base, "steady")
            if token is None:
                raise DrillError(f"the drill's login failed ({code})")
            load_seconds = interval * (reloads + 2)
            quiet: dict[str, float] = {}
            if baseline:
                _, _, quiet = await wrk_run(wrk, base, token, load_seconds, workdir)
            load = asyncio.ensure_future(wrk_run(wrk, base, token, load_seconds, workdir))
            started = time.monotonic()
            await asyncio.sleep(interval)
            generation = 1
            for number in range(1, reloads + 1):
                change, broken = stage.change(number)
                stage.write(broken_users=broken)
                refused_before = refused(await scrape(http, base))
                os.kill(gateway.pid, signal.SIGHUP)
                sent = time.monotonic()
                row = Row(number, change, "refused" if broken else "ok", 0.0)
                if broken:

                    async def both_refused(before: float = refused_before) -> bool:
                        return refused(await scrape(http, base)) >= before + WORKERS

                    what = f"reload {number} refused by every worker"
                    row.seconds = await until(both_refused, what, since=sent)
                    await check_still_serving(http, base, stage, number, row)
                    stage.users.remove(f"user{number}")  # the next reload writes a sound file
                    del stage.routes[f"/r{number}/"]
                else:
                    generation += 1
                    target = generation

                    async def answered(url: str = f"{base}/r{number}/x") -> bool:
                        return await status(http, url) == 200

                    async def reported(at: int = target) -> bool:
                        return await all_workers_at(at)

                    # probed side by side: the new route answers, and every worker reports
                    # the new configuration (either alone could be one worker's doing)
                    probes = await asyncio.gather(
                        until(answered, f"reload {number}: the new route answers", since=sent),
                        until(reported, f"reload {number}: every worker reloaded", since=sent),
                    )
                    row.seconds = max(probes)
                    await check_reloaded(http, base, stage, number, row)
                rows.append(row)
                print(row.line(), flush=True)
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - sent)))
            statuses, socket_errors, latency = await load
            wrk_seconds = time.monotonic() - started
        swaps = swap_times(workdir / "gateway.log")
        for row, swapped in zip(rows, swaps, strict=False):
            row.in_workers = swapped
        log = [row.line() for row in rows]
        return Report(rows, statuses, socket_errors, latency, quiet, wrk_seconds, log)
    finally:
        await backend.cleanup()
        stop_processes(processes)


async def check_reloaded(
    http: aiohttp.ClientSession, base: str, stage: Stage, number: int, row: Row
) -> None:
    code, token = await login(http, base, f"user{number}")
    if token is None:
        raise DrillError(f"reload {number}: user{number} cannot log in ({code})")
    row.checks.append(f"user{number} logs in")
    kids = await jwks(http, base)
    if kids != set(stage.items):
        raise DrillError(f"reload {number}: the JWKS holds {sorted(kids)}, not {stage.items}")
    if kid_of(token) != stage.active:
        raise DrillError(f"reload {number}: a new token is signed by {kid_of(token)}")
    if number in (3, 6, 9):
        row.checks.append(f"JWKS {', '.join(sorted(kids))}; new tokens signed by {stage.active}")
    if await status(http, f"{base}/api/x", headers={"Authorization": f"Bearer {token}"}) != 200:
        raise DrillError(f"reload {number}: the new token is refused")


async def check_still_serving(
    http: aiohttp.ClientSession, base: str, stage: Stage, number: int, row: Row
) -> None:
    if await status(http, f"{base}/r{number}/x") != 404:
        raise DrillError(f"reload {number}: the refused configuration's route is served")
    if await status(http, f"{base}/r{number - 1}/x") != 200:
        raise DrillError(f"reload {number}: the previous configuration stopped serving")
    code, _ = await login(http, base, f"user{number - 1}")
    if code != 200:
        raise DrillError(f"reload {number}: user{number - 1} cannot log in any more ({code})")
    row.checks.append("refused by every worker; the previous configuration serves on")


def swap_times(log: Path) -> list[list[float]]:
    """Per SIGHUP the supervisor passed on, the seconds until each worker logged its reload
    swapped in or refused (the gateway's JSON log lines)."""
    found: list[list[float]] = []
    sighup: float | None = None
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("msg", "")
        if message.startswith("SIGHUP:"):
            sighup = entry["ts"]
            found.append([])
        elif sighup is not None and message.startswith(
            ("configuration reloaded", "configuration reload refused")
        ):
            found[-1].append(round(entry["ts"] - sighup, 3))
    return [sorted(times) for times in found]


def report(result: Report, *, measured_at: str, interval: float) -> str:
    slowest = max(row.seconds for row in result.rows)
    slowest_swap = max((max(row.in_workers, default=0.0) for row in result.rows), default=0.0)
    statuses = ", ".join(f"{code}: {n:,}" for code, n in sorted(result.statuses.items()))
    errors = ", ".join(f"{k} {v}" for k, v in result.socket_errors.items() if v) or "none"
    lines = [
        f"Reload under load, {measured_at}: `gateway serve --workers {WORKERS}` on redis-server, "
        f"wrk -t2 -c16 for {result.wrk_seconds:.0f} s on a protected route, a SIGHUP every "
        f"{interval:g} s.",
        "",
        "| reload | change | outcome | every worker serves it (clients) | swapped in per "
        "worker (log) | checked |",
        "|---:|---|---|---:|---:|---|",
        *(row.line() for row in result.rows),
        "",
        f"* Requests: {result.requests:,} ({statuses}); socket errors: {errors}.",
        f"* Latency: {_latencies(result.latency_ms)}"
        + (
            f" (the same load without reloads: {_latencies(result.baseline_ms)})."
            if result.baseline_ms
            else "."
        ),
        f"* Failed requests: {result.failed}. Slowest reload until every worker served it: "
        f"{slowest:.2f} s as clients saw it (probed every 20 ms on new connections); "
        f"{slowest_swap:.3f} s from the SIGHUP to the last worker's swap in the gateway's log.",
    ]
    return "\n".join(lines) + "\n"


def _latencies(latency: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:.1f} ms" for name, ms in latency.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a reload every 0.75 s")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    interval = 0.75 if args.quick else 1.5
    workdir = Path(tempfile.mkdtemp(prefix="gateway-reload-"))
    try:
        result = asyncio.run(drill(workdir, interval=interval, baseline=True))
    except DrillError as exc:
        print(f"reload drill: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    measured_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = report(result, measured_at=measured_at, interval=interval)
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    data = {**asdict(result), "statuses": dict(result.statuses), "measured_at": measured_at}
    (args.out / f"reload-{stamp}.json").write_text(json.dumps(data, indent=2))
    (args.out / "reload-latest.md").write_text(text)
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
