"""Programs some tests need installed (redis-server, chromium, promtool): without them a test is
skipped on a developer's machine and fails under CI, where they must be there."""

from __future__ import annotations

import os
import shutil

import pytest


def require(*programs: str, install: str) -> None:
    """Skip the calling test unless every program is found (a name on PATH or a path); under CI,
    fail it instead. `install` says how to get them (`apt-get install …`)."""
    missing = [program for program in programs if shutil.which(program) is None]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not installed ({install})"
    if os.environ.get("CI"):
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)
