"""How closely shared rate limits hold across gateway instances: N `gateway serve`
processes (each with W workers) on one redis-server, each under its own wrk, every request
carrying one of K users' tokens; a route limited per `sub`. The upstream (in this process)
counts what each user got through; the admitted rate per user is compared with what the
bucket allows over the run (burst + rate × seconds).

    python -m bench.measure_rate_limits                 # the table of docs/policy.md
    python -m bench.measure_rate_limits --instances 2 --seconds 5

Prints a markdown table, and the figures as JSON on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.config import Settings
from gateway.services import build_issuer
from gateway.tokens.keys import generate_key_material, load_keyring, write_secret_file
from tests.support.processes import clean_env, free_port, stop_processes, wait_for_port
from tests.support.redis_servers import spawn_redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


async def measure(
    *,
    instances: int,
    workers: int = 1,
    users: int = 4,
    rate: float = 20,
    burst: int = 20,
    seconds: int = 6,
    mode: str = "shared",
    connections: int = 8,
    workdir: Path,
) -> dict[str, Any]:
    """One run; the admitted requests per user and their ratio to what the limit allows."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    admitted: Counter[str] = Counter()

    async def count(request: web.Request) -> web.Response:
        admitted[request.headers.get("X-User-Id", "")] += 1
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    upstream_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", upstream_port).start()
    redis_port = free_port()
    redis = spawn_redis(redis_port, workdir)
    key_file = workdir / "signing.pem"
    if not key_file.exists():
        write_secret_file(key_file, generate_key_material("EdDSA"))
    processes = []
    try:
        ports = []
        for index in range(instances):
            port = free_port()
            config = {
                "listen": {"port": port, "workers": workers},
                "admin": {"port": free_port()},
                "redis": {"url": f"redis://127.0.0.1:{redis_port}/0"},
                "keys": {
                    "active": "k",
                    "items": [{"kid": "k", "private_key_file": str(key_file)}],
                },
                "tokens": {"access_ttl": 3600},
                "logging": {"access_log": False},
                "rate_limiting": {"mode": mode},
                "routes": [
                    {
                        "prefix": "/",
                        "upstream": f"http://127.0.0.1:{upstream_port}",
                        "limits": [{"key": "sub", "rate": rate, "per": 1, "burst": burst}],
                    }
                ],
            }
            path = workdir / f"gateway-{index}.json"
            path.write_text(json.dumps(config))
            with (workdir / f"gateway-{index}.log").open("wb") as log:
                process = await asyncio.create_subprocess_exec(
                    *(sys.executable, "-m", "gateway", "serve", "--config", str(path)),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=log,
                    env=clean_env(),
                    cwd=ROOT,
                )
            processes.append(process)
            await asyncio.to_thread(wait_for_port, port)
            ports.append(port)
        settings = Settings.model_validate(
            {"keys": {"active": "k", "items": [{"kid": "k", "private_key_file": str(key_file)}]}}
        )
        issuer = build_issuer(settings, load_keyring(settings.keys))
        assert issuer is not None
        names = [f"user-{i}" for i in range(users)]
        tokens = workdir / "tokens.txt"
        tokens.write_text(
            "\n".join(issuer.issue(sub=n, sid=f"s-{n}", roles=[]).token for n in names) + "\n"
        )
        await asyncio.sleep(max(1.0, workers * 0.5))  # every worker listening and synced once
        runs = [
            await asyncio.create_subprocess_exec(
                wrk,
                "-t1",
                f"-c{connections}",
                f"-d{int(seconds)}s",
                "-s",
                str(HERE / "tokens.lua"),
                f"http://127.0.0.1:{port}/limited",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**clean_env(), "TOKENS_FILE": str(tokens)},
            )
            for port in ports
        ]
        outputs = [await run.communicate() for run in runs]
        sent = 0
        for out, err in outputs:
            lines = [x for x in out.decode().splitlines() if x.startswith("JSON ")]
            if not lines:
                raise RuntimeError(f"wrk failed: {err.decode()[-500:]} {out.decode()[-500:]}")
            sent += json.loads(lines[0][5:])["requests"]
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            await process.wait()
        stop_processes([redis])
        await runner.cleanup()
    allowed = burst + rate * seconds
    per_user = {name: admitted[name] for name in names}
    ratios = [count / allowed for count in per_user.values()]
    return {
        "instances": instances,
        "workers": workers,
        "mode": mode,
        "users": users,
        "rate": rate,
        "burst": burst,
        "seconds": seconds,
        "sent": sent,
        "allowed_per_user": allowed,
        "admitted_per_user": per_user,
        "min_ratio": round(min(ratios), 3),
        "max_ratio": round(max(ratios), 3),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| instances × workers | mode | requests sent | allowed per user | admitted per user "
        "(min–max) | admitted / allowed |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        counts = r["admitted_per_user"].values()
        lines.append(
            f"| {r['instances']} × {r['workers']} | {r['mode']} | {r['sent']:,} | "
            f"{r['allowed_per_user']:.0f} | {min(counts)}–{max(counts)} | "
            f"{r['min_ratio']:.2f}–{r['max_ratio']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--instances", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--local", action="store_true", help="also measure local mode")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("shared", "local") if args.local else ("shared",):
            for n in args.instances:
                workdir = Path(tmp) / f"{mode}-{n}"
                workdir.mkdir()
                started = time.monotonic()
                rows.append(
                    asyncio.run(
                        measure(
                            instances=n,
                            workers=args.workers,
                            seconds=args.seconds,
                            mode=mode,
                            workdir=workdir,
                        )
                    )
                )
                print(f"{mode} ×{n}: {time.monotonic() - started:.1f} s", file=sys.stderr)
    print(table(rows))
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
