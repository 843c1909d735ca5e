"""Stream a large upload and download through a gateway process; report its peak RSS.

    python -m bench.measure_streaming [MiB]      (default 1024)

Used by tests/proxy/test_streaming_memory.py with a smaller size; run by hand for the 1 GiB figure.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.processes import clean_env, free_port

BLOCK = b"\0" * (1 << 20)


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


async def sink_and_source(request: web.Request) -> web.StreamResponse:
    if request.method == "POST":
        size = 0
        async for chunk in request.content.iter_chunked(1 << 20):
            size += len(chunk)
        return web.json_response({"received": size})
    total = int(request.query["size"])
    response = web.StreamResponse()
    response.content_length = total
    await response.prepare(request)
    for _ in range(total // len(BLOCK)):
        await response.write(BLOCK)
    await response.write_eof()
    return response


async def measure(mib: int) -> dict[str, Any]:
    size = mib << 20
    app = web.Application(client_max_size=size + 1)
    app.router.add_route("*", "/{tail:.*}", sink_and_source)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    upstream_port, port, admin_port = free_port(), free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", upstream_port).start()
    workdir = Path(tempfile.mkdtemp())
    key = workdir / "key.pem"
    subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "generate", "--out", str(key)],
        check=True,
        capture_output=True,
    )
    config = {
        "listen": {"port": port},
        "admin": {"port": admin_port},
        "keys": {"active": "k", "items": [{"kid": "k", "private_key_file": str(key)}]},
        "proxy": {"max_body_size": 0},
        "routes": [
            {"prefix": "/", "upstream": f"http://127.0.0.1:{upstream_port}", "policy": "public"}
        ],
    }
    (workdir / "config.yaml").write_text(json.dumps(config))
    env = clean_env()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(workdir / "config.yaml")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    async with session.get(f"{base}/warmup?size=0") as resp:
                        await resp.read()
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            before = peak_rss_kib(gateway.pid)

            async def body() -> Any:
                for _ in range(mib):
                    yield BLOCK

            started = time.monotonic()
            async with session.post(f"{base}/upload", data=body()) as resp:
                answer = await resp.json()
                assert "received" in answer, (resp.status, answer)
                received = answer["received"]
            upload_s = time.monotonic() - started
            started = time.monotonic()
            downloaded = 0
            async with session.get(f"{base}/download?size={size}") as resp:
                async for chunk in resp.content.iter_chunked(1 << 20):
                    downloaded += len(chunk)
            download_s = time.monotonic() - started
            after = peak_rss_kib(gateway.pid)
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
        await runner.cleanup()
    return {
        "mib": mib,
        "uploaded": received,
        "downloaded": downloaded,
        "upload_seconds": round(upload_s, 2),
        "download_seconds": round(download_s, 2),
        "peak_rss_before_mib": round(before / 1024, 1),
        "peak_rss_after_mib": round(after / 1024, 1),
        "peak_rss_growth_mib": round((after - before) / 1024, 1),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1024))))
