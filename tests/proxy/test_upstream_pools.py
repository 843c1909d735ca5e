"""Named upstream pools through the running gateway: balancing, targets taken out of rotation
and brought back, failover and retries (never a POST twice), every target down, and the
pool's concurrency cap. Targets are real servers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from yarl import URL

from gateway.config import Settings
from gateway.proxy.upstream import Endpoint, UpstreamPool
from tests.support.faulty_upstream import Fault, FaultyUpstream
from tests.support.gateway_client import GatewayClient, GatewayFactory
from tests.support.processes import free_port
from tests.support.recording_upstream import RecordingUpstreams
from tests.support.waiting import eventually

FaultyFactory = Callable[[Fault], Awaitable[FaultyUpstream]]


def pool(targets: list[str], **policy: Any) -> dict[str, Any]:
    return {"api": {"targets": targets, **policy}}


async def pooled_gateway(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    targets: list[str],
    *,
    proxy: dict[str, Any] | None = None,
    **policy: Any,
) -> GatewayClient:
    settings = settings_factory(
        upstreams=pool(targets, **policy),
        routes=[{"prefix": "/", "upstream": "api", "policy": "public"}],
        **({"proxy": proxy} if proxy else {}),
    )
    return await gateway_factory(settings)


async def test_round_robin_spreads_requests_with_each_targets_base_path_and_host(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstreams: RecordingUpstreams,
) -> None:
    one, two = await upstreams.start(), await upstreams.start()
    client = await pooled_gateway(gateway_factory, settings_factory, [one.url, f"{two.url}/base/"])
    for _ in range(6):
        resp = await client.get("/x?q=1")
        assert resp.status == 200
    assert [r.path for r in one.received] == ["/x"] * 3
    assert [r.path for r in two.received] == ["/base/x"] * 3
    assert {r.query for r in one.received + two.received} == {"q=1"}
    assert one.headers_of()["host"] == [one.url.removeprefix("http://")]
    assert two.headers_of()["host"] == [two.url.removeprefix("http://")]


async def test_a_refused_target_is_skipped_and_backs_off(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstreams: RecordingUpstreams,
) -> None:
    alive = await upstreams.start()
    dead = f"http://127.0.0.1:{free_port()}"
    client = await pooled_gateway(gateway_factory, settings_factory, [dead, alive.url])
    for method in ("GET", "POST", "GET", "POST"):
        resp = await client.request(method, "/x", data=b"abc" if method == "POST" else None)
        assert resp.status == 200, await resp.text()
    # connecting failed before anything was sent: a POST moves to the next target too
    assert [r.method for r in alive.received] == ["GET", "POST", "GET", "POST"]
    ready = await (await client.get("/readyz")).json()
    dead_state = ready["upstreams"]["api"]["targets"][0]
    assert dead_state["url"] == dead
    assert dead_state["state"] == "backing_off"
    assert dead_state["failures"] == 1  # taken out once, then left alone during its back-off
    metrics = await (await client.get("/metrics")).text()
    failures = f'gateway_upstream_target_failures_total{{target="{dead}",upstream="api"}} 1.0'
    assert failures in metrics
    state = f'gateway_upstream_target_state{{state="backing_off",target="{dead}",upstream="api"}}'
    assert f"{state} 1.0" in metrics


async def test_every_target_down_is_503_with_retry_after(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings]
) -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    client = await pooled_gateway(gateway_factory, settings_factory, dead, backoff=4)
    first = await client.get("/x")
    assert first.status == 502  # this request tried both
    resp = await client.get("/x")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "4"
    assert await resp.json() == {
        "error": "temporarily_unavailable",
        "error_description": "every target of the upstream is out of rotation",
    }


async def test_a_target_that_comes_back_rejoins_after_its_backoff(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstreams: RecordingUpstreams,
) -> None:
    alive = await upstreams.start()
    port = free_port()
    client = await pooled_gateway(
        gateway_factory,
        settings_factory,
        [f"http://127.0.0.1:{port}", alive.url],
        backoff=0.2,
        max_backoff=0.4,
    )
    assert (await client.get("/x")).status == 200
    back = await upstreams.start(port)

    async def rejoined() -> bool:
        assert (await client.get("/x")).status == 200
        return bool(back.received)

    await eventually(rejoined, what="the target back in rotation")
    ready = await (await client.get("/readyz")).json()
    assert [t["state"] for t in ready["upstreams"]["api"]["targets"]] == ["up", "up"]


async def test_a_post_the_target_read_is_never_sent_again(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstreams: RecordingUpstreams,
    faulty_upstream_factory: FaultyFactory,
) -> None:
    resetting = await faulty_upstream_factory("reset")
    healthy = await upstreams.start()
    client = await pooled_gateway(gateway_factory, settings_factory, [resetting.url, healthy.url])
    resp = await client.post("/orders", data=b'{"n": 1}')
    assert resp.status == 502
    assert await resp.json() == {
        "error": "bad_gateway",
        "error_description": "the upstream could not be reached",
    }
    assert resetting.received == {"POST": 1}
    assert healthy.received == []  # never resent, not even to another target
    ready = await (await client.get("/readyz")).json()
    # a new connection dropped before any answer: the target is out for its back-off
    assert ready["upstreams"]["api"]["targets"][0]["state"] == "backing_off"
    assert (await client.post("/orders", data=b'{"n": 2}')).status == 200
    assert resetting.received == {"POST": 1}
    assert [r.method for r in healthy.received] == ["POST"]


async def test_an_idempotent_request_is_retried_once_on_another_target(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstreams: RecordingUpstreams,
    faulty_upstream_factory: FaultyFactory,
) -> None:
    resetting = await faulty_upstream_factory("reset")
    healthy = await upstreams.start()
    client = await pooled_gateway(gateway_factory, settings_factory, [resetting.url, healthy.url])
    for _ in range(2):  # round robin: at least one of the two starts on the resetting target
        resp = await client.get("/items")
        assert resp.status == 200
    assert set(resetting.received) == {"GET"} and 1 <= resetting.received["GET"] <= 2
    assert [r.method for r in healthy.received] == ["GET", "GET"]
    two_bad = [(await faulty_upstream_factory("reset")).url for _ in range(3)]
    other = await pooled_gateway(gateway_factory, settings_factory, two_bad)
    assert (await other.delete("/items/1")).status == 502  # at most one retry


async def test_a_stalled_target_times_out_and_leaves_the_rotation(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstreams: RecordingUpstreams,
    faulty_upstream_factory: FaultyFactory,
) -> None:
    stalled = await faulty_upstream_factory("stall")
    healthy = await upstreams.start()
    client = await pooled_gateway(
        gateway_factory,
        settings_factory,
        [stalled.url, healthy.url],
        proxy={"read_timeout": 0.3},
    )
    assert (await client.get("/a")).status == 200  # the stalled one first, then retried
    posted = await client.post("/b", data=b"x")  # the healthy one: the stalled one is out
    assert posted.status == 200
    assert [r.method for r in healthy.received] == ["GET", "POST"]
    ready = await (await client.get("/readyz")).json()
    assert ready["upstreams"]["api"]["targets"][0]["state"] == "backing_off"


async def test_least_in_flight_avoids_the_busy_target(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstreams: RecordingUpstreams,
) -> None:
    one, two = await upstreams.start(), await upstreams.start()
    client = await pooled_gateway(
        gateway_factory, settings_factory, [one.url, two.url], balance="least_in_flight"
    )
    slow = asyncio.ensure_future(client.get("/slow?s=1"))
    await eventually(lambda: bool(one.received), what="the slow request at the first target")
    for _ in range(4):
        assert (await client.get("/fast")).status == 200
    assert [r.path for r in two.received] == ["/fast"] * 4
    assert (await slow).status == 200


async def test_max_in_flight_answers_503_at_once(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstreams: RecordingUpstreams,
) -> None:
    target = await upstreams.start()
    client = await pooled_gateway(gateway_factory, settings_factory, [target.url], max_in_flight=1)
    slow = asyncio.ensure_future(client.get("/slow?s=1"))
    await eventually(lambda: bool(target.received), what="the first request at the target")
    resp = await client.get("/second")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert await resp.json() == {
        "error": "temporarily_unavailable",
        "error_description": "the upstream is at its max_in_flight",
    }
    assert (await slow).status == 200
    assert (await client.get("/third")).status == 200  # the slot is free again
    assert [r.path for r in target.received] == ["/slow", "/third"]


async def test_idle_connections_nobody_asks_for_are_closed(upstreams: RecordingUpstreams) -> None:
    target = await upstreams.start()
    pool = UpstreamPool(connect_timeout=1, read_timeout=1, keepalive_timeout=0.2)
    pool.open()
    try:
        endpoint = Endpoint.of(URL(target.url))
        host = (b"Host", endpoint.host.encode())
        response = await pool.request("GET", endpoint, "/a", [host], None)
        assert response.status == 200 and response.complete
        response.release()
        assert pool.idle_connections == 1  # kept for the next request to this target
        await eventually(lambda: pool.idle_connections == 0, what="the idle connection closed")
    finally:
        pool.close()
