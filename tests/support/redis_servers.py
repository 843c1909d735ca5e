"""A private redis-server on a loopback port: its command line, started and waited for."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.processes import wait_for_port


def redis_server_argv(port: int, directory: Path, *, appendonly: bool = False) -> list[str]:
    """A private redis-server on a loopback port: no snapshots, `noeviction` (as production
    should run), AOF only when asked (a restart in an outage test keeps the data)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--dir", str(directory), "--maxmemory-policy", "noeviction"]
    if appendonly:
        argv += ["--appendonly", "yes", "--appendfsync", "always"]
    else:
        argv += ["--appendonly", "no"]
    return argv


def spawn_redis(port: int, directory: Path, *, appendonly: bool = False) -> subprocess.Popen[bytes]:
    """Start `redis_server_argv` and wait until it accepts connections."""
    process = subprocess.Popen(
        redis_server_argv(port, directory, appendonly=appendonly),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
    except RuntimeError:
        process.kill()
        raise
    return process
