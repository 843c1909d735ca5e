"""Redis failover under traffic: the gateway follows a new primary (Sentinel) or a replica that
took over a dead master's slots (Cluster) without a restart, answers 503 with Retry-After in
between, and loses no session and no acknowledged revocation (bench/drills/failover.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from redis.asyncio.cluster import RedisCluster

from bench.drills.failover import Report, drill
from gateway.config import load_settings
from gateway.config.redis_url import check_redis_url, sentinel_parts
from gateway.store import connect_redis
from tests.support.redis_topology import ClusterSet, SentinelSet
from tests.support.repository import DEPLOY

SESSIONS = 8


def check(report: Report) -> None:
    log = "\n".join(report.log)
    print(log)  # the drill's log, shown with -s or when the test fails
    assert report.sessions == SESSIONS, log
    assert report.revocations > 0, log
    assert report.sessions_lost == 0, log
    assert report.revocations_lost == 0, log
    assert report.other_5xx == 0, log
    assert report.missing_retry_after == 0, log
    assert report.past_deadline == 0 and report.unreachable == 0, log
    # both running instances reloaded their views from the new primary
    assert all(count >= 1 for count in report.reloads.values()), log
    assert log.endswith("sessions lost 0, revocations lost 0, 5xx other than 503 0")


@pytest.mark.redis
@pytest.mark.slow
async def test_sentinel_failover_loses_no_session_and_no_revocation(
    redis_sentinel: SentinelSet, tmp_path: Path
) -> None:
    old = redis_sentinel.master_port()
    report = await drill(redis_sentinel, acks=1, workdir=tmp_path, sessions=SESSIONS, warmup=2)
    check(report)
    assert redis_sentinel.master_port() not in (None, old)  # a replica was promoted


@pytest.mark.redis
@pytest.mark.slow
async def test_cluster_failover_loses_no_session_and_no_revocation(
    redis_cluster_replicas: ClusterSet, tmp_path: Path
) -> None:
    """The master holding the revocation version and some sessions dies with its replicas
    behind; one of them takes over its slots."""
    report = await drill(
        redis_cluster_replicas, acks=1, workdir=tmp_path, sessions=SESSIONS, warmup=2, lag=1
    )
    check(report)
    assert sum(node.alive for node in redis_cluster_replicas.nodes) == 8  # one master killed


@pytest.mark.redis
@pytest.mark.slow
async def test_replicas_behind_at_the_kill_lose_nothing_acknowledged(
    redis_sentinel: SentinelSet, tmp_path: Path
) -> None:
    """The replicas are paused behind a burst of writes when the primary dies: with
    acknowledgement, every write they did not confirm was answered 503 and retried."""
    report = await drill(
        redis_sentinel, acks=1, workdir=tmp_path, sessions=SESSIONS, warmup=2, lag=1
    )
    check(report)


@pytest.mark.redis
@pytest.mark.slow
async def test_without_acknowledgement_replicas_behind_lose_answered_writes(
    redis_sentinel: SentinelSet, tmp_path: Path
) -> None:
    """The same fault without redis.min_replicas_ack: refreshes the clients saw succeed and
    revocations the operator was told about are gone with the primary (what the option buys)."""
    report = await drill(
        redis_sentinel, acks=0, workdir=tmp_path, sessions=SESSIONS, warmup=2, lag=1
    )
    log = "\n".join(report.log)
    print(log)
    assert report.sessions_lost > 0, log
    assert report.other_5xx == 0 and report.missing_retry_after == 0, log


def test_cluster_url_takes_several_startup_nodes() -> None:
    client = connect_redis(
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,[::1]:7002",
        connect_timeout=1,
        socket_timeout=1,
        max_connections=2,
    )
    assert isinstance(client, RedisCluster)
    assert set(client.nodes_manager.startup_nodes) >= {"127.0.0.1:7000", "127.0.0.1:7001"}
    for bad in ("redis+cluster://", "redis+cluster://node:port"):
        with pytest.raises(ValueError, match="host:port"):
            check_redis_url(bad)


def test_compose_sentinel_profile_agrees_with_the_gateway(
    tmp_path: Path, key_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    profile = {name for name, s in services.items() if "sentinel" in s.get("profiles", [])}
    assert profile == {
        "redis-primary",
        "redis-replica-1",
        "redis-replica-2",
        "sentinel-1",
        "sentinel-2",
        "sentinel-3",
        "gateway-sentinel",
    }
    assert not services["gateway"].get("profiles")  # the default stack is unchanged
    for name in ("redis-replica-1", "redis-replica-2"):
        assert services[name]["command"][1:4] == ["--replicaof", "redis-primary", "6379"]
    script = " ".join(services["sentinel-1"]["command"])
    monitor = re.search(r"sentinel monitor (\S+) redis-primary 6379 (\d+)", script)
    assert monitor is not None and monitor.group(2) == "2"

    ha = services["gateway-sentinel"]
    for name, value in ha["environment"].items():
        monkeypatch.setenv(name, str(value))
    data = yaml.safe_load((DEPLOY / "gateway.compose.yaml").read_text())
    data["keys"]["items"][0]["private_key_file"] = str(key_files["EdDSA"])
    data["auth"]["users_file"] = str(DEPLOY / "demo-users.yaml")
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(data))
    settings = load_settings(path)
    url = urlsplit(settings.redis.url)
    hosts, service, _ = sentinel_parts(url.netloc, url.path)
    assert service == monitor.group(1)
    assert hosts == [(f"sentinel-{i}", 26379) for i in (1, 2, 3)]
    assert settings.redis.min_replicas_ack == 1
    assert settings.redis.replica_ack_timeout < settings.redis.socket_timeout
    published = {p.split(":")[1] for p in ha["ports"]}
    assert published.isdisjoint({p.split(":")[1] for p in services["gateway"]["ports"]})
