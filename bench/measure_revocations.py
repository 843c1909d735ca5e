"""Revocation figures on a private redis-server (not collected by pytest).

python -m bench.measure_revocations propagation [N]   # revoke through A, time until B's view has it
python -m bench.measure_revocations load [N]          # load N revocations into a view
"""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.store import RevocationStore, connect_redis
from gateway.store.revocations import Revocation, stored_value
from gateway.tokens.revocation_sync import RevocationSync
from gateway.tokens.revocation_view import RevocationView
from tests.support.processes import free_port
from tests.support.redis_servers import spawn_redis


async def propagation(count: int, url: str) -> dict[str, float]:
    """Two views (two 'instances') on one Redis; revoke through A's store, wait for B's view."""
    clients = [
        connect_redis(url, connect_timeout=1, socket_timeout=2, max_connections=8) for _ in range(2)
    ]
    store_a = RevocationStore(clients[0], clock=time.time)
    store_b = RevocationStore(clients[1], clock=time.time)
    view_b = RevocationView(clock=time.time)
    sync_b = RevocationSync(
        store_b, view_b, clock=time.time, check_interval=1.0, max_staleness=30, fail_mode="closed"
    )
    task = asyncio.create_task(sync_b.run())
    while not sync_b.connected:
        await asyncio.sleep(0.01)
    delays = []
    for i in range(count):
        sid = f"sess-{i}"
        start = time.perf_counter()
        await store_a.revoke_session(sid, until=time.time() + 600)
        while sid not in view_b._sid:
            await asyncio.sleep(0)
        delays.append((time.perf_counter() - start) * 1000)
    task.cancel()
    for client in clients:
        await client.aclose()
    delays.sort()
    return {
        "revocations": count,
        "p50_ms": round(statistics.median(delays), 3),
        "p99_ms": round(delays[int(len(delays) * 0.99) - 1], 3),
        "max_ms": round(delays[-1], 3),
    }


async def load(count: int, url: str) -> dict[str, float]:
    client = connect_redis(url, connect_timeout=1, socket_timeout=30, max_connections=8)
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        record = Revocation("jti", f"jti-{i:08d}-{'x' * 10}", now + 3600)
        pipe.set(f"gw:rev:jti:{record.id}", stored_value(record), ex=3600)
        if len(pipe) >= 10_000:
            await pipe.execute()
    await pipe.execute()
    store = RevocationStore(client, clock=time.time)
    view = RevocationView(clock=time.time)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    sync = RevocationSync(
        store, view, clock=time.time, check_interval=1, max_staleness=30, fail_mode="closed"
    )
    await sync.reload()
    seconds = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await client.aclose()
    return {
        "entries": len(view),
        "load_seconds": round(seconds, 2),
        "peak_rss_growth_mib": round((rss_after - rss_before) / 1024, 1),
    }


def main() -> None:
    what = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else (100 if what == "propagation" else 1_000_000)
    assert shutil.which("redis-server")
    port = free_port()
    directory = Path(tempfile.mkdtemp())
    process = spawn_redis(port, directory)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        runner = propagation if what == "propagation" else load
        print(json.dumps(asyncio.run(runner(count, url))))
    finally:
        process.terminate()
        process.wait()
        subprocess.run(["rm", "-rf", str(directory)], check=False)


if __name__ == "__main__":
    main()
