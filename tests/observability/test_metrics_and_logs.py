"""Metrics and access logs: what operators see, and that no token ever reaches a log line."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.observability.logs import FLUSH_INTERVAL, BatchingHandler
from tests.support.gateway_client import GatewayClient, login
from tests.support.jwt_tokens import bearer
from tests.support.waiting import eventually


async def test_metrics_count_requests_rejections_and_refreshes(
    client: GatewayClient, key_files: dict[str, Path]
) -> None:
    body = await login(client)
    await client.get("/api", headers=bearer(body["access_token"]))
    await client.get("/api", headers=bearer("garbage"))
    await client.get("/api")
    await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    await client.post("/auth/login", json={"username": "alice", "password": "bad"})
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    assert 'gateway_requests_total{method="GET",route="/",status_class="2xx"} 1.0' in text
    assert 'gateway_auth_rejections_total{reason="malformed"} 1.0' in text
    assert 'gateway_refresh_total{outcome="rotated"} 1.0' in text
    assert 'gateway_refresh_total{outcome="grace_replay"} 1.0' in text
    assert 'gateway_logins_total{outcome="success"} 1.0' in text
    assert 'gateway_logins_total{outcome="bad_credentials"} 1.0' in text
    assert "gateway_upstream_latency_seconds_bucket" in text
    assert "gateway_revocation_staleness_seconds" in text
    assert "gateway_revocations 0.0" in text
    assert body["access_token"] not in text


async def test_metrics_are_monotonic_under_load(client: GatewayClient) -> None:
    seen = []
    for _ in range(5):
        for _ in range(20):
            await client.get("/public/x")
        text = await (await client.get("/metrics")).text()
        line = next(
            ln
            for ln in text.splitlines()
            if ln.startswith('gateway_requests_total{method="GET",route="/public/"')
        )
        seen.append(float(line.rsplit(" ", 1)[1]))
    assert seen == sorted(seen) and seen[-1] == 100


async def test_logs_never_contain_tokens_or_passwords(
    client: GatewayClient, caplog: pytest.LogCaptureFixture, key_files: dict[str, Path]
) -> None:
    caplog.set_level(logging.DEBUG)
    body = await login(client)
    secrets = [body["access_token"], body["refresh_token"], "wonderland"]
    await client.get(
        "/api?access_token=" + body["access_token"], headers=bearer(body["access_token"])
    )
    resp = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    second = await resp.json()
    secrets += [second["access_token"], second["refresh_token"]]
    await client.post("/auth/refresh", json={"refresh_token": "gwrt_bogus-token-value"})
    await client.post("/auth/login", json={"username": "alice", "password": "wrong-password"})
    secrets.append("wrong-password")
    await client.post("/auth/logout", headers=bearer(second["access_token"]))
    await client.get("/api", headers=bearer(second["access_token"]))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "gateway.access" in {r.name for r in caplog.records}
    for secret in secrets:
        assert secret not in logged
        assert secret.split(".")[-1] not in logged  # not even the signature or secret part
    assert body["session_id"] in logged  # ids are logged instead


async def test_access_lines_are_batched_and_flushed_periodically_and_on_close() -> None:
    stream = io.StringIO()
    handler = BatchingHandler()
    handler.setStream(stream)
    handler.add_line('{"request_id":"a"}')
    await eventually(lambda: stream.getvalue() != "", FLUSH_INTERVAL * 10, what="a flush")
    assert stream.getvalue() == '{"request_id":"a"}\n'  # written without an explicit flush
    handler.add_line('{"request_id":"b"}')
    handler.close()  # exit: nothing pending is lost
    assert stream.getvalue().splitlines() == ['{"request_id":"a"}', '{"request_id":"b"}']


@pytest.mark.parametrize(
    "path", ["/api/items", '/api/"quoted"', "/api/back\\slash", "/api/caf\u00e9", "/api/\x7f"]
)
def test_json_access_line_is_valid_json_whatever_the_path(path: str) -> None:
    import json

    from aiohttp.test_utils import make_mocked_request

    from gateway.edge import Exchange
    from gateway.edge.access_lines import json_line
    from gateway.errors import InvalidToken
    from gateway.tokens.verifier import Principal

    request = make_mocked_request("GET", path)
    exchange = Exchange("req-12345678", route="/api/")
    exchange.principal = Principal(
        sub='ali"ce',
        sid="back\\slash",
        jti="caf\u00e9\x7f",
        iat=0,
        exp=1,
        auth_time=0,
        roles=(),
        scopes=(),
        claims={},
    )
    # Fixed numbers, nothing is measured: seconds are rendered as milliseconds, 3 decimals.
    exchange.upstream_status, exchange.upstream_seconds, exchange.bytes_out = 200, 0.0021, 17
    exchange.error = InvalidToken("x", reason="expired")
    rendered = json_line(request, exchange, 401, 0.0034567)
    line = json.loads(rendered)
    assert line["path"] == request.rel_url.raw_path
    assert (line["sub"], line["sid"], line["jti"]) == ('ali"ce', "back\\slash", "caf\u00e9\x7f")
    assert line["status"] == 401
    assert '"duration_ms":3.457' in rendered
    assert '"upstream_ms":2.100' in rendered
    assert (line["upstream_status"], line["bytes_in"], line["bytes_out"]) == (200, 0, 17)
    assert (line["error"], line["reason"], line["route"]) == ("invalid_token", "expired", "/api/")


# ---- values from outside cannot forge fields of a text line -------------------------------

FORGING_SUB = 'mallory auth=cookie error=none id=forged\nGET /admin 200 0.1ms sub="root"'


def fields_of(line: str) -> list[str]:
    """A text line's fields as a shell would split them (quoted values stay one field)."""
    import shlex

    return shlex.split(line)


def test_text_access_line_quotes_values_that_could_forge_fields() -> None:
    from aiohttp.test_utils import make_mocked_request

    from gateway.edge import Exchange
    from gateway.edge.access_lines import text_line
    from gateway.tokens.verifier import Principal

    request = make_mocked_request("GET", "/api/x")
    exchange = Exchange("req-12345678", route="/api/")
    exchange.principal = Principal(
        sub=FORGING_SUB,
        sid="s=1 x",
        jti="j",
        iat=0,
        exp=1,
        auth_time=0,
        roles=(),
        scopes=(),
        claims={},
    )
    line = text_line(request, exchange, 200, 0.001)
    assert "\n" not in line
    fields = fields_of(line)
    assert [f for f in fields if f.startswith("sub=")] == [f"sub={json_text(FORGING_SUB)}"]
    assert [f for f in fields if f.startswith("sid=")] == ["sid=s=1 x"]
    assert ' sid="s=1 x" ' in line
    assert [f for f in fields if f.startswith("auth=")] == ["auth=bearer"]
    assert [f for f in fields if f.startswith("id=")] == ["id=req-12345678"]
    assert not [f for f in fields if f.startswith("error=")]
    # plain values are written as they are
    exchange.principal = Principal(
        sub="alice", sid="s1", jti="j", iat=0, exp=1, auth_time=0, roles=(), scopes=(), claims={}
    )
    assert " sub=alice sid=s1 auth=bearer " in text_line(request, exchange, 200, 0.001)


def json_text(value: str) -> str:
    """How a quoted value reads once the shell-style split removed its quotes."""
    import json

    return json.dumps(value)[1:-1].replace('\\"', '"')


async def test_text_access_line_of_a_forging_subject_through_the_gateway(
    gateway_factory: Any,
    settings_factory: Any,
    key_files: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.support.jwt_tokens import mint

    caplog.set_level(logging.INFO, logger="gateway.access")
    client = await gateway_factory(settings_factory(logging={"format": "text"}))
    resp = await client.get("/api", headers=bearer(mint(key_files, sub=FORGING_SUB)))
    assert resp.status == 200
    (line,) = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert "\n" not in line
    assert len([f for f in fields_of(line) if f.startswith(("auth=", "sub=", "id="))]) == 3


def test_event_log_values_cannot_forge_fields() -> None:
    from gateway.observability.logs import JsonFormatter, TextFormatter

    record = logging.LogRecord(
        "gateway.admin", logging.INFO, __file__, 1, "user revoked sub=%s sessions=%d", None, None
    )
    record.args = (FORGING_SUB, 2)
    text = TextFormatter("%(levelname)s %(message)s").format(record)
    assert "\n" not in text
    fields = fields_of(text)
    assert [f for f in fields if f.startswith("sessions=")] == ["sessions=2"]
    assert [f for f in fields if f.startswith("sub=")] == [f"sub={json_text(FORGING_SUB)}"]
    import json

    entry = json.loads(JsonFormatter().format(record))
    assert [f for f in fields_of(entry["msg"]) if f.startswith("sessions=")] == ["sessions=2"]
    # the record itself is unchanged for other handlers
    assert record.getMessage() == f"user revoked sub={FORGING_SUB} sessions=2"
    # plain values stay as they are
    record.args = ("alice", 1)
    assert TextFormatter("%(message)s").format(record) == "user revoked sub=alice sessions=1"
