"""Child processes on loopback, for the tests, the benchmark and the drills: a free port, waiting
until something listens on it, an environment without GATEWAY_* overrides, stopping what was
started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time


def free_port() -> int:
    """A TCP port nothing listens on at the moment (on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This process's environment without any GATEWAY_* override, for a child process."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}


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
