"""Rate limits with real parts: two `gateway serve` instances on one redis-server in shared
mode, each under its own wrk, four users' tokens: each user's admitted requests stay within
a stated tolerance of what the limit allows (an accuracy check, not a timing one); and a
client that honours Retry-After (urllib3's Retry) gets every request through, without an
error, at the limit's pace."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import urllib3
from urllib3.util.retry import Retry

from bench.measure_rate_limits import measure
from gateway.config import Settings
from tests.conftest import INSTALL_REDIS
from tests.support.gateway_client import GatewayFactory
from tests.support.jwt_tokens import bearer, mint
from tests.support.programs import require
from tests.support.recording_upstream import Upstream

pytestmark = pytest.mark.slow

# Admitted per user over the run, against burst + rate × seconds: a share reserved at the
# last sync before wrk stops goes unused (about rate × one or two sync intervals), and the
# shared buckets admit nothing beyond the bucket but a new worker's first share.
TOLERANCE = (0.80, 1.10)


@pytest.mark.timeout(180)
async def test_two_instances_on_one_redis_hold_each_users_rate(tmp_path: Path) -> None:
    require("redis-server", install=INSTALL_REDIS)
    require("wrk", install="apt-get install wrk")
    result = await measure(instances=2, users=4, rate=20, burst=20, seconds=5, workdir=tmp_path)
    assert result["sent"] > 4 * result["allowed_per_user"]  # far more than the limit allows
    low, high = TOLERANCE
    for user, admitted in result["admitted_per_user"].items():
        ratio = admitted / result["allowed_per_user"]
        assert low <= ratio <= high, (user, admitted, result)


async def test_a_client_honouring_retry_after_converges_without_errors(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstream: Upstream,
    key_files: dict[str, Path],
) -> None:
    settings = settings_factory(
        routes=[
            {
                "prefix": "/",
                "upstream": upstream.url,
                "limits": [{"key": "sub", "rate": 4, "per": 1, "burst": 2}],
            }
        ]
    )
    gateway = await gateway_factory(settings)
    url = str(gateway.make_url("/api/items"))
    retry = Retry(
        total=20, status_forcelist=[429], respect_retry_after_header=True, backoff_factor=0
    )
    headers = bearer(mint(key_files))

    def client() -> list[int]:
        with urllib3.PoolManager(retries=retry) as http:
            return [http.request("GET", url, headers=headers).status for _ in range(8)]

    statuses = await asyncio.to_thread(client)
    assert statuses == [200] * 8
    assert len(upstream.received) == 8  # every request got through exactly once
