"""Process helpers shared by the benchmark scripts: free ports, redis-server, CPU time."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, process: subprocess.Popen[bytes] | None = None, limit: float = 30
) -> None:
    """Until something accepts on 127.0.0.1:port; fails fast if `process` exits first."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {limit}s")


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


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate every process still running (resumed first, in case a drill paused it),
    wait for each, and kill what does not stop within 15 s."""
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the gateway's workers)."""
    found = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in children:
        found.extend(process_tree(int(child)))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes, from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLOCK_TICKS
