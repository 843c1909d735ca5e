"""What replica acknowledgement costs: refresh rotations per second with redis.min_replicas_ack
0 and 1, back to back, on one primary with one replica (not collected by pytest).

    python -m bench.measure_replica_ack                 # 3 alternating rounds of 10 s each
    python -m bench.measure_replica_ack --rounds 1 --seconds 1   # checks the harness

Two gateways (one worker each, pinned to the same core when taskset is there) share a private
redis-server primary and its replica on loopback; 32 clients each refresh their own session in
a loop. Rounds alternate between the two settings and medians are reported, with the latency
of one rotation (p50, p99) and the gateway's CPU per rotation. Prints a markdown table and a
JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.cpu_time import cpu_seconds, process_tree
from bench.run import (
    BENCH_PASSWORD,
    BENCH_USER,
    BenchError,
    Cores,
    Stack,
    Target,
    gateway_settings,
    start_gateway,
)
from gateway.tokens.keys import generate_key_material, write_secret_file
from tests.support.processes import free_port
from tests.support.redis_topology import start_replicated

CHAINS = 32


async def rotations(target: Target, seconds: float, chains: int = CHAINS) -> dict[str, Any]:
    """`chains` sessions, each refreshing its newest token in a loop for `seconds`."""
    base = f"http://127.0.0.1:{target.port}"
    connector = aiohttp.TCPConnector(limit=chains)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tokens = []
        for i in range(chains):
            body = {"username": BENCH_USER, "password": BENCH_PASSWORD, "device_id": f"d{i}"}
            async with http.post(f"{base}/auth/login", json=body) as resp:
                if resp.status != 200:
                    raise BenchError(f"{target.name}: login answered {resp.status}")
                tokens.append((await resp.json())["refresh_token"])
        latencies: list[float] = []
        failures = 0
        deadline = time.monotonic() + seconds

        async def chain(index: int) -> None:
            nonlocal failures
            while time.monotonic() < deadline:
                started = time.perf_counter()
                payload = {"refresh_token": tokens[index]}
                async with http.post(f"{base}/auth/refresh", json=payload) as resp:
                    if resp.status != 200:
                        failures += 1
                        return
                    tokens[index] = (await resp.json())["refresh_token"]
                latencies.append(time.perf_counter() - started)

        pids = process_tree(target.pid) if target.pid else []
        cpu_before, started = cpu_seconds(pids), time.monotonic()
        await asyncio.gather(*(chain(i) for i in range(chains)))
        elapsed, cpu = time.monotonic() - started, cpu_seconds(pids) - cpu_before
    latencies.sort()
    count = len(latencies)
    return {
        "rotations_per_s": round(count / elapsed),
        "p50_ms": round(latencies[count // 2] * 1000, 2) if count else None,
        "p99_ms": round(latencies[max(0, int(count * 0.99) - 1)] * 1000, 2) if count else None,
        "cpu_us_per_rotation": round(cpu / count * 1e6) if count else None,
        "failures": failures,
    }


def measure(rounds: int, seconds: float) -> dict[str, Any]:
    cores = Cores.detect()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-ack-"))
    stack = Stack(workdir)
    redis = start_replicated(workdir / "redis", replicas=1)
    try:
        write_secret_file(workdir / "signing.pem", generate_key_material("EdDSA"))
        targets = []
        for acks in (0, 1):
            config = gateway_settings(workdir, free_port(), redis.url)
            config["redis"].update(min_replicas_ack=acks, replica_ack_timeout=0.5)
            config["logging"]["access_log"] = False
            targets.append(start_gateway(stack, f"acks {acks}", config, cores.proxy))
        runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
        for _ in range(rounds):
            for target in targets:  # back to back, alternating
                runs[target.name].append(asyncio.run(rotations(target, seconds)))
        return {
            "rounds": rounds,
            "seconds": seconds,
            "concurrent_chains": CHAINS,
            "proxy_cpu": cores.proxy,
            "results": {name: _median(found) for name, found in runs.items()},
            "runs": runs,
        }
    finally:
        stack.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float | None:
        values = [r[key] for r in runs if r[key] is not None]
        return round(statistics.median(values), 2) if values else None

    keys = ("rotations_per_s", "p50_ms", "p99_ms", "cpu_us_per_rotation")
    return {**{k: med(k) for k in keys}, "failures": sum(r["failures"] for r in runs)}


def table(figures: dict[str, Any]) -> str:
    lines = [
        f"Refresh rotations, one primary + one replica on loopback, {CHAINS} chains, "
        f"medians of {figures['rounds']} alternating rounds of {figures['seconds']:g} s:",
        "",
        "| redis.min_replicas_ack | rotations/s | p50 ms | p99 ms | CPU µs/rotation | failures |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in figures["results"].items():
        lines.append(
            f"| {name.split()[-1]} | {r['rotations_per_s']} | {r['p50_ms']} | {r['p99_ms']} "
            f"| {r['cpu_us_per_rotation']} | {r['failures']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument("--seconds", type=float, default=10, help="seconds per run (10)")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("redis-server is required (apt-get install redis-server)")
        return 2
    try:
        figures = measure(args.rounds, args.seconds)
    except BenchError as exc:
        print(f"measure_replica_ack: {exc}")
        return 2
    print(table(figures))
    print(json.dumps(figures["results"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
