"""The gateway benchmark: wrk against the upstream directly, the reference proxy (the best
simple aiohttp proxy, bench/tuned_proxy.py), the naive aiohttp proxy, the gateway with full
auth and nginx, in alternating rounds of one run; then refresh throughput, revocation
propagation and memory figures. Every "× reference" ratio and target is against the tuned
reference proxy.

    python -m bench.run            # make bench: 3 rounds of 10 s per target (then the chart)
    python -m bench.run --quick    # make bench-quick: 3 rounds of 3 s, smaller memory runs
    python -m bench.run --quick --targets nginx,gateway,forward-auth   # those rows alone

Prints a markdown table and writes JSON (and the table) under bench/results/;
`python -m bench.plot` draws the latest results (make bench-plot).
Everything listens on 127.0.0.1 on free ports; every run is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp

from bench.cpu_time import cpu_seconds, process_tree
from gateway.admin.apikeys import admin_key_hash
from gateway.authserver.credentials import hash_password
from gateway.browser.seal import (
    ACCESS,
    REFRESH,
    AesGcmSeal,
    load_seal_keys,
    new_seal_key,
)
from gateway.config import BrowserSettings, Settings
from gateway.services import build_issuer
from gateway.store import (
    RevocationStore,
    SessionStore,
    connect_redis,
)
from gateway.tokens.issuer import TokenIssuer
from gateway.tokens.keys import generate_key_material, load_keyring, write_secret_file
from tests.support.nginx_front import TEMPLATE, render
from tests.support.processes import clean_env, free_port, stop_processes, wait_for_port
from tests.support.redis_servers import spawn_redis
from tests.support.stored_sessions import open_session

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # the benchmark's own processes run as `python -m bench.…` from here

CONNECTIONS = 64
BEARER = ("Authorization", "Bearer ")
ACCESS_COOKIE, REFRESH_COOKIE = "__Host-gw_at", "__Host-gw_rt"  # browser mode's defaults
REFERENCE = "reference"  # bench/tuned_proxy.py: what every ratio is against
ADMIN_KEY = "gwadm_bench-only-key"
BENCH_USER, BENCH_PASSWORD = "bench", "bench-password"
SMALL_BODY = '{"ok":true,"items":[1,2,3],"message":"hello from the upstream"}'


class BenchError(Exception):
    """A clear, user-facing reason the benchmark cannot run."""


@dataclass
class Target:
    name: str
    port: int
    pid: int | None = None  # whose CPU time is counted (with its children)


@dataclass
class Run:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float | None
    non_2xx: int
    socket_errors: int


@dataclass
class Cores:
    proxy: str | None  # the core the proxy under test has to itself
    load: str | None  # wrk, the upstream and Redis share the rest

    @classmethod
    def detect(cls) -> Cores:
        usable = sorted(os.sched_getaffinity(0))
        if len(usable) < 2 or not shutil.which("taskset"):
            return cls(None, None)
        return cls(str(usable[-1]), ",".join(str(c) for c in usable[:-1]))


@dataclass
class Stack:
    """Every process the benchmark started; all stopped on exit, whatever happens."""

    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: list[str], *, cpu: str | None, port: int | None = None) -> int:
        if cpu is not None:
            argv = ["taskset", "-c", cpu, *argv]
        log = open(self.workdir / f"proc-{len(self.processes)}.log", "wb")  # noqa: SIM115
        env = clean_env()
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self.processes.append(process)
        if port is not None:
            try:
                wait_for_port(port, process)
            except RuntimeError as exc:
                tail = (self.workdir / f"proc-{len(self.processes) - 1}.log").read_text()[-800:]
                raise BenchError(
                    f"{' '.join(argv)} did not start on port {port}: {exc}\n{tail}"
                ) from None
        return process.pid

    def stop(self) -> None:
        stop_processes(self.processes)


# ---- prerequisites -----------------------------------------------------------------------


def ensure_wrk(install: bool) -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError(
            "wrk is not installed and cannot be installed from here (installing needs root "
            "and apt-get): run `sudo apt-get install -y wrk`, then `make bench` again"
        )
    print("wrk is missing: installing it with apt-get (Debian package wrk)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "wrk"]):
        subprocess.run(step, check=False, env=env, stdout=subprocess.DEVNULL, timeout=600)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get could not install wrk; install it by hand and retry")
    return found


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nginx = shutil.which("nginx")
    nginx_version = (
        subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
        if nginx
        else None
    )
    return {
        "cores": len(os.sched_getaffinity(0)),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": nginx_version,
    }


# ---- the processes under test ------------------------------------------------------------


def nginx_config(
    workdir: Path,
    name: str,
    server: str,
    workers: int,
    upstream: int,
    *,
    include: Path | None = None,
) -> Path:
    """A whole nginx.conf: `server` in front of `upstream`, or an http-context file of its
    own (`include`, with its upstreams and server)."""
    user = "user root;" if os.geteuid() == 0 else ""
    temp = workdir / f"{name}-tmp"
    temp.mkdir(exist_ok=True)
    paths = " ".join(
        f"{kind}_temp_path {temp}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    body = (
        f"  include {include};"
        if include is not None
        else f"""  upstream backend {{ server 127.0.0.1:{upstream}; keepalive 128; }}
  server {{
{server}
  }}"""
    )
    config = workdir / f"{name}.conf"
    config.write_text(
        f"""{user}
worker_processes {workers};
daemon off;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  {paths}
  keepalive_requests 1000000;
{body}
}}
"""
    )
    return config


def start_upstream(stack: Stack, cores: Cores) -> tuple[int, str]:
    port = free_port()
    nginx = shutil.which("nginx")
    if nginx:
        (stack.workdir / "64k").write_bytes(b"x" * 65536)
        server = f"""    listen 127.0.0.1:{port};
    location = /small {{ default_type application/json; return 200 '{SMALL_BODY}'; }}
    location = /64k {{ default_type application/octet-stream; alias {stack.workdir}/64k; }}"""
        config = nginx_config(stack.workdir, "upstream", server, 1, port)
        stack.start(
            [nginx, "-e", "stderr", "-p", str(stack.workdir), "-c", str(config)],
            cpu=cores.load,
            port=port,
        )
        return port, "nginx (static)"
    stack.start(
        [sys.executable, "-m", "bench.static_upstream", "--port", str(port)],
        cpu=cores.load,
        port=port,
    )
    return port, "aiohttp (bench/static_upstream.py)"


def start_nginx_proxy(stack: Stack, upstream: int, cpu: str | None, workers: int) -> Target | None:
    nginx = shutil.which("nginx")
    if not nginx:
        return None
    port = free_port()
    server = f"""    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                 proxy_set_header Connection ""; }}"""
    name = f"nginx-proxy-{workers}"
    config = nginx_config(stack.workdir, name, server, workers, upstream)
    pid = stack.start(
        [nginx, "-e", "stderr", "-p", str(stack.workdir), "-c", str(config)], cpu=cpu, port=port
    )
    return Target(f"nginx ×{workers}" if workers > 1 else "nginx", port, pid)


FORWARD_AUTH = "nginx + forward-auth"


def forward_auth_mode(config: dict[str, Any]) -> dict[str, Any]:
    """The same gateway answering decisions, on its lean decision listener too."""
    return {
        **config,
        "listen": {"port": free_port()},
        "admin": {**config["admin"], "port": free_port()},
        "forward_auth": {"enabled": True, "listen": {"host": "127.0.0.1", "port": free_port()}},
    }


def start_forward_auth(
    stack: Stack, upstream: int, config: dict[str, Any], cpu: str | None
) -> Target | None:
    """nginx as deploy/nginx/ configures it, asking the gateway's decision listener about
    every request (auth_request); nginx and the gateway share the proxy's core. The target's
    CPU time is the gateway's: CPU per decision."""
    nginx = shutil.which("nginx")
    if not nginx:
        return None
    gateway = start_gateway(stack, "gateway decisions", config, cpu)
    decisions = config["forward_auth"]["listen"]["port"]
    wait_for_port(decisions)
    port = free_port()
    included = stack.workdir / "forward-auth.conf"
    included.write_text(
        render(
            TEMPLATE,
            LISTEN=f"127.0.0.1:{port}",
            GATEWAY=f"127.0.0.1:{config['listen']['port']}",
            DECISIONS=f"127.0.0.1:{decisions}",
            APP=f"127.0.0.1:{upstream}",
        )
    )
    conf = nginx_config(stack.workdir, "nginx-forward-auth", "", 1, upstream, include=included)
    stack.start(
        [nginx, "-e", "stderr", "-p", str(stack.workdir), "-c", str(conf)], cpu=cpu, port=port
    )
    return Target(FORWARD_AUTH, port, gateway.pid)


def start_naive(stack: Stack, upstream: int, cpu: str | None) -> Target:
    port = free_port()
    pid = stack.start(
        [
            sys.executable,
            "-m",
            "bench.naive_proxy",
            "--port",
            str(port),
            "--upstream",
            f"http://127.0.0.1:{upstream}",
        ],
        cpu=cpu,
        port=port,
    )
    return Target("naive proxy", port, pid)


def start_reference(stack: Stack, upstream: int, cpu: str | None) -> Target:
    """The tuned aiohttp proxy every ratio is computed against (pool sized for the load)."""
    port = free_port()
    pid = stack.start(
        [
            sys.executable,
            "-m",
            "bench.tuned_proxy",
            "--port",
            str(port),
            "--upstream",
            f"http://127.0.0.1:{upstream}",
            "--pool",
            str(2 * CONNECTIONS),
        ],
        cpu=cpu,
        port=port,
    )
    return Target(REFERENCE, port, pid)


def gateway_settings(
    workdir: Path, upstream: int, redis_url: str, *, cache: bool = True
) -> dict[str, Any]:
    users = workdir / "users.yaml"
    if not users.exists():
        users.write_text(
            json.dumps(
                {
                    "users": {
                        BENCH_USER: {
                            "password_hash": hash_password(BENCH_PASSWORD),
                            "roles": ["user"],
                        }
                    }
                }
            )
        )
    return {
        "environment": "production",
        "listen": {"port": free_port()},
        "admin": {
            "port": free_port(),
            "keys": [{"id": "bench", "hash": admin_key_hash(ADMIN_KEY)}],
        },
        "redis": {"url": redis_url},
        "keys": {
            "active": "bench",
            "items": [{"kid": "bench", "private_key_file": str(workdir / "signing.pem")}],
        },
        # tokens signed before the run stay valid through it (the default is 15 minutes)
        "tokens": {"access_ttl": 3600, "verified_cache_size": 100_000 if cache else 0},
        "auth": {
            "users_file": str(users),
            "rate_limits": {"per_ip": {"limit": 100_000, "window": 60}},
        },
        "logging": {"format": "json", "access_log": True},
        "routes": [
            {"prefix": "/", "upstream": f"http://127.0.0.1:{upstream}", "policy": "required"}
        ],
    }


# Five rules (every one holds for the benchmark's tokens) and one rate limit per user that
# never refuses at this load but counts every request: what a policy costs on the
# cache-warm path, against the plain route of the "gateway" target.
POLICY_RULES: dict[str, Any] = {
    "allow": [
        {"roles": ["user"]},
        {"any": [{"authenticated": True}, {"provider": ["gateway"]}]},
        {"not": {"client_id": ["legacy-batch"]}},
    ],
    "deny": [{"claim": {"name": "sub", "in": ["mallory", "eve"]}}],
    "limits": [{"key": "sub", "rate": 1_000_000, "per": 1, "burst": 1_000_000}],
}


def with_policy(config: dict[str, Any]) -> dict[str, Any]:
    """The same gateway whose route has POLICY_RULES."""
    return {
        **config,
        "listen": {"port": free_port()},
        "admin": {**config["admin"], "port": free_port()},
        "routes": [{**route, **POLICY_RULES} for route in config["routes"]],
    }


def browser_mode(config: dict[str, Any], seal_key: Path) -> dict[str, Any]:
    """The same gateway with browser sessions on (production cookie settings, sealed)."""
    return {
        **config,
        "listen": {"port": free_port()},
        "admin": {**config["admin"], "port": free_port()},
        "browser": {
            "enabled": True,
            "seal_keys": [{"id": "bench", "secret_file": str(seal_key)}],
        },
    }


async def browser_sessions(redis_url: str, count: int, seal: AesGcmSeal) -> list[str]:
    """`count` live sessions written straight to Redis; their refresh tokens, sealed."""
    batch = 32  # requests in flight, one pooled connection each
    client = connect_redis(redis_url, connect_timeout=2, socket_timeout=5, max_connections=batch)
    store = SessionStore(client, clock=time.time)

    async def create(i: int) -> str:
        _, token = await open_session(store, f"browser-{i}", lifetime=7200)
        return seal.seal(token, REFRESH)

    cookies: list[str] = []
    for start in range(0, count, batch):
        cookies += await asyncio.gather(
            *(create(i) for i in range(start, min(count, start + batch)))
        )
    await client.aclose()
    return cookies


def start_gateway(
    stack: Stack, name: str, config: dict[str, Any], cpu: str | None, workers: int = 1
) -> Target:
    path = stack.workdir / f"{name.replace(' ', '-')}.yaml"
    path.write_text(json.dumps(config))
    port = config["listen"]["port"]
    pid = stack.start(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(path),
            "--workers",
            str(workers),
        ],
        cpu=cpu,
        port=port,
    )
    if workers > 1:  # the first worker answers before the others listen
        deadline = time.monotonic() + 30
        while len(process_tree(pid)) < workers + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)
    return Target(name, port, pid)


# ---- measuring ---------------------------------------------------------------------------


def write_tokens(path: Path, tokens: list[str]) -> Path:
    path.write_text("\n".join(tokens) + "\n")
    return path


def run_wrk(
    wrk: str,
    target: Target,
    path: str,
    tokens: Path,
    seconds: float,
    cpu: str | None,
    header: tuple[str, str] = BEARER,
) -> Run:
    url = f"http://127.0.0.1:{target.port}{path}"
    argv = [
        wrk,
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(HERE / "tokens.lua"),
        url,
    ]
    if cpu is not None:
        argv = ["taskset", "-c", cpu, *argv]
    pids = process_tree(target.pid) if target.pid else []
    cpu_before = cpu_seconds(pids)
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        env={
            **os.environ,
            "TOKENS_FILE": str(tokens),
            "TOKEN_HEADER": header[0],
            "TOKEN_PREFIX": header[1],
        },
    )
    cpu_after = cpu_seconds(pids)
    match = re.search(r"^JSON (\{.*\})$", result.stdout, re.M)
    if result.returncode != 0 or match is None:
        raise BenchError(f"wrk failed against {target.name} ({url}):\n{result.stderr[-800:]}")
    data = json.loads(match.group(1))
    requests = data["requests"]
    non_2xx = (
        int(m.group(1))
        if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout))
        else 0
    )
    errors = sum(data[k] for k in ("errors_connect", "errors_read", "errors_timeout"))
    return Run(
        requests=requests,
        rps=requests / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        cpu_us=(cpu_after - cpu_before) / requests * 1e6 if pids and requests else None,
        non_2xx=non_2xx,
        socket_errors=errors,
    )


def measure(
    wrk: str,
    plan: Plan,
    target: Target,
    path: str,
    tokens: Path,
    cpu: str | None,
    header: tuple[str, str] = BEARER,
) -> Run:
    """One measured wrk run, after an unmeasured warm-up against the same target.

    The warm-up wakes the proxy's core (idle while the previous target ran; on a VM the
    first second after idling measured about 10 % slower) and fills its connection pool,
    so no target pays for its place in the order.
    """
    run_wrk(wrk, target, path, tokens, plan.warmup, cpu, header)
    return run_wrk(wrk, target, path, tokens, plan.seconds, cpu, header)


async def check_answers(
    target: Target, path: str, token: str, expect: int, header: tuple[str, str] = BEARER
) -> None:
    url = f"http://127.0.0.1:{target.port}{path}"
    try:
        timeout = aiohttp.ClientTimeout(total=5)
        headers = {header[0]: f"{header[1]}{token}"}
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers) as resp,
        ):
            await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BenchError(
            f"{target.name} on {url} is not answering ({type(exc).__name__})"
        ) from None
    if status != expect:
        raise BenchError(f"{target.name} answered {status} on {url}, expected {expect}")


async def refresh_throughput(target: Target, seconds: float, chains: int = 32) -> dict[str, Any]:
    """Rotations per second: `chains` sessions, each refreshing its newest token in a loop."""
    base = f"http://127.0.0.1:{target.port}"
    connector = aiohttp.TCPConnector(limit=chains)
    async with aiohttp.ClientSession(connector=connector) as session:
        tokens = []
        for i in range(chains):
            body = {"username": BENCH_USER, "password": BENCH_PASSWORD, "device_id": f"d{i}"}
            async with session.post(f"{base}/auth/login", json=body) as resp:
                if resp.status != 200:
                    raise BenchError(f"login for the refresh benchmark failed: {resp.status}")
                tokens.append((await resp.json())["refresh_token"])
        rotations, failures = 0, 0
        deadline = time.monotonic() + seconds
        pids = process_tree(target.pid) if target.pid else []

        async def chain(index: int) -> None:
            nonlocal rotations, failures
            while time.monotonic() < deadline:
                payload = {"refresh_token": tokens[index]}
                async with session.post(f"{base}/auth/refresh", json=payload) as resp:
                    if resp.status == 200:
                        tokens[index] = (await resp.json())["refresh_token"]
                        rotations += 1
                    else:
                        failures += 1
                        return

        cpu_before, started = cpu_seconds(pids), time.monotonic()
        await asyncio.gather(*(chain(i) for i in range(chains)))
        elapsed, cpu_used = time.monotonic() - started, cpu_seconds(pids) - cpu_before
    return {
        "rotations_per_s": round(rotations / elapsed),
        "failures": failures,
        "cpu_us_per_rotation": round(cpu_used / rotations * 1e6) if rotations else None,
        "concurrent_chains": chains,
    }


async def propagation(
    a_admin_port: int, b: Target, issuer: TokenIssuer, count: int
) -> dict[str, Any]:
    """Revoke a token through instance A's admin API; time until instance B answers 401."""
    delays = []
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            token = issuer.issue(sub=f"prop-{i}", sid=f"prop-sid-{i}", roles=[]).token
            auth = {"Authorization": f"Bearer {token}"}
            async with session.get(f"http://127.0.0.1:{b.port}/small", headers=auth) as resp:
                await resp.read()
                if resp.status != 200:
                    raise BenchError(f"instance B refused a fresh token ({resp.status})")
            started = time.perf_counter()
            async with session.post(
                f"http://127.0.0.1:{a_admin_port}/admin/revoke/token",
                json={"token": token},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            ) as resp:
                if resp.status != 200:
                    raise BenchError(f"admin revoke on instance A answered {resp.status}")
            while True:
                async with session.get(f"http://127.0.0.1:{b.port}/small", headers=auth) as resp:
                    await resp.read()
                    if resp.status == 401:
                        break
                if time.perf_counter() - started > 5:
                    raise BenchError("a revocation did not reach instance B within 5 s")
            delays.append((time.perf_counter() - started) * 1000)
    delays.sort()
    return {
        "revocations": count,
        "p50_ms": round(statistics.median(delays), 2),
        "p99_ms": round(delays[max(0, int(len(delays) * 0.99) - 1)], 2),
        "max_ms": round(delays[-1], 2),
        "note": "from sending the admin call to A until B's first 401, HTTP round trips included",
    }


def run_module(module: str, *args: str, limit: float) -> dict[str, Any]:
    """`python -m module args` from the repository's root; its last output line as JSON."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=limit,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise BenchError(f"{module} failed:\n{result.stderr[-800:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


# ---- the run -----------------------------------------------------------------------------


@dataclass
class Plan:
    rounds: int
    seconds: float
    stream_mib: int
    revocations: int
    propagations: int
    refresh_seconds: float
    warmup: int

    @classmethod
    def choose(cls, args: argparse.Namespace) -> Plan:
        if args.smoke:
            return cls(1, 1, 8, 1000, 20, 1, 1)
        if args.quick:
            return cls(3, 3, 256, 100_000, 200, 3, 1)
        return cls(args.rounds, args.duration, 1024, 1_000_000, 1000, 10, 2)


def rotated(targets: list[Target], round_index: int) -> list[Target]:
    """The targets of a round, each round starting one further along.

    With a fixed order the target after `direct` (whose run leaves the proxy core idle) would
    always start on a cold core; rotating spreads whatever the order costs over every target.
    """
    start = round_index % len(targets)
    return targets[start:] + targets[:start]


def median_run(runs: list[Run]) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    cpu = [r.cpu_us for r in runs if r.cpu_us is not None]
    return {
        "rps": round(statistics.median(r.rps for r in runs)),
        "p50_ms": med([r.p50_ms for r in runs]),
        "p99_ms": med([r.p99_ms for r in runs]),
        "cpu_us": round(statistics.median(cpu), 1) if cpu else None,
        "non_2xx": sum(r.non_2xx for r in runs),
        "socket_errors": sum(r.socket_errors for r in runs),
        "rounds": [round(r.rps) for r in runs],
    }


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    wrk = ensure_wrk(install=not args.no_install)
    plan = Plan.choose(args)
    cores = Cores.detect()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    stack = Stack(workdir)
    try:
        if args.targets:
            return chosen_benchmark(stack, wrk, plan, cores, args)
        return _benchmark(stack, wrk, plan, cores, args)
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


class Base(NamedTuple):
    """What every target is measured against: the upstream, Redis, the gateway's settings
    and signer, the cache-warm tokens."""

    upstream: int
    upstream_kind: str
    redis_url: str
    settings: dict[str, Any]
    issuer: TokenIssuer
    warm: Path


def setup(stack: Stack, cores: Cores, args: argparse.Namespace) -> Base:
    workdir = stack.workdir
    if args.upstream_port:
        upstream, upstream_kind = args.upstream_port, "external"
    else:
        upstream, upstream_kind = start_upstream(stack, cores)
    redis_port = free_port()
    redis_dir = workdir / "redis"
    redis_dir.mkdir()
    stack.processes.append(spawn_redis(redis_port, redis_dir))
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    write_secret_file(workdir / "signing.pem", generate_key_material("EdDSA"))

    settings = gateway_settings(workdir, upstream, redis_url)
    validated = Settings.model_validate(settings)
    issuer = build_issuer(validated, load_keyring(validated.keys))
    assert issuer is not None  # the settings name an active signing key
    warm = write_tokens(
        workdir / "warm.txt",
        [issuer.issue(sub=f"user-{i}", sid=f"warm-{i}", roles=["user"]).token for i in range(8)],
    )
    return Base(upstream, upstream_kind, redis_url, settings, issuer, warm)


WARM_TITLE = "small JSON, same 8 tokens (cache-warm)"
# `--targets`: the names to choose from, and the targets they start
CHOSEN: dict[str, str] = {
    "direct": "direct",
    "reference": REFERENCE,
    "naive": "naive proxy",
    "gateway": "gateway",
    "nginx": "nginx",
    "forward-auth": FORWARD_AUTH,
}


def chosen_benchmark(
    stack: Stack, wrk: str, plan: Plan, cores: Cores, args: argparse.Namespace
) -> dict[str, Any]:
    """`--targets`: the cache-warm scenario alone, for the targets named, in alternating
    rounds as a whole run measures them (no other scenario, memory or Redis figures)."""
    upstream, upstream_kind, _, settings, _, warm = setup(stack, cores, args)
    first_token = warm.read_text().split()[0]
    started: dict[str, Target | None] = {}
    for name in args.targets:
        if name == "direct":
            started[name] = Target("direct", upstream)
        elif name == "reference":
            started[name] = start_reference(stack, upstream, cores.proxy)
        elif name == "naive":
            started[name] = start_naive(stack, upstream, cores.proxy)
        elif name == "gateway":
            started[name] = start_gateway(stack, "gateway", settings, cores.proxy)
        elif name == "nginx":
            started[name] = start_nginx_proxy(stack, upstream, cores.proxy, 1)
        elif name == "forward-auth":
            mode = forward_auth_mode(settings)
            started[name] = start_forward_auth(stack, upstream, mode, cores.proxy)
    missing = [name for name, target in started.items() if target is None]
    if missing:
        raise BenchError(f"cannot start {', '.join(missing)}: nginx is not installed")
    targets = [t for t in started.values() if t is not None]

    async def preflight() -> None:
        for target in targets:
            await check_answers(target, "/small", first_token, 200)

    asyncio.run(preflight())
    runs: dict[str, list[Run]] = {}
    for round_index in range(plan.rounds):
        print(f"round {round_index + 1}/{plan.rounds}", flush=True)
        for target in rotated(targets, round_index):
            run = measure(wrk, plan, target, "/small", warm, cores.load, BEARER)
            runs.setdefault(target.name, []).append(run)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "pinning": {"proxy_under_test": cores.proxy, "wrk_upstream_redis": cores.load},
        "plan": plan.__dict__,
        "upstream": upstream_kind,
        "wrk": f"-t1 -c{CONNECTIONS}, bearer token on every request (bench/tokens.lua)",
        "targets": [CHOSEN[name] for name in args.targets],
        "throughput": {WARM_TITLE: {n: median_run(r) for n, r in runs.items()}},
    }
    if "gateway" in started:
        results["forward_auth"] = forward_auth_figures(results)
    return results


def _benchmark(
    stack: Stack, wrk: str, plan: Plan, cores: Cores, args: argparse.Namespace
) -> dict[str, Any]:
    workdir = stack.workdir
    upstream, upstream_kind, redis_url, settings, issuer, warm = setup(stack, cores, args)
    cold_count = 1000 if args.smoke else 10_000
    cold = write_tokens(
        workdir / "cold.txt",
        [
            issuer.issue(sub=f"user-{i}", sid=f"cold-{i}", roles=["user"]).token
            for i in range(cold_count)
        ],
    )
    revoked_tokens = [issuer.issue(sub="gone", sid="revoked-sid", roles=[]).token for _ in range(8)]
    revoked = write_tokens(workdir / "revoked.txt", revoked_tokens)
    first_token = warm.read_text().split()[0]
    # Browser sessions: the warm tokens as sealed access cookies; refresh cookies of live
    # sessions (each request without an access cookie is a transparent refresh).
    seal_key = workdir / "cookie-seal.key"
    write_secret_file(seal_key, new_seal_key())
    keys = {"seal_keys": [{"id": "bench", "secret_file": str(seal_key)}]}
    seal = AesGcmSeal(load_seal_keys(BrowserSettings.model_validate(keys)))
    access_cookies = write_tokens(
        workdir / "access-cookies.txt", [seal.seal(t, ACCESS) for t in warm.read_text().split()]
    )
    refresh_cookies = write_tokens(
        workdir / "refresh-cookies.txt", asyncio.run(browser_sessions(redis_url, cold_count, seal))
    )
    access_header, refresh_header = (
        ("Cookie", f"{ACCESS_COOKIE}="),
        ("Cookie", f"{REFRESH_COOKIE}="),
    )

    direct = Target("direct", upstream)
    reference = start_reference(stack, upstream, cores.proxy)
    naive = start_naive(stack, upstream, cores.proxy)
    gateway = start_gateway(stack, "gateway", settings, cores.proxy)
    cold_gateway = start_gateway(
        stack,
        "gateway cold",
        gateway_settings(workdir, upstream, redis_url, cache=False),
        cores.proxy,
    )
    nginx = start_nginx_proxy(stack, upstream, cores.proxy, 1)
    browser = start_gateway(
        stack, "gateway browser mode", browser_mode(settings, seal_key), cores.proxy
    )
    policy = start_gateway(stack, POLICY_TARGET, with_policy(settings), cores.proxy)
    forward_auth = start_forward_auth(stack, upstream, forward_auth_mode(settings), cores.proxy)
    fronted = [nginx, forward_auth] if nginx and forward_auth else []

    async def revoke_session() -> None:
        client = connect_redis(redis_url, connect_timeout=1, socket_timeout=2, max_connections=2)
        await RevocationStore(client, clock=time.time).revoke_session(
            "revoked-sid", until=time.time() + 7200
        )
        await client.aclose()

    asyncio.run(revoke_session())
    pinned = [
        reference,
        naive,
        gateway,
        cold_gateway,
        browser,
        policy,
        *([nginx] if nginx else []),
        *([forward_auth] if forward_auth else []),
    ]

    async def preflight() -> None:
        await check_answers(direct, "/small", first_token, 200)
        for target in pinned:
            await check_answers(target, "/small", first_token, 200)
        await check_answers(gateway, "/small", revoked_tokens[0], 401)
        if forward_auth:
            await check_answers(forward_auth, "/small", revoked_tokens[0], 401)
        await check_answers(
            browser, "/small", access_cookies.read_text().split()[0], 200, access_header
        )
        await check_answers(
            browser, "/small", refresh_cookies.read_text().split()[0], 200, refresh_header
        )

    asyncio.run(preflight())
    scenarios: list[tuple[str, str, Path, list[Target], tuple[str, str]]] = [
        (
            "small JSON, same 8 tokens (cache-warm)",
            "/small",
            warm,
            [direct, reference, naive, gateway, browser, policy, *fronted],
            BEARER,
        ),
        (
            "64 KiB body",
            "/64k",
            warm,
            [direct, reference, naive, gateway, *([nginx] if nginx else [])],
            BEARER,
        ),
        (
            f"small JSON, {cold_count:,} tokens, cache off (cold)",
            "/small",
            cold,
            [cold_gateway],
            BEARER,
        ),
        ("revoked tokens (401)", "/small", revoked, [gateway], BEARER),
        # Many live sessions: after the first pass every token is cached, and the cache holds
        # 10,000 principals (what the garbage collector and the CPU caches have to live with).
        (f"small JSON, {cold_count:,} tokens, cache on", "/small", cold, [gateway], BEARER),
        # Browser sessions: the same 8 tokens in sealed access cookies (against the bearer
        # row of the same process above), then refresh cookies alone: every request is a
        # transparent refresh (one Redis call, a new token signed and verified).
        (
            COOKIE_SCENARIO,
            "/small",
            access_cookies,
            [browser],
            access_header,
        ),
        (
            f"transparent refresh, {cold_count:,} sessions (refresh cookie only, real Redis)",
            "/small",
            refresh_cookies,
            [browser],
            refresh_header,
        ),
    ]
    runs: dict[str, dict[str, list[Run]]] = {s[0]: {} for s in scenarios}
    for round_index in range(plan.rounds):
        print(f"round {round_index + 1}/{plan.rounds}", flush=True)
        for title, path, tokens, targets, header in scenarios:
            for target in rotated(targets, round_index):
                run = measure(wrk, plan, target, path, tokens, cores.load, header)
                runs[title].setdefault(target.name, []).append(run)

    # Both cores: the gateway with --workers 2 against nginx with 2 workers, nothing pinned.
    two_cores: dict[str, list[Run]] = {}
    gateway2 = start_gateway(
        stack, "gateway ×2", gateway_settings(workdir, upstream, redis_url), None, workers=2
    )
    nginx2 = start_nginx_proxy(stack, upstream, None, 2)
    for round_index in range(plan.rounds):
        for target in rotated([gateway2, *([nginx2] if nginx2 else [])], round_index):
            two_cores.setdefault(target.name, []).append(
                measure(wrk, plan, target, "/small", warm, None)
            )

    print("refresh rotations", flush=True)
    refresh = asyncio.run(refresh_throughput(gateway, plan.refresh_seconds))
    print("revocation propagation", flush=True)
    admin_port = settings["admin"]["port"]
    spread = asyncio.run(propagation(admin_port, cold_gateway, issuer, plan.propagations))
    print("memory", flush=True)
    streaming = run_module("bench.measure_streaming", str(plan.stream_mib), limit=600)
    load = run_module("bench.measure_revocations", "load", str(plan.revocations), limit=600)

    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "pinning": {
            "proxy_under_test": cores.proxy,
            "wrk_upstream_redis": cores.load,
            "two_core_scenario": "unpinned",
        },
        "plan": plan.__dict__,
        "upstream": upstream_kind,
        "wrk": f"-t1 -c{CONNECTIONS}, bearer token on every request (bench/tokens.lua)",
        "throughput": {t: {n: median_run(r) for n, r in by.items()} for t, by in runs.items()},
        "two_cores": {n: median_run(r) for n, r in two_cores.items()},
        "refresh": refresh,
        "propagation": spread,
        "streaming": streaming,
        "revocation_load": load,
    }
    results["ratios"] = ratios(results)
    results["browser"] = browser_figures(results)
    results["policy"] = policy_figures(results)
    results["forward_auth"] = forward_auth_figures(results)
    return results


def forward_auth_figures(results: dict[str, Any]) -> dict[str, Any] | None:
    """nginx + forward-auth against nginx alone and the inline gateway (cache-warm)."""
    warm = results["throughput"]["small JSON, same 8 tokens (cache-warm)"]
    fronted, nginx, inline = warm.get(FORWARD_AUTH), warm.get("nginx"), warm["gateway"]
    if fronted is None or nginx is None:
        return None
    return {
        "vs_nginx_rps": round(fronted["rps"] / nginx["rps"], 3) if nginx["rps"] else None,
        "vs_inline_rps": round(fronted["rps"] / inline["rps"], 3) if inline["rps"] else None,
        "p99_ms": fronted["p99_ms"],
        "inline_p99_ms": inline["p99_ms"],
        "decision_cpu_us": fronted["cpu_us"],
        "inline_cpu_us": inline["cpu_us"],
    }


POLICY_TARGET = "gateway 5 rules + 1 limit"


def policy_figures(results: dict[str, Any]) -> dict[str, Any]:
    """The cache-warm route with five rules and a rate limit against the plain route."""
    warm = results["throughput"]["small JSON, same 8 tokens (cache-warm)"]
    plain, policy = warm["gateway"], warm[POLICY_TARGET]
    return {
        "vs_plain_rps": round(policy["rps"] / plain["rps"], 3) if plain["rps"] else None,
        "policy_cpu_us": policy["cpu_us"],
        "plain_cpu_us": plain["cpu_us"],
    }


COOKIE_SCENARIO = "small JSON, same 8 sessions in sealed access cookies"


def browser_figures(results: dict[str, Any]) -> dict[str, Any]:
    """A valid access cookie against a bearer token on the same gateway process, and the
    transparent refreshes per second."""
    throughput = results["throughput"]
    bearer = throughput["small JSON, same 8 tokens (cache-warm)"]["gateway browser mode"]
    cookie = throughput[COOKIE_SCENARIO]["gateway browser mode"]
    refresh_title = next(t for t in throughput if t.startswith("transparent refresh"))
    refresh = throughput[refresh_title]["gateway browser mode"]
    return {
        "cookie_vs_bearer_rps": round(cookie["rps"] / bearer["rps"], 3) if bearer["rps"] else None,
        "cookie_cpu_us": cookie["cpu_us"],
        "bearer_cpu_us": bearer["cpu_us"],
        "refreshes_per_s": refresh["rps"],
        "refresh_cpu_us": refresh["cpu_us"],
        "refresh_non_2xx": refresh["non_2xx"],
    }


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """Requests/s ratios; every `*_vs_reference` is against the tuned reference proxy."""
    warm_title, large_title, cold_title = list(results["throughput"])[:3]
    warm = results["throughput"][warm_title]
    large = results["throughput"][large_title]
    cold = results["throughput"][cold_title]
    reference, nginx = warm[REFERENCE]["rps"], warm.get("nginx", {}).get("rps")

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    two = results["two_cores"]
    return {
        "warm_vs_reference": ratio(warm["gateway"]["rps"], reference),
        "warm_p99_vs_reference": ratio(warm["gateway"]["p99_ms"], warm[REFERENCE]["p99_ms"]),
        "warm_vs_naive": ratio(warm["gateway"]["rps"], warm["naive proxy"]["rps"]),
        "warm_vs_nginx": ratio(warm["gateway"]["rps"], nginx),
        "64k_vs_reference": ratio(large["gateway"]["rps"], large[REFERENCE]["rps"]),
        "cold_vs_reference": ratio(cold["gateway cold"]["rps"], reference),
        "reference_vs_naive": ratio(reference, warm["naive proxy"]["rps"]),
        "workers2_vs_nginx2": ratio(two["gateway ×2"]["rps"], two.get("nginx ×2", {}).get("rps")),
    }


# (ratio key, target, stretch, what) — the targets docs/benchmark.md states.
TARGETS: list[tuple[str, float, float | None, str]] = [
    ("warm_vs_reference", 1.5, 1.8, "cache-warm ≥ {t}× the reference (stretch {s}×)"),
    ("cold_vs_reference", 0.8, None, "cache-cold ≥ {t}× the reference"),
    ("workers2_vs_nginx2", 0.3, None, "`--workers 2` ≥ {t} of nginx ×2"),
]


def target_lines(results: dict[str, Any]) -> list[str]:
    """One line per target: met or not, by how much."""
    lines = []
    found = results["ratios"]
    for key, target, stretch, what in TARGETS:
        value = found.get(key)
        label = what.format(t=target, s=stretch)
        if value is None:
            lines.append(f"* {label}: not measured")
            continue
        verdict = "met" if value >= target else f"NOT met ({value / target - 1:+.0%})"
        if stretch is not None and value >= stretch:
            verdict += ", stretch met"
        lines.append(f"* {label}: {value:.2f} — {verdict}")
    p99 = found.get("warm_p99_vs_reference")
    if p99 is not None:
        verdict = "met" if p99 < 1 else "NOT met"
        lines.append(f"* cache-warm p99 below the reference's: {p99:.2f}× — {verdict}")
    return lines


def forward_auth_lines(results: dict[str, Any]) -> list[str]:
    f = results.get("forward_auth")
    if not f:
        return []
    ratio_ok = "met" if f["vs_nginx_rps"] and f["vs_nginx_rps"] >= 0.4 else "NOT met"
    p99_ok = "met" if f["p99_ms"] < f["inline_p99_ms"] else "NOT met"
    return [
        f"* nginx + forward-auth (nginx and the gateway's decision listener on the proxy's "
        f"core): {f['vs_nginx_rps']}× nginx alone (≥ 0.4: {ratio_ok}), "
        f"{f['vs_inline_rps']}× the inline gateway; p99 {f['p99_ms']} ms against the "
        f"inline gateway's {f['inline_p99_ms']} ms (below: {p99_ok}); "
        f"{f['decision_cpu_us']} µs of the gateway's CPU per decision (inline: "
        f"{f['inline_cpu_us']} µs per proxied request)."
    ]


def table(results: dict[str, Any]) -> str:
    pinning, host = results["pinning"], results["machine"]
    lines = [
        f"Measured {results['date']} on {host['cores']} cores ({host['cpu']}); "
        f"proxy pinned to CPU {pinning['proxy_under_test']}, wrk + upstream "
        f"({results['upstream']}) + Redis on CPU {pinning['wrk_upstream_redis']}; "
        f"wrk {results['wrk']}; medians of {results['plan']['rounds']} alternating rounds of "
        f"{results['plan']['seconds']} s.",
        "",
        "| scenario | target | req/s | p50 ms | p99 ms | CPU µs/req | × reference | × nginx |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = list(results["throughput"].items())
    if "two_cores" in results:
        rows.append(("both cores", results["two_cores"]))
    first = results["throughput"][next(iter(results["throughput"]))]
    for title, by_target in rows:
        reference = by_target.get(REFERENCE) or first.get(REFERENCE)
        nginx = by_target.get("nginx") or by_target.get("nginx ×2")
        for name, m in by_target.items():
            vs_reference = (
                f"{m['rps'] / reference['rps']:.2f}" if reference and name != "direct" else ""
            )
            vs_nginx = f"{m['rps'] / nginx['rps']:.2f}" if nginx and name != "direct" else ""
            cpu = f"{m['cpu_us']:.0f}" if m["cpu_us"] else "—"
            status = (
                f" ({m['non_2xx']:,} non-2xx)" if m["non_2xx"] and "revoked" not in title else ""
            )
            lines.append(
                f"| {title} | {name}{status} | {m['rps']:,} | {m['p50_ms']:.2f} | "
                f"{m['p99_ms']:.2f} | {cpu} | {vs_reference} | {vs_nginx} |"
            )
    if "refresh" not in results:  # --targets: the cache-warm rows alone
        return "\n".join([*lines, "", *forward_auth_lines(results)]) + "\n"
    r, p, s, load = (results[k] for k in ("refresh", "propagation", "streaming", "revocation_load"))
    lines += [
        "",
        f"* Refresh: {r['rotations_per_s']:,} rotations/s on one worker with real Redis "
        f"({r['cpu_us_per_rotation']} µs CPU per rotation, {r['concurrent_chains']} chains, "
        f"{r['failures']} failures).",
        f"* Revocation propagation A → B over {p['revocations']:,}: p50 {p['p50_ms']} ms, "
        f"p99 {p['p99_ms']} ms, max {p['max_ms']} ms ({p['note']}).",
        f"* {s.get('uploaded', 0) >> 20} MiB streamed each way: peak RSS growth "
        f"{s['peak_rss_growth_mib']} MiB.",
        f"* {load['entries']:,} revocations loaded in {load['load_seconds']} s, "
        f"+{load['peak_rss_growth_mib']} MiB.",
        "",
        "Against the targets (ratios to the reference, bench/tuned_proxy.py):",
        "",
        *target_lines(results),
    ]
    p = results.get("policy")
    if p:
        verdict = "met" if p["vs_plain_rps"] and p["vs_plain_rps"] >= 0.9 else "NOT met"
        lines.append(
            f"* Route policy: five rules and a rate limit run at {p['vs_plain_rps']}× the plain "
            f"route's req/s on the cache-warm path ({p['policy_cpu_us']} against "
            f"{p['plain_cpu_us']} µs CPU per request); within 10 %: {verdict}."
        )
    lines += forward_auth_lines(results)
    b = results.get("browser")
    if b:
        lines.append(
            f"* Browser sessions: a sealed access cookie runs at {b['cookie_vs_bearer_rps']}× "
            f"the bearer token's req/s on the same gateway ({b['cookie_cpu_us']} against "
            f"{b['bearer_cpu_us']} µs CPU per request); {b['refreshes_per_s']:,} transparent "
            f"refreshes/s on real Redis ({b['refresh_cpu_us']} µs CPU each, "
            f"{b['refresh_non_2xx']} non-2xx)."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 rounds of 3 s, smaller memory runs")
    parser.add_argument("--smoke", action="store_true", help="1 round of 1 s: checks the harness")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--upstream-port", type=int, help="use an upstream already on this port")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    parser.add_argument(
        "--targets",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        help="only the cache-warm scenario, for these targets (comma-separated: "
        + ", ".join(CHOSEN)
        + "); its results never replace latest.*",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.targets or () if name not in CHOSEN]
    if unknown:
        parser.error(f"unknown targets {', '.join(unknown)} (choose from {', '.join(CHOSEN)})")
    if args.rounds < 3 and not args.smoke:
        parser.error("--rounds must be at least 3 (medians of alternating rounds)")
    try:
        results = benchmark(args)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    rendered = table(results)
    if args.targets:  # a few targets' rows: never the latest whole run
        (args.out / f"{stamp}-targets.json").write_text(json.dumps(results, indent=2))
        print(rendered)
        print(f"written to {args.out}/{stamp}-targets.json")
        return 0
    (args.out / f"{stamp}.json").write_text(json.dumps(results, indent=2))
    (args.out / "latest.md").write_text(rendered)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2))
    print(rendered)
    print(f"written to {args.out}/{stamp}.json and latest.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
