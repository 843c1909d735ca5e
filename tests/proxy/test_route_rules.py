"""Routes' authorization rules through the running gateway: methods, hosts, globs, allow and
deny trees, CEL expressions; a refusal never reaches the upstream and says which rule."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings
from tests.support.gateway_client import GatewayClient, GatewayFactory
from tests.support.jwt_tokens import bearer, mint
from tests.support.recording_upstream import Upstream


def routes(upstream: Upstream, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    """`extra` routes before a catch-all public one."""
    return [
        *({"upstream": upstream.url, **route} for route in extra),
        {"prefix": "/", "upstream": upstream.url, "policy": "public"},
    ]


@pytest.fixture
def make(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    upstream: Upstream,
) -> Callable[..., Any]:
    async def start(*extra: dict[str, Any], **sections: Any) -> GatewayClient:
        return await gateway_factory(settings_factory(routes=routes(upstream, *extra), **sections))

    return start


async def test_read_write_split_by_method(
    make: Callable[..., Any], upstream: Upstream, key_files: dict[str, Path]
) -> None:
    gateway = await make(
        {
            "prefix": "/orders/",
            "name": "orders-read",
            "methods": ["GET"],
            "allow": {"roles": ["staff"]},
        },
        {"prefix": "/orders/", "name": "orders-write", "allow": {"roles": ["orders-admin"]}},
    )
    staff = bearer(mint(key_files, roles=["staff"]))
    admin = bearer(mint(key_files, roles=["staff", "orders-admin"]))
    assert (await gateway.get("/orders/1", headers=staff)).status == 200
    assert (await gateway.head("/orders/1", headers=staff)).status == 200  # GET brings HEAD
    refused = await gateway.post("/orders/1", headers=staff)
    assert refused.status == 403
    body = await refused.json()
    assert body["error"] == "access_denied"
    assert body["error_description"] == "refused by rule allow[0] of route orders-write"
    assert (await gateway.post("/orders/1", headers=admin)).status == 200
    assert [r.method for r in upstream.received] == ["GET", "HEAD", "POST"]


async def test_deny_wins_and_names_its_rule_not_its_values(
    make: Callable[..., Any], upstream: Upstream, key_files: dict[str, Path]
) -> None:
    gateway = await make(
        {
            "prefix": "/api/",
            "allow": {"roles": ["user"]},
            "deny": [
                {"client_id": ["legacy-app"]},
                {"claim": {"name": "sub", "in": ["mallory", "eve"]}},
            ],
        }
    )
    resp = await gateway.get("/api/x", headers=bearer(mint(key_files, sub="mallory")))
    assert resp.status == 403
    body = await resp.json()
    assert body == {
        "error": "access_denied",
        "error_description": "refused by rule deny[1] of route /api/",
    }
    assert "mallory" not in json.dumps(body)
    legacy = bearer(mint(key_files, client_id="legacy-app"))
    assert (await gateway.get("/api/x", headers=legacy)).status == 403
    assert (await gateway.get("/api/x", headers=bearer(mint(key_files)))).status == 200
    assert len(upstream.received) == 1


async def test_partner_host_and_its_case_and_trailing_dot(
    make: Callable[..., Any], upstream: Upstream, key_files: dict[str, Path]
) -> None:
    gateway = await make(
        {
            "prefix": "/",
            "name": "partners",
            "hosts": ["partners.example.com", "*.partners.example.com"],
            "allow": {"client_id": ["acme"]},
        },
    )
    partner = bearer(mint(key_files, client_id="acme"))
    other = bearer(mint(key_files, client_id="someone"))
    for host in (
        "partners.example.com",
        "PARTNERS.Example.COM",  # DNS ignores case: the same route
        "partners.example.com.",  # and a trailing dot names the same host
        "partners.example.com:8443",
        "eu.partners.example.com",
    ):
        assert (await gateway.get("/x", headers={**other, "Host": host})).status == 403, host
        assert (await gateway.get("/x", headers={**partner, "Host": host})).status == 200, host
    # the wildcard covers one label, and never the bare domain's look-alikes
    for host in ("a.b.partners.example.com", "evilpartners.example.com", "example.com"):
        assert (await gateway.get("/x", headers={**other, "Host": host})).status == 200, host


async def test_group_claim_and_claims_of_the_wrong_type(
    make: Callable[..., Any], key_files: dict[str, Path]
) -> None:
    gateway = await make(
        {"prefix": "/finance/", "allow": {"claim": {"name": "groups", "contains": "finance"}}},
        {"prefix": "/team/", "allow": {"claim": {"name": "team", "equals": "blue"}}},
    )
    assert (
        await gateway.get("/finance/q", headers=bearer(mint(key_files, groups=["finance"])))
    ).status == 200
    # a string where a list is expected is no match (never a substring test, never a 500)
    assert (
        await gateway.get("/finance/q", headers=bearer(mint(key_files, groups="finance")))
    ).status == 403
    assert (
        await gateway.get("/team/q", headers=bearer(mint(key_files, team=["blue"])))
    ).status == 403
    assert (
        await gateway.get("/team/q", headers=bearer(mint(key_files, team="blue")))
    ).status == 200


async def test_segment_globs_in_prefixes(
    make: Callable[..., Any], upstream: Upstream, key_files: dict[str, Path]
) -> None:
    gateway = await make(
        {"prefix": "/api/*/reports/", "allow": {"roles": ["reports"]}, "strip_prefix": True},
        {"prefix": "/api/", "policy": "optional"},
    )
    user = bearer(mint(key_files))
    reporter = bearer(mint(key_files, roles=["reports"]))
    assert (await gateway.get("/api/v1/reports/q3", headers=user)).status == 403
    assert (await gateway.get("/api/v1/reports/q3", headers=reporter)).status == 200
    assert upstream.received[-1].path == "/q3"
    assert (await gateway.get("/api/v1/other", headers=user)).status == 200
    assert (await gateway.get("/api/v1/reportsx", headers=user)).status == 200


async def test_expression_on_claims_and_request_line(
    make: Callable[..., Any], key_files: dict[str, Path]
) -> None:
    gateway = await make(
        {
            "prefix": "/ledger/",
            "expr": "'finance' in claims.groups && request.method == 'GET' "
            "&& !request.path.endsWith('/secret')",
        }
    )
    finance = bearer(mint(key_files, groups=["finance"]))
    assert (await gateway.get("/ledger/a", headers=finance)).status == 200
    assert (await gateway.post("/ledger/a", headers=finance)).status == 403
    assert (await gateway.get("/ledger/secret", headers=finance)).status == 403
    # a claim the token lacks is an evaluation error: refused, never a 500
    resp = await gateway.get("/ledger/a", headers=bearer(mint(key_files)))
    assert resp.status == 403
    assert (await resp.json())["error_description"] == "refused by rule expr of route /ledger/"


async def test_anonymous_requests_that_rules_refuse_are_asked_to_sign_in(
    make: Callable[..., Any], key_files: dict[str, Path]
) -> None:
    gateway = await make(
        {"prefix": "/open/", "policy": "optional", "allow": {"authenticated": True}},
        {"prefix": "/bots/", "policy": "optional", "deny": {"authenticated": False}},
    )
    resp = await gateway.get("/open/x")
    assert resp.status == 401
    assert "WWW-Authenticate" in resp.headers
    assert (await gateway.get("/open/x", headers=bearer(mint(key_files)))).status == 200
    assert (await gateway.get("/bots/x")).status == 403  # a deny is a deny


async def test_roles_and_scopes_keep_their_answer(
    gateway: GatewayClient, key_files: dict[str, Path]
) -> None:
    resp = await gateway.get("/reports/q", headers=bearer(mint(key_files)))
    assert resp.status == 403
    assert (await resp.json())["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]


async def test_refusals_go_to_the_access_log_and_metrics(
    make: Callable[..., Any], key_files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await make(
        {"prefix": "/api/", "deny": {"claim": {"name": "sub", "equals": "mallory"}}},
        logging={"format": "json", "access_log": True},
    )
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        resp = await gateway.get("/api/x", headers=bearer(mint(key_files, sub="mallory")))
    assert resp.status == 403
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.access"]
    assert lines[-1]["reason"] == "deny" and lines[-1]["rule"] == "deny[0]"
    metrics = await (await gateway.get("/metrics")).text()
    assert 'gateway_policy_refusals_total{reason="deny",route="/api/"} 1.0' in metrics


async def test_rules_apply_to_browser_cookies_too(
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    upstream: Upstream,
) -> None:
    settings = browser_settings_factory(
        routes=routes(
            upstream, {"prefix": "/app/", "deny": {"claim": {"name": "sub", "equals": "bob"}}}
        )
    )
    gateway = await gateway_factory(settings)
    for user, password, status in (("alice", "wonderland", 200), ("bob", "builder", 403)):
        login = await gateway.post(
            "/auth/browser/login", json={"username": user, "password": password}
        )
        assert login.status == 200
        resp = await gateway.get("/app/page", headers={"Sec-Fetch-Site": "same-origin"})
        assert resp.status == status, user
        gateway.session.cookie_jar.clear()
