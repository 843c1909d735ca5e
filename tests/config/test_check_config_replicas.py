"""`gateway check-config` and redis.min_replicas_ack with Sentinel or Cluster: acknowledged
writes that a failover can lose (0), and an acknowledgement count that a failover makes
impossible (as many as there are replicas), with the replicas counted from the topology."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import RedisSettings
from tests.support.gateway_cli import run_cli
from tests.support.processes import free_port
from tests.support.redis_topology import ClusterSet, SentinelSet

SENTINEL = "redis+sentinel://127.0.0.1:26379/gw-primary/0"
CLUSTER = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"


def redis(url: str, acks: int) -> RedisSettings:
    return RedisSettings(url=url, min_replicas_ack=acks)


@pytest.mark.parametrize("url", [SENTINEL, CLUSTER])
def test_no_acknowledgement_with_failover_is_a_warning(url: str) -> None:
    (warning,) = redis(url, 0).replica_warnings(replicas=2)
    assert "min_replicas_ack is 0" in warning
    assert "lost" in warning and "fails over" in warning


@pytest.mark.parametrize("url", [SENTINEL, CLUSTER])
def test_as_many_acknowledgements_as_replicas_is_a_warning(url: str) -> None:
    (warning,) = redis(url, 2).replica_warnings(replicas=2)
    assert "min_replicas_ack is 2" in warning and "2 replicas" in warning
    assert "failover" in warning and "every write fails" in warning
    (warning,) = redis(url, 3).replica_warnings(replicas=2)
    assert "every write fails" in warning and "now" in warning
    assert redis(url, 1).replica_warnings(replicas=2) == []


def test_replicas_that_could_not_be_counted_say_what_is_assumed() -> None:
    (warning,) = redis(SENTINEL, 1).replica_warnings(replicas=None, why="no sentinel answered")
    assert "no sentinel answered" in warning
    assert "assumes" in warning and "more than 1" in warning


@pytest.mark.parametrize("url", ["memory://", "redis://127.0.0.1:6390/0"])
def test_other_urls_have_nothing_to_fail_over(url: str) -> None:
    assert RedisSettings(url=url).replica_warnings(replicas=None) == []


def check_config(tmp_path: Path, url: str, acks: int) -> tuple[int, str]:
    config = tmp_path / "config.yaml"
    redis_section: dict[str, Any] = {"url": url, "min_replicas_ack": acks}
    config.write_text(yaml.safe_dump({"redis": redis_section}))
    result = run_cli("check-config", "--config", str(config))
    return result.returncode, result.stderr


@pytest.mark.slow
@pytest.mark.redis
def test_check_config_counts_the_sentinels_replicas(
    tmp_path: Path, redis_sentinel: SentinelSet
) -> None:
    url = redis_sentinel.url  # a primary with two replicas
    status, said = check_config(tmp_path, url, 0)
    assert status == 0 and "configuration OK" in said
    assert "warning: redis.min_replicas_ack is 0 with Redis Sentinel" in said
    status, said = check_config(tmp_path, url, 2)
    assert status == 0
    assert "warning: redis.min_replicas_ack is 2 and a primary has 2 replicas" in said
    status, said = check_config(tmp_path, url, 1)
    assert status == 0 and "warning" not in said


@pytest.mark.slow
@pytest.mark.redis
def test_check_config_counts_the_clusters_replicas(
    tmp_path: Path, redis_cluster_replicas: ClusterSet
) -> None:
    url = redis_cluster_replicas.url  # three primaries with two replicas each
    status, said = check_config(tmp_path, url, 0)
    assert "warning: redis.min_replicas_ack is 0 with Redis Cluster" in said
    status, said = check_config(tmp_path, url, 2)
    assert "warning: redis.min_replicas_ack is 2 and a primary has 2 replicas" in said
    status, said = check_config(tmp_path, url, 1)
    assert status == 0 and "warning" not in said


@pytest.mark.slow
def test_check_config_says_when_nobody_answers(tmp_path: Path) -> None:
    url = f"redis+sentinel://127.0.0.1:{free_port()}/gw-primary/0"
    status, said = check_config(tmp_path, url, 1)
    assert status == 0 and "configuration OK" in said
    assert "warning: the replicas could not be counted" in said
    assert "assumes" in said
