"""Reload under load (bench/drills/reload.py): `gateway serve --workers 2` on a real
redis-server under wrk while SIGHUP reloads its route table, users file and signing keys ten
times, one of them with a broken users file: no request fails, every worker serves each valid
configuration, and the broken one is refused while the previous one keeps serving."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.drills.reload import BROKEN_AT, RELOADS, drill
from tests.support.programs import require


@pytest.mark.redis
@pytest.mark.slow
async def test_ten_reloads_under_load_fail_no_request(tmp_path: Path) -> None:
    require("redis-server", install="apt-get install redis-server")
    require("wrk", install="apt-get install wrk")
    report = await drill(tmp_path, interval=1.0)  # DrillError when a reload misbehaves
    log = "\n".join(report.log)
    print(log)  # the drill's rows, shown with -s or when the test fails
    assert [row.number for row in report.rows] == list(range(1, RELOADS + 1)), log
    outcomes = ["refused" if n == BROKEN_AT else "ok" for n in range(1, RELOADS + 1)]
    assert [row.outcome for row in report.rows] == outcomes, log
    assert report.requests > 0
    assert report.failed == 0, f"{report.statuses} {report.socket_errors}\n{log}"
