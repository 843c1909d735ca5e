"""W3C trace context: parsing traceparent, the context through the gateway (passthrough,
participate, restart), the trace id in access lines, and the optional OpenTelemetry spans."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import pytest

from gateway.config import Settings, TracingSettings
from gateway.observability.telemetry import Telemetry
from gateway.observability.tracecontext import (
    incoming_trace_id,
    parse_traceparent,
    tracestate_to_forward,
)
from tests.support.gateway_client import GatewayClient, GatewayFactory, login
from tests.support.jwt_tokens import bearer
from tests.support.recording_upstream import Upstream

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.access"]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", True),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", True),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more", True),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more", False),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", False),
        ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", False),
        ("", False),
        (None, False),
    ],
)
def test_traceparent_parsing(value: str | None, valid: bool) -> None:
    parsed = parse_traceparent(value)
    assert (parsed is not None) is valid
    headers = {} if value is None else {"traceparent": value}
    assert incoming_trace_id(headers) == (parsed.trace_id if parsed is not None else None)


@pytest.fixture
def traced_settings(settings_factory: Callable[..., Settings]) -> Callable[[str], Settings]:
    def make(mode: str) -> Settings:
        return settings_factory(tracing={"mode": mode})

    return make


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": TRACEPARENT, "tracestate": TRACESTATE},
        {"traceparent": "not-a-traceparent", "tracestate": "whatever=1"},
        {"traceparent": f"01-{TRACE_ID}-{PARENT_ID}-01-future-field"},
    ],
    ids=["valid", "invalid", "future_version"],
)
async def test_passthrough_forwards_trace_headers_unchanged(
    gateway: GatewayClient, upstream: Upstream, headers: dict[str, str]
) -> None:
    resp = await gateway.get("/public/x", headers=headers)
    assert resp.status == 200
    seen = upstream.headers_of()
    for name, value in headers.items():
        assert seen[name] == [value]


async def test_the_access_line_carries_the_trace_id(
    gateway: GatewayClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    await gateway.get(
        "/public/x", headers={"traceparent": TRACEPARENT, "X-Request-Id": "req-00000001"}
    )
    await gateway.get("/public/y", headers={"traceparent": "00-zz-bad"})
    await gateway.get("/api")  # rejected (401): the line still has the trace id when given
    first, second, third = access_lines(caplog)
    assert (first["request_id"], first["trace_id"]) == ("req-00000001", TRACE_ID)
    assert "trace_id" not in second  # an invalid traceparent names no trace
    assert "trace_id" not in third


async def test_text_access_line_carries_the_trace_id(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    client = await gateway_factory(settings_factory(logging={"format": "text"}))
    await client.get("/public/x", headers={"traceparent": TRACEPARENT})
    (line,) = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert line.endswith(f"trace={TRACE_ID}")


async def test_participate_keeps_the_trace_with_a_new_parent(
    gateway_factory: GatewayFactory,
    traced_settings: Callable[[str], Settings],
    upstream: Upstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    client = await gateway_factory(traced_settings("participate"))
    await client.get("/public/x", headers={"traceparent": TRACEPARENT, "tracestate": TRACESTATE})
    seen = upstream.headers_of()
    (sent,) = seen["traceparent"]
    parsed = parse_traceparent(sent)
    assert parsed is not None
    assert (parsed.trace_id, parsed.flags) == (TRACE_ID, "01")
    assert parsed.parent_id != PARENT_ID
    assert seen["tracestate"] == [TRACESTATE]
    assert access_lines(caplog)[-1]["trace_id"] == TRACE_ID


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
        {"traceparent": f"00-{TRACE_ID}-0000000000000000-01", "tracestate": TRACESTATE},
        {"traceparent": f"00-{TRACE_ID.upper()}-{PARENT_ID}-01"},
        {"traceparent": f"ff-{TRACE_ID}-{PARENT_ID}-01"},
        {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01-extra"},
        {"tracestate": TRACESTATE},
        {},
    ],
    ids=[
        "zero_trace",
        "zero_parent",
        "upper_case",
        "version_ff",
        "v00_extra",
        "state_only",
        "none",
    ],
)
async def test_participate_replaces_an_invalid_context_by_a_new_root(
    gateway_factory: GatewayFactory,
    traced_settings: Callable[[str], Settings],
    upstream: Upstream,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    client = await gateway_factory(traced_settings("participate"))
    await client.get("/public/x", headers=headers)
    seen = upstream.headers_of()
    (sent,) = seen["traceparent"]
    parsed = parse_traceparent(sent)
    assert parsed is not None and parsed.trace_id != TRACE_ID
    assert "tracestate" not in seen  # W3C: state of a trace we do not continue is dropped
    assert access_lines(caplog)[-1]["trace_id"] == parsed.trace_id


async def test_participate_refuses_two_traceparents(
    gateway_factory: GatewayFactory, traced_settings: Callable[[str], Settings], upstream: Upstream
) -> None:
    client = await gateway_factory(traced_settings("participate"))
    other = f"00-{'1' * 32}-{PARENT_ID}-01"
    await client.get("/public/x", headers=[("traceparent", TRACEPARENT), ("traceparent", other)])
    (sent,) = upstream.headers_of()["traceparent"]
    assert TRACE_ID not in sent and "1" * 32 not in sent


async def test_restart_never_continues_a_client_trace(
    gateway_factory: GatewayFactory,
    traced_settings: Callable[[str], Settings],
    upstream: Upstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    client = await gateway_factory(traced_settings("restart"))
    await client.get(
        "/public/x",
        headers={"traceparent": TRACEPARENT, "tracestate": TRACESTATE, "TraceParent": "x"},
    )
    seen = upstream.headers_of()
    (sent,) = seen["traceparent"]
    parsed = parse_traceparent(sent)
    assert parsed is not None and parsed.trace_id != TRACE_ID
    assert "tracestate" not in seen
    assert access_lines(caplog)[-1]["trace_id"] == parsed.trace_id


# ---- tracestate as W3C Trace Context §3.3 has it ------------------------------------------


def members(count: int, width: int = 1) -> str:
    return ",".join(f"k{i}={'v' * width}" for i in range(count))


BIG = "big=" + "x" * 200  # a member over 128 characters


@pytest.mark.parametrize(
    ("values", "forwarded"),
    [
        ([TRACESTATE], TRACESTATE),
        ([members(32)], members(32)),  # the most there may be
        ([members(33)], None),  # more: the whole list is discarded
        ([members(20), members(13).replace("k", "j")], None),  # counted over every field
        (["foo=1,bar=2"], "foo=1,bar=2"),
        (["foo=1", "bar=2"], "foo=1,bar=2"),  # several fields are one list
        (["foo=1 , ,\tbar=2,"], "foo=1,bar=2"),  # whitespace and empty members
        (["foo=1,foo=2"], None),  # a key twice
        (["Foo=1"], None),  # upper case
        (["foo bar=1"], None),
        (["foo=bar=1"], None),
        (["foo="], None),  # an empty value
        (["foo=caf\u00e9"], None),
        (["foo=a b"], "foo=a b"),  # a space inside a value is allowed
        (["tenant@vendor=1"], "tenant@vendor=1"),
        (["tenant@=1"], None),
        (["t@" + "v" * 15 + "=1"], None),  # a system id over 14 characters
        (["k" * 256 + "=1"], "k" * 256 + "=1"),
        (["k" * 257 + "=1"], None),
        (["k=" + "v" * 257], None),
        # above 512 characters: members over 128 go first, then members from the right
        ([f"a=1,{BIG},b=2," + members(20, 20)], "a=1,b=2," + members(20, 20)),
        ([members(5, 120)], members(4, 120)),
        ([""], None),
    ],
)
def test_tracestate_sent_on(values: list[str], forwarded: str | None) -> None:
    assert tracestate_to_forward(values) == forwarded
    if forwarded is not None:
        assert len(forwarded) <= 512


@pytest.mark.parametrize(
    ("state", "forwarded"),
    [
        (members(33), None),
        ("congo=1,congo=2", None),
        ("congo=1,Rojo=2", None),
        (members(32), members(32)),
        (f"{BIG},congo=1," + members(20, 20), "congo=1," + members(20, 20)),
    ],
    ids=["33_members", "duplicate", "bad_key", "32_members", "truncated"],
)
async def test_participate_forwards_tracestate_as_the_spec_says(
    gateway_factory: GatewayFactory,
    traced_settings: Callable[[str], Settings],
    upstream: Upstream,
    state: str,
    forwarded: str | None,
) -> None:
    client = await gateway_factory(traced_settings("participate"))
    await client.get("/public/x", headers={"traceparent": TRACEPARENT, "tracestate": state})
    seen = upstream.headers_of()
    (sent,) = seen["traceparent"]
    parsed = parse_traceparent(sent)
    assert parsed is not None and parsed.trace_id == TRACE_ID  # the trace goes on
    assert seen.get("tracestate") == (None if forwarded is None else [forwarded])


# ---- OpenTelemetry ----------------------------------------------------------------------


@pytest.fixture
def exporter() -> Any:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


def otel(mode: str = "passthrough") -> TracingSettings:
    return TracingSettings(mode=mode, otel={"enabled": True})  # type: ignore[arg-type]


async def test_spans_for_the_request_and_the_upstream_call(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    exporter: Any,
    upstream: Upstream,
) -> None:
    telemetry = Telemetry.from_settings(otel(), exporter=exporter)
    client = await gateway_factory(settings_factory(), telemetry=telemetry)
    resp = await client.get("/public/x", headers={"traceparent": TRACEPARENT})
    assert resp.status == 200
    assert upstream.headers_of()["traceparent"] == [TRACEPARENT]  # passthrough stays exact
    spans = {s.name: s for s in exporter.get_finished_spans()}
    server, call = spans["GET"], spans["upstream GET"]
    assert f"{server.context.trace_id:032x}" == TRACE_ID  # continues the client's trace
    assert f"{server.parent.span_id:016x}" == PARENT_ID
    assert call.parent.span_id == server.context.span_id
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["http.route"] == "/public/"
    assert call.attributes["http.response.status_code"] == 200


async def test_participate_sends_the_request_span_as_parent(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    exporter: Any,
    upstream: Upstream,
) -> None:
    settings = settings_factory(tracing={"mode": "participate", "otel": {"enabled": True}})
    telemetry = Telemetry.from_settings(settings.tracing, exporter=exporter)
    client = await gateway_factory(settings, telemetry=telemetry)
    await client.get("/public/x", headers={"traceparent": TRACEPARENT})
    parsed = parse_traceparent(upstream.headers_of()["traceparent"][0])
    (server,) = [s for s in exporter.get_finished_spans() if s.name == "GET"]
    assert parsed is not None
    assert parsed.trace_id == TRACE_ID
    assert parsed.parent_id == f"{server.context.span_id:016x}"


async def test_restart_mode_spans_start_new_traces(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings], exporter: Any
) -> None:
    settings = settings_factory(tracing={"mode": "restart", "otel": {"enabled": True}})
    telemetry = Telemetry.from_settings(settings.tracing, exporter=exporter)
    client = await gateway_factory(settings, telemetry=telemetry)
    await client.get("/public/x", headers={"traceparent": TRACEPARENT})
    (server,) = [s for s in exporter.get_finished_spans() if s.name == "GET"]
    assert f"{server.context.trace_id:032x}" != TRACE_ID and server.parent is None


async def test_spans_for_the_token_endpoints_redis_work(
    gateway_factory: GatewayFactory, auth_settings: Settings, exporter: Any
) -> None:
    telemetry = Telemetry.from_settings(otel(), exporter=exporter)
    client = await gateway_factory(auth_settings, telemetry=telemetry)
    body = await login(client)
    await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    await client.post("/auth/logout", headers=bearer(body["access_token"]))
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    for expected in (
        "redis ratelimit.hit",
        "redis sessions.create",
        "redis sessions.rotate",
        "redis sessions.delete",
        "redis revocations.revoke_session",
    ):
        assert expected in names, names
    servers = {s.context.span_id for s in spans if s.name == "POST"}
    assert all(s.parent.span_id in servers for s in spans if s.name.startswith("redis "))


async def test_without_the_packages_export_is_a_no_op(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    upstream: Upstream,
) -> None:
    for name in [m for m in sys.modules if m.startswith("opentelemetry")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # `import` now fails
    caplog.set_level(logging.WARNING, logger="gateway.telemetry")
    settings = settings_factory(tracing={"otel": {"enabled": True}})
    client = await gateway_factory(settings)
    resp = await client.get("/public/x", headers={"traceparent": TRACEPARENT})
    assert resp.status == 200
    assert upstream.headers_of()["traceparent"] == [TRACEPARENT]
    assert any("OpenTelemetry is not installed" in r.getMessage() for r in caplog.records)
    assert not Telemetry.from_settings(settings.tracing).enabled


def test_off_by_default() -> None:
    telemetry = Telemetry.from_settings(TracingSettings())
    assert not telemetry.enabled
    target = object()
    assert telemetry.traced(target, "x") is target
