"""The upstream pool drill (part of `make chaos`): `gateway serve` in front of a pool of three
targets (each a process of its own, bench/drills/pool_target.py) under wrk load, GETs and
POSTs at once; one target is killed (SIGKILL), another stalled (SIGSTOP), then both are
brought back.

    python -m bench.drills.chaos --pool-only --phase 4

Per phase it prints the GETs and POSTs answered and their failures by status; over the drill,
POST ids that reached the targets more than once (the gateway must never send a POST twice)
and how long the killed target took to serve again once restarted, against its back-off.
Every process runs on 127.0.0.1 on free ports and is stopped on exit; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.processes import clean_env, free_port, stop_processes, wait_for_port

BACKOFF, MAX_BACKOFF = 0.5, 4.0
HEALTH_INTERVAL, HEALTH_TIMEOUT = 0.5, 0.5
READ_TIMEOUT = 1.0
CONNECTIONS = 4  # per wrk (one for GETs, one for POSTs)
WRK_LUA = """
wrk.method = os.getenv("WRK_METHOD") or "GET"
local counter = 0
local prefix = "x"
local threads = 0
init = function(args) prefix = args[1] or "x" end
setup = function(thread) threads = threads + 1; thread:set("tid", threads) end
request = function()
  if wrk.method ~= "POST" then return wrk.format() end
  counter = counter + 1
  local id = prefix .. "-" .. tid .. "-" .. counter
  return wrk.format(nil, nil, {["X-Drill-Id"] = id, ["Content-Type"] = "application/json"}, "{}")
end
response = function(status, headers, body)
  if status >= 400 then io.write(string.format("FAILED %d\\n", status)); io.flush() end
end
"""


@dataclass
class Target:
    """A target process, its port and the file its POST ids go to."""

    port: int
    posts: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> subprocess.Popen[bytes]:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.drills.pool_target",
                "--port",
                str(self.port),
                "--posts",
                str(self.posts),
            ],
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.process)
        return self.process

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)
            if signum == signal.SIGKILL:
                self.process.wait()

    def post_ids(self) -> list[str]:
        return self.posts.read_text().split() if self.posts.exists() else []


@dataclass
class Load:
    """What one wrk run saw: its failed answers by status, and wrk's own totals."""

    statuses: Counter[int] = field(default_factory=Counter)
    socket_errors: int = 0
    requests: int = 0  # answers wrk counted
    not_ok: int = 0  # of them, neither 2xx nor 3xx

    @property
    def ok(self) -> int:
        return self.requests - self.not_ok

    @property
    def failed(self) -> Counter[int]:
        failed = Counter({k: v for k, v in self.statuses.items() if k >= 400})
        unknown = self.not_ok - sum(failed.values())  # a thread's counts went missing
        if unknown > 0:
            failed[0] += unknown
        return failed


@dataclass
class PoolPhase:
    name: str
    gets: Load
    posts: Load

    def row(self) -> str:
        def failures(load: Load) -> str:
            parts = [f"{k or 'other'}: {v}" for k, v in sorted(load.failed.items())]
            if load.socket_errors:
                parts.append(f"socket errors: {load.socket_errors}")
            return ", ".join(parts) or "—"

        return (
            f"| {self.name} | {self.gets.ok:,} | {failures(self.gets)} | {self.posts.ok:,} "
            f"| {failures(self.posts)} |"
        )


@dataclass
class PoolReport:
    phases: list[PoolPhase]
    post_ids: int  # distinct POST ids the targets received
    duplicates: int  # POST ids received more than once
    back_after: float | None  # seconds from the killed target listening again to its first POST
    back_bound: float  # the longest it may take: its back-off cap plus one health interval

    @property
    def get_failures(self) -> int:
        return sum(sum(p.gets.failed.values()) + p.gets.socket_errors for p in self.phases)

    @property
    def post_failures(self) -> int:
        return sum(sum(p.posts.failed.values()) + p.posts.socket_errors for p in self.phases)

    def table(self) -> list[str]:
        return [
            "| phase | GETs answered | GETs failed | POSTs answered | POSTs failed |",
            "|---|---:|---|---:|---|",
            *(p.row() for p in self.phases),
        ]

    def summary(self) -> list[str]:
        back = "never" if self.back_after is None else f"{self.back_after:.2f} s"
        return [
            f"* POSTs the targets received: {self.post_ids:,} ids, {self.duplicates} twice.",
            f"* The killed target served again {back} after it listened again "
            f"(bound: max_backoff {MAX_BACKOFF:g} s + one health interval).",
            f"* Failed over the drill: {self.get_failures} GETs, {self.post_failures} POSTs "
            "(a POST in flight on the target that died or stalled cannot be sent again).",
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "phases": [
                {
                    "name": p.name,
                    "gets": dict(p.gets.statuses),
                    "get_socket_errors": p.gets.socket_errors,
                    "posts": dict(p.posts.statuses),
                    "post_socket_errors": p.posts.socket_errors,
                }
                for p in self.phases
            ],
            "post_ids": self.post_ids,
            "duplicates": self.duplicates,
            "back_after_s": self.back_after,
            "table": self.table(),
        }


def gateway_config(workdir: Path, targets: list[Target]) -> Path:
    config = {
        "environment": "development",
        "listen": {"port": free_port()},
        "admin": {"port": free_port()},
        "logging": {"format": "json", "access_log": False, "level": "WARNING"},
        "proxy": {"read_timeout": READ_TIMEOUT, "connect_timeout": 0.5},
        "upstreams": {
            "pool": {
                "targets": [t.url for t in targets],
                # a stalled target holds its requests: least in flight sends it no more
                "balance": "least_in_flight",
                "health": {
                    "path": "/health",
                    "interval": HEALTH_INTERVAL,
                    "timeout": HEALTH_TIMEOUT,
                },
                "backoff": BACKOFF,
                "max_backoff": MAX_BACKOFF,
            }
        },
        "routes": [{"prefix": "/", "upstream": "pool", "policy": "public"}],
    }
    path = workdir / "pool-gateway.json"
    path.write_text(json.dumps(config))
    return path


async def wrk(
    wrk_path: str, url: str, method: str, seconds: float, workdir: Path, tag: str
) -> Load:
    script = workdir / "pool.lua"
    script.write_text(WRK_LUA)
    args = [wrk_path, "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "5s"]
    process = await asyncio.create_subprocess_exec(
        *args,
        "-s",
        str(script),
        url,
        "--",
        tag,
        env={**clean_env(), "WRK_METHOD": method},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), seconds + 30)
    (workdir / f"wrk-{tag}-{method}.out").write_bytes(out)
    load = Load()
    text = out.decode()
    for line in text.splitlines():
        if line.startswith("FAILED "):
            load.statuses[int(line.split()[1])] += 1
    # wrk's own report: "N requests in", "Non-2xx or 3xx responses: M", "Socket errors: …"
    total = re.search(r"(\d+) requests in", text)
    load.requests = int(total.group(1)) if total else 0
    not_ok = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    load.not_ok = int(not_ok.group(1)) if not_ok else 0
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    load.socket_errors = sum(int(n) for n in errors.groups()) if errors else 0
    if not load.requests:
        raise RuntimeError(f"wrk {method} {url} answered nothing:\n{out.decode()[-2000:]}")
    return load


async def pool_drill(wrk_path: str, workdir: Path, seconds: float) -> PoolReport:
    """Run the drill's phases; every process it started is stopped when it returns."""
    targets = [Target(free_port(), workdir / f"posts-{n}.log") for n in range(3)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for target in targets:
            processes.append(target.start())
        config = gateway_config(workdir, targets)
        port = json.loads(config.read_text())["listen"]["port"]
        with (workdir / "pool-gateway.log").open("wb") as log:  # the child keeps its copy
            serve = ("serve", "--config", str(config), "--workers", "1")
            gateway = subprocess.Popen(
                [sys.executable, "-m", "gateway", *serve],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
            )
        processes.append(gateway)
        wait_for_port(port, gateway)
        base = f"http://127.0.0.1:{port}"
        phases: list[PoolPhase] = []
        killed, stalled, _ = targets

        async def phase(name: str, during: Any = None) -> None:
            tag = name.replace(" ", "_")
            gets = asyncio.ensure_future(
                wrk(wrk_path, f"{base}/items", "GET", seconds, workdir, tag)
            )
            posts = asyncio.ensure_future(
                wrk(wrk_path, f"{base}/orders", "POST", seconds, workdir, tag)
            )
            if during is not None:
                await asyncio.sleep(min(1.0, seconds / 4))
                await during()
            phases.append(PoolPhase(name, await gets, await posts))
            print(phases[-1].row(), flush=True)

        async def kill() -> None:
            killed.signal(signal.SIGKILL)

        async def stall() -> None:
            stalled.signal(signal.SIGSTOP)

        back_after: float | None = None

        async def served_again(restarted: float, served: int) -> None:
            """Until the restarted target records a POST (it is back in rotation)."""
            nonlocal back_after
            deadline = restarted + MAX_BACKOFF + HEALTH_INTERVAL + 5
            while time.monotonic() < deadline:
                if len(killed.post_ids()) > served:
                    back_after = time.monotonic() - restarted
                    return
                await asyncio.sleep(0.02)

        watching: list[asyncio.Task[None]] = []

        async def bring_back() -> None:
            served = len(killed.post_ids())
            processes.append(killed.start())
            listening = time.monotonic()  # counted from here: the target can serve
            stalled.signal(signal.SIGCONT)
            watching.append(asyncio.create_task(served_again(listening, served)))

        print("| phase | GETs answered | GETs failed | POSTs answered | POSTs failed |")
        print("|---|---:|---|---:|---|")
        await phase("three targets")
        await phase("one killed", kill)
        await phase("another stalled", stall)
        await phase("both back", bring_back)
        await phase("recovered")
        await asyncio.gather(*watching)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as resp:
            ready = await resp.json()
        states = [t["state"] for t in ready["upstreams"]["pool"]["targets"]]
        if states != ["up", "up", "up"]:
            print(f"pool drill: targets at the end: {states}", flush=True)
        ids = Counter(i for t in targets for i in t.post_ids())
        return PoolReport(
            phases=phases,
            post_ids=len(ids),
            duplicates=sum(1 for n in ids.values() if n > 1),
            back_after=back_after,
            back_bound=MAX_BACKOFF + HEALTH_INTERVAL,
        )
    finally:
        stop_processes(processes)
