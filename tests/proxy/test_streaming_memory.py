"""Bodies stream through a real gateway process with flat memory."""

from __future__ import annotations

import pytest

from bench.measure_streaming import measure


@pytest.mark.slow
async def test_256_mib_each_way_with_flat_memory() -> None:
    result = await measure(256)
    assert result["uploaded"] == 256 << 20
    assert result["downloaded"] == 256 << 20
    assert result["peak_rss_growth_mib"] < 50, result
