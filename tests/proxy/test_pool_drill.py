"""The upstream pool drill (bench/drills/pool_faults.py, part of `make chaos`): three targets
under wrk load, one killed and another stalled, then both brought back. No GET fails (a retry
or another target serves it), no POST reaches a target twice, only POSTs in flight on the
failing targets fail, and the killed target serves again within its back-off."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.drills.pool_faults import CONNECTIONS, pool_drill
from tests.support.programs import require


@pytest.mark.slow
async def test_a_killed_and_a_stalled_target_under_load(tmp_path: Path) -> None:
    require("wrk", install="apt-get install wrk")
    report = await pool_drill("wrk", tmp_path, 3.0)
    table = "\n".join([*report.table(), *report.summary()])
    print(table)  # shown with -s or when the test fails
    assert all(p.gets.ok > 0 and p.posts.ok > 0 for p in report.phases), table
    assert report.get_failures == 0, table
    assert report.duplicates == 0, table
    # at most the POSTs in flight on the killed target and on the stalled one
    assert report.post_failures <= 2 * CONNECTIONS, table
    assert report.back_after is not None and report.back_after <= report.back_bound, table
