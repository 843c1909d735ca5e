"""Rate limits on proxied routes through the running gateway: token buckets per key, 429 with
Retry-After and the RateLimit fields, nothing refused reaches the upstream; the client's
address behind (un)trusted proxies; shared buckets across gateways on one Redis, and each
gateway on its own while Redis is away."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from gateway.appkeys import SERVICES
from gateway.config import Settings
from gateway.proxy.route_limits import RouteLimiter
from tests.support.clock import FakeClock
from tests.support.gateway_client import GatewayClient, GatewayFactory
from tests.support.jwt_tokens import bearer, mint
from tests.support.recording_upstream import Upstream


def limited(upstream: Upstream, limits: list[dict[str, Any]], **route: Any) -> list[Any]:
    return [
        {"prefix": "/api/", "upstream": upstream.url, "limits": limits, **route},
        {"prefix": "/", "upstream": upstream.url, "policy": "public"},
    ]


@pytest.fixture
def make(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstream: Upstream,
    clock: FakeClock,
    fake_server: fakeredis.FakeServer,
) -> Callable[..., Any]:
    async def start(
        limits: list[dict[str, Any]], route: Any = None, **sections: Any
    ) -> GatewayClient:
        settings = settings_factory(routes=limited(upstream, limits, **(route or {})), **sections)
        redis = fakeredis.FakeAsyncRedis(server=fake_server)
        return await gateway_factory(settings, redis=redis, clock=clock)

    return start


def limiter_of(gateway: GatewayClient) -> RouteLimiter:
    return gateway.app[SERVICES].resources.limiter


async def test_over_the_limit_is_429_with_retry_after_and_ratelimit_fields(
    make: Callable[..., Any], upstream: Upstream, key_files: dict[str, Path], clock: FakeClock
) -> None:
    gateway = await make([{"key": "sub", "rate": 1, "per": 2, "burst": 3}])
    alice = bearer(mint(key_files))
    for _ in range(3):
        assert (await gateway.get("/api/x", headers=alice)).status == 200
    refused = await gateway.get("/api/x", headers=alice)
    assert refused.status == 429
    assert (await refused.json())["error"] == "rate_limited"
    assert refused.headers["Retry-After"] == "2"
    assert refused.headers["RateLimit-Policy"] == '"sub";q=3;w=6'
    assert refused.headers["RateLimit"] == '"sub";r=0;t=6'
    assert len(upstream.received) == 3  # the upstream never sees a refused request
    bob = bearer(mint(key_files, sub="bob"))
    assert (await gateway.get("/api/x", headers=bob)).status == 200  # a key of its own
    clock.now += 2  # one token back
    assert (await gateway.get("/api/x", headers=alice)).status == 200
    assert (await gateway.get("/api/x", headers=alice)).status == 429
    metrics = await (await gateway.get("/metrics")).text()
    assert 'gateway_rate_limited_total{key="sub",route="/api/"} 2.0' in metrics


async def test_every_limit_of_a_route_applies_and_a_refusal_takes_no_token(
    make: Callable[..., Any], key_files: dict[str, Path], clock: FakeClock
) -> None:
    gateway = await make(
        [
            {"key": "sub", "rate": 1, "per": 60, "burst": 3},
            {"key": "session", "rate": 1, "per": 60, "burst": 1},
        ]
    )
    one = bearer(mint(key_files, sid="s-1"))
    two = bearer(mint(key_files, sid="s-2"))
    assert (await gateway.get("/api/x", headers=one)).status == 200
    refused = await gateway.get("/api/x", headers=one)  # the session's bucket is empty
    assert refused.status == 429
    assert refused.headers["RateLimit-Policy"] == '"sub";q=3;w=180, "session";q=1;w=60'
    assert refused.headers["RateLimit"] == '"sub";r=2;t=60, "session";r=0;t=60'
    # the refusal took nothing from alice's own bucket: two more sessions' worth remain
    assert (await gateway.get("/api/x", headers=two)).status == 200
    three = bearer(mint(key_files, sid="s-3"))
    assert (await gateway.get("/api/x", headers=three)).status == 200
    assert (await gateway.get("/api/x", headers=bearer(mint(key_files, sid="s-4")))).status == 429


async def test_rotating_forwarded_addresses_from_an_untrusted_peer_are_one_client(
    make: Callable[..., Any],
) -> None:
    gateway = await make([{"key": "ip", "rate": 1, "per": 60, "burst": 2}], {"policy": "public"})
    statuses = [
        (await gateway.get("/api/x", headers={"X-Forwarded-For": f"198.51.100.{i}"})).status
        for i in range(4)
    ]
    assert statuses == [200, 200, 429, 429]


async def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(
    make: Callable[..., Any],
) -> None:
    gateway = await make(
        [{"key": "ip", "rate": 1, "per": 60, "burst": 2}],
        {"policy": "public"},
        proxy={"trusted_proxies": ["127.0.0.0/8"]},
    )
    for i in range(4):  # four clients behind the proxy, each with a bucket of its own
        headers = {"X-Forwarded-For": f"203.0.113.9, 198.51.100.{i}"}
        assert (await gateway.get("/api/x", headers=headers)).status == 200
    # a client's own X-Forwarded-For entries (left of the proxy's) are not believed
    for spoofed in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        headers = {"X-Forwarded-For": f"{spoofed}, 198.51.100.0"}
        resp = await gateway.get("/api/x", headers=headers)
    assert resp.status == 429


async def test_anonymous_requests_count_under_their_address(
    make: Callable[..., Any], key_files: dict[str, Path]
) -> None:
    gateway = await make([{"key": "sub", "rate": 1, "per": 60, "burst": 1}], {"policy": "optional"})
    assert (await gateway.get("/api/x")).status == 200
    assert (await gateway.get("/api/x")).status == 429
    assert (await gateway.get("/api/x", headers=bearer(mint(key_files)))).status == 200


async def test_limits_apply_to_browser_cookies(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    upstream: Upstream,
) -> None:
    settings = browser_settings_factory(
        routes=limited(upstream, [{"key": "sub", "rate": 1, "per": 60, "burst": 1}])
    )
    gateway = await gateway_factory(settings)
    login = await gateway.post(
        "/auth/browser/login", json={"username": "alice", "password": "wonderland"}
    )
    assert login.status == 200
    headers = {"Sec-Fetch-Site": "same-origin"}
    assert (await gateway.get("/api/page", headers=headers)).status == 200
    assert (await gateway.get("/api/page", headers=headers)).status == 429


async def test_shared_buckets_hold_across_gateways(
    make: Callable[..., Any], upstream: Upstream, key_files: dict[str, Path]
) -> None:
    shared = {"mode": "shared", "sync_interval": 5}
    limits = [{"key": "sub", "rate": 1, "per": 600, "burst": 10}]
    a = await make(limits, rate_limiting=shared)
    b = await make(limits, rate_limiting=shared)
    for gateway in (a, b, a):
        await limiter_of(gateway).sync()  # both now know there are two of them
    alice = bearer(mint(key_files))
    admitted = 0
    for _ in range(3):
        for gateway in (a, b):  # each takes what it can between two syncs
            for _ in range(10):
                admitted += (await gateway.get("/api/x", headers=alice)).status == 200
        for gateway in (a, b):
            await limiter_of(gateway).sync()
    # the burst across both, not per gateway: each starts on its share (burst / 2) and then
    # takes what Redis says is left
    assert admitted == 10
    for gateway in (a, b):
        assert (await gateway.get("/api/x", headers=alice)).status == 429
    assert len(upstream.received) == 10


async def test_shared_buckets_fall_back_to_local_while_redis_is_away(
    make: Callable[..., Any], fake_server: fakeredis.FakeServer, key_files: dict[str, Path]
) -> None:
    shared = {"mode": "shared", "sync_interval": 5}
    gateway = await make([{"key": "sub", "rate": 1, "per": 600, "burst": 4}], rate_limiting=shared)
    limiter = limiter_of(gateway)
    await limiter.sync()
    fake_server.connected = False
    await limiter.sync()
    assert not limiter.shared
    alice = bearer(mint(key_files))
    statuses = [(await gateway.get("/api/x", headers=alice)).status for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]  # the whole burst, counted here alone
    fake_server.connected = True
    await limiter.sync()
    assert limiter.shared
    metrics = await (await gateway.get("/metrics")).text()
    assert 'gateway_rate_limit_syncs_total{outcome="failed"} 1.0' in metrics
