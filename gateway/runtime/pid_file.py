"""The pid file of `gateway serve --pid-file F`, and `gateway reload --pid-file F`: the
process in it (the supervisor under --workers) is sent SIGHUP, which reloads every worker."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PidFileError(Exception):
    """The pid file names no running gateway (missing, unreadable, stale)."""


@contextmanager
def pid_file(path: Path | None) -> Iterator[None]:
    """This process's pid in `path` while the block runs (written whole or not at all);
    removed afterwards unless another gateway has written its own since."""
    if path is None:
        yield
        return
    pid = str(os.getpid())
    partial = path.with_name(f".{path.name}.{pid}")
    partial.write_text(pid + "\n")
    os.replace(partial, path)
    try:
        yield
    finally:
        try:
            if path.read_text().strip() == pid:
                path.unlink()
        except OSError:
            pass  # gone already


def gateway_pid(path: Path) -> int:
    """The pid of the running gateway `path` names; PidFileError saying why there is none."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise PidFileError(f"cannot read pid file {str(path)!r}: {exc.strerror}") from None
    if not text.isdigit() or int(text) <= 1:
        raise PidFileError(f"pid file {str(path)!r} holds no process id")
    pid = int(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise PidFileError(
            f"no process {pid} is running (pid file {str(path)!r} is stale)"
        ) from None
    except PermissionError:
        raise PidFileError(f"process {pid} belongs to another user") from None
    # SECURITY: a stale pid file may name a process that reused the pid; signal only a
    # gateway (where /proc tells).
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # no /proc here, or the process just ended (the signal will tell)
        cmdline = b"gateway"
    if b"gateway" not in cmdline:
        raise PidFileError(f"process {pid} is not a gateway (pid file {str(path)!r} is stale)")
    return pid


def signal_reload(path: Path) -> int:
    """SIGHUP to the gateway `path` names (every worker reloads); its pid."""
    pid = gateway_pid(path)
    os.kill(pid, signal.SIGHUP)
    return pid
