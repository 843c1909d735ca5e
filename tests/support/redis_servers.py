"""A private redis-server on a loopback port: its command line, started and waited for, stopped
and started again."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
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


@dataclass
class RedisServer:
    """A redis-server a test started, with AOF on: stopped and started again, it keeps its data."""

    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def start(self) -> None:
        """(Re)start on the same port, e.g. after stop() in an outage test."""
        self.process = spawn_redis(self.port, self.directory, appendonly=True)
