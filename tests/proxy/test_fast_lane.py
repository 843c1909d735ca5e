"""The fast lane: plain proxied requests skip aiohttp's router and middleware chain, with the
same outcome as through the app; everything else goes through the app as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import Settings
from gateway.edge.connections import EdgeServer
from gateway.proxy.fastlane import FastLane, own_endpoints
from tests.support.gateway_client import GatewayClient
from tests.support.jwt_tokens import bearer, mint
from tests.support.recording_upstream import Upstream


def lane_of(client: GatewayClient) -> FastLane:
    runner = client.server.runner
    assert runner is not None and isinstance(runner.server, EdgeServer)
    lane = runner.server.handler
    assert isinstance(lane, FastLane)
    return lane


def count_app_calls(lane: FastLane) -> list[str]:
    """Record the paths the lane leaves to the application."""
    calls: list[str] = []
    application = lane._application

    def recording(request: web.BaseRequest) -> Any:
        calls.append(request.rel_url.raw_path)
        return application(request)

    lane._application = recording
    return calls


def test_own_endpoints_come_from_the_router(settings: Settings) -> None:
    paths, prefixes = own_endpoints(create_app(settings).router)
    assert {"/healthz", "/readyz", "/metrics", "/auth/login", "/refresh"} <= paths
    assert {"/.well-known/jwks.json", "/auth/sessions"} <= paths
    assert prefixes == ("/auth/sessions/",)
    assert "/" not in paths and "/{tail}" not in paths  # the catch-all is the lane's


@pytest.mark.parametrize(
    ("path", "headers", "takes"),
    [
        ("/api/orders/7", {}, True),
        ("/", {}, True),
        ("/healthz/", {}, True),  # not the health endpoint: the router would proxy it too
        ("/healthz", {}, False),
        ("/auth/login", {}, False),
        ("/auth/sessions/abc", {}, False),
        ("/api/%2e%2e/admin", {}, False),  # needs decoding: the router may see another path
        ("/%68ealthz", {}, False),
        ("/api/../healthz", {}, False),
        ("/api//x", {}, False),
        ("/api\\x", {}, False),
        ("*", {}, False),
        ("/api", {"Expect": "100-continue"}, False),
        ("/ws", {"Upgrade": "websocket"}, False),
        ("/" + "a" * 9000, {}, False),
    ],
)
async def test_which_requests_take_the_lane(
    gateway: GatewayClient, path: str, headers: dict[str, str], takes: bool
) -> None:
    assert lane_of(gateway).takes(path, headers) is takes


async def test_lane_requests_skip_the_app_and_are_served_the_same(
    gateway: GatewayClient, upstream: Upstream, key_files: dict[str, Path]
) -> None:
    calls = count_app_calls(lane_of(gateway))
    token = mint(key_files, sub="lane-user")
    fast = await gateway.get("/api/x?q=1", headers={**bearer(token), "X-User-Id": "forged"})
    slow = await gateway.get("/api//x?q=1", headers={**bearer(token), "X-User-Id": "forged"})
    assert calls == ["/api//x"]  # only the path that needs normalizing went to the app
    assert fast.status == slow.status == 200
    assert fast.headers["X-Request-Id"] and slow.headers["X-Request-Id"]
    first, second = upstream.headers_of(0), upstream.headers_of(1)
    assert upstream.received[0].path == upstream.received[1].path == "/api/x"
    for seen in (first, second):
        assert seen["x-user-id"] == ["lane-user"]
        assert "authorization" not in seen
    refused = await gateway.get("/api/x")
    assert refused.status == 401
    assert (await refused.json())["error"] == "invalid_request"
    assert len(upstream.received) == 2  # the refusal never reached the upstream
    health = await gateway.get("/healthz")
    assert health.status == 200
    assert calls == ["/api//x", "/healthz"]
    metrics = await (await gateway.get("/metrics")).text()
    assert 'gateway_requests_total{method="GET",route="/",status_class="2xx"} 2.0' in metrics
    assert 'gateway_requests_total{method="GET",route="/",status_class="4xx"} 1.0' in metrics
