"""The `gateway` command in a child process, with no GATEWAY_* variable from the shell."""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import clean_env


def run_cli(
    *args: str, stdin: str | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m gateway ARGS` in a child process (`env` added to a clean environment)."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**clean_env(), **(env or {})},
        timeout=timeout,
    )
