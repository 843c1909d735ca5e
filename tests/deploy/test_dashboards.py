"""deploy/grafana/gateway.json and deploy/prometheus/alerts.yaml: every metric they use is one
a running gateway exports, the rules pass promtool, and the alerts fire when they should."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.admin_access import ADMIN, ADMIN_KEYS
from tests.support.gateway_client import GatewayProcessFactory
from tests.support.jwt_tokens import bearer
from tests.support.processes import free_port
from tests.support.programs import require
from tests.support.recording_upstream import Upstream
from tests.support.redis_servers import RedisServer
from tests.support.repository import DEPLOY
from tests.support.waiting import eventually

DASHBOARD = DEPLOY / "grafana" / "gateway.json"
RULES = DEPLOY / "prometheus" / "alerts.yaml"
METRIC_RE = re.compile(r"\bgateway_[a-z0-9_]+")
WORKER_SERIES = re.compile(r'gateway_worker_requests\{pid="\d+"\}')
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if isinstance(variable.get("query"), dict):
            exprs.append(variable["query"]["query"])
    return exprs


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def promtool() -> str:
    require("promtool", install="apt-get install prometheus")
    found = shutil.which("promtool")
    assert found is not None
    return found


def test_the_dashboard_covers_what_operators_watch() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "token-gateway"
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(set(titles)) == len(titles)
    text = "\n".join(dashboard_exprs())
    for needed in (
        "gateway_requests_total",
        'status_class="5xx"',
        "histogram_quantile(0.99",
        "gateway_auth_rejections_total",
        'outcome="reuse_detected"',
        "gateway_logins_total",
        "gateway_revocations",
        "gateway_revocation_staleness_seconds",
        "gateway_fail_closed_refusals_total",
        "gateway_redis_errors_total",
        "gateway_in_flight_requests",
        "gateway_worker_requests",
        "gateway_worker_restarts_total",
        "gateway_upstream_target_state",
        "gateway_upstream_target_failures_total",
    ):
        assert needed in text, needed
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def test_every_rule_has_a_severity_and_runbook_text() -> None:
    found = rules()
    names = {rule["alert"] for rule in found}
    assert {
        "GatewayRevocationViewStale",
        "GatewayRefusingProtectedRoutes",
        "GatewayRefreshReuseSpike",
        "GatewayRedisErrors",
        "GatewayHigh5xxRate",
        "GatewayLoginFailureSurge",
        "GatewayWorkerRestartLoop",
        "GatewayConfigReloadRefused",
        "GatewayUpstreamPoolDown",
    } <= names
    for rule in found:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations), rule["alert"]
        assert len(annotations["runbook"]) > 80, rule["alert"]


def test_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


# Each case: input series, then (minute, alert, {labels} or None, summary when firing).
ALERT_CASES: list[tuple[dict[str, str], list[tuple[int, str, str | None]]]] = [
    (
        {
            'gateway_revocation_staleness_seconds{instance="a"}': "1 1 20 40 60 80",
            'gateway_revocation_refusing{instance="a"}': "0 0 0 0 1 1",
            'gateway_fail_closed_refusals_total{instance="a"}': "0 0 0 0 0 40",
        },
        [
            (1, "GatewayRevocationViewStale", None),
            (4, "GatewayRevocationViewStale", "a: revocation view 60s stale"),
            (3, "GatewayRefusingProtectedRoutes", None),
            (5, "GatewayRefusingProtectedRoutes", "a: refusing protected routes (fail closed)"),
        ],
    ),
    (
        {
            'gateway_revocation_unreadable_total{instance="a",source="record"}': "0 0 0 1 1 1",
            'gateway_revocation_unreadable_total{instance="a",source="message"}': "0 0 0 0 0 0",
        },
        [
            (2, "GatewayRevocationRecordUnreadable", None),
            (
                4,
                "GatewayRevocationRecordUnreadable",
                "a: unreadable revocation records or messages",
            ),
        ],
    ),
    (
        {
            'gateway_refresh_total{instance="a",outcome="reuse_detected"}': "0 0 0 5 10 20 30",
            'gateway_refresh_total{instance="a",outcome="rotated"}': "0+100x6",
            'gateway_worker_restarts_total{instance="a"}': "0 1 2 3 3 3 3",
            'gateway_redis_errors_total{instance="a"}': "0 0 60 120 180 240 300",
        },
        [
            (2, "GatewayRefreshReuseSpike", None),
            (6, "GatewayRefreshReuseSpike", "a: 30 refresh-token reuses in 10 min"),
            (1, "GatewayWorkerRestartLoop", None),
            (4, "GatewayWorkerRestartLoop", "a: workers restarted 3 times in 15 min"),
            (5, "GatewayRedisErrors", "a: requests failing on Redis"),
        ],
    ),
    (
        {
            'gateway_requests_total{instance="a",status_class="2xx"}': "0+600x20",
            'gateway_requests_total{instance="a",status_class="5xx"}': "0+100x20",
            'gateway_logins_total{instance="a",outcome="success"}': "0+30x20",
            'gateway_logins_total{instance="a",outcome="bad_credentials"}': "0+600x20",
        },
        [
            (3, "GatewayHigh5xxRate", None),
            (15, "GatewayHigh5xxRate", "a: 14.29% of answers are 5xx"),
            (15, "GatewayLoginFailureSurge", "a: failed logins surging (10/s)"),
        ],
    ),
    (
        {
            'gateway_config_last_reload_successful{instance="a",pid="7"}': "1 1 0 0 0 0 0 0 0 "
            "0 0 0 0 0 0",
            'gateway_config_last_reload_successful{instance="a",pid="8"}': "1+0x14",
        },
        [
            (1, "GatewayConfigReloadRefused", None),
            (8, "GatewayConfigReloadRefused", None),  # not for a moment's refusal
            (13, "GatewayConfigReloadRefused", "a: configuration reload refused"),
        ],
    ),
    (
        {
            'gateway_upstream_target_state{instance="a",upstream="api",target="t1",state="up"}': (
                "1 1 0 0 0 0 1"
            ),
            'gateway_upstream_target_state{instance="a",upstream="api",target="t2",state="up"}': (
                "1 0 0 0 0 0 0"
            ),
            'gateway_upstream_target_state{instance="a",upstream="web",target="t3",state="up"}': (
                "1+0x6"
            ),
        },
        [
            (1, "GatewayUpstreamPoolDown", None),  # one target of api is left
            (2, "GatewayUpstreamPoolDown", None),  # not for a moment
            (
                4,
                "GatewayUpstreamPoolDown",
                "a: every target of an upstream pool is out of rotation",
            ),
            (6, "GatewayUpstreamPoolDown", None),  # t1 is back
        ],
    ),
]


def test_alerts_fire_when_they_should(tmp_path: Path) -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    tests = []
    for series, expectations in ALERT_CASES:
        checks = []
        for minute, alert, summary in expectations:
            expected = []
            if summary is not None:
                rule = by_name[alert]
                expected.append(
                    {
                        "exp_labels": {"severity": rule["labels"]["severity"], "instance": "a"},
                        "exp_annotations": {**rule["annotations"], "summary": summary},
                    }
                )
            checks.append({"eval_time": f"{minute}m", "alertname": alert, "exp_alerts": expected})
        tests.append(
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": checks,
            }
        )
    spec = tmp_path / "alerts.test.yaml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "tests": tests}))
    result = subprocess.run(
        [promtool(), "test", "rules", str(spec)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


# ---- the names exist in a running gateway's /metrics -------------------------------------


def exported_names(exposition: str) -> set[str]:
    """Every series name a scrape can show: sample names, and for families without samples
    yet the names their type gives them."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


@pytest.mark.slow
@pytest.mark.redis
async def test_every_metric_used_exists_in_a_running_gateways_metrics(
    gateway_process: GatewayProcessFactory,
    users_file: Path,
    upstream: Upstream,
    redis_server: RedisServer,
) -> None:
    admin_port = free_port()
    sections = {
        "admin": {"port": admin_port, **ADMIN_KEYS},
        "auth": {"users_file": str(users_file)},
        "tokens": {"refresh_reuse_grace": 0},
        "routes": [{"prefix": "/", "upstream": upstream.url}],
    }
    process, base = await gateway_process(
        "--workers", "2", redis_url=redis_server.url, sections=sections
    )
    admin = f"http://127.0.0.1:{admin_port}"
    used = {
        name
        for expr in [*dashboard_exprs(), *(rule["expr"] for rule in rules())]
        for name in METRIC_RE.findall(expr)
    }
    text = ""
    try:
        async with aiohttp.ClientSession() as http:

            async def workers_listen() -> bool:
                try:  # each worker answers its own connections
                    return (await _metrics(http, base)).count("gateway_worker_start") >= 3
                except aiohttp.ClientError:
                    return False

            async def published() -> bool:
                nonlocal text
                text = await _metrics(http, base)
                return used <= exported_names(text) and WORKER_SERIES.search(text) is not None

            await eventually(workers_listen, 20, what="both workers listen")
            await _traffic(http, base, admin)
            # the per-worker gauges are published once a sampling interval has passed
            await eventually(published, 30, what="every metric used is exported", interval=0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 60)
    assert len(used) >= 14
    assert used - exported_names(text) == set()
    # Under --workers the per-worker series carry the worker's pid.
    assert WORKER_SERIES.search(text)


async def _metrics(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/metrics") as resp:
        return await resp.text()


async def _traffic(http: aiohttp.ClientSession, base: str, admin: str) -> None:
    """Logins (one failed), a proxied call, a rotation and a reuse, a bad token, a
    revocation, public requests: every counter the dashboard reads moves."""
    credentials = {"username": "alice", "password": "wonderland"}
    async with http.post(f"{base}/auth/login", json=credentials) as resp:
        assert resp.status == 200
        tokens = await resp.json()
    async with http.post(f"{base}/auth/login", json={**credentials, "password": "no"}) as resp:
        assert resp.status == 401
    async with http.get(f"{base}/api", headers=bearer(tokens["access_token"])) as resp:
        assert resp.status == 200  # reached the upstream: latency observed
    for _ in range(2):  # rotated, then reuse detected (no grace window)
        async with http.post(f"{base}/auth/refresh", json=tokens) as resp:
            await resp.read()
    async with http.get(f"{base}/api", headers=bearer("not.a.token")) as resp:
        assert resp.status == 401
    async with http.post(f"{admin}/admin/users/bob/revoke", headers=ADMIN) as resp:
        assert resp.status == 200
    for _ in range(10):
        async with http.get(f"{base}/public-or-not") as resp:
            await resp.read()
