"""Settings of the shared store (Redis) and of the in-memory revocation view."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from gateway.config.fields import PositiveSeconds, Section
from gateway.config.redis_url import check_redis_url, is_memory_url
from gateway.typedefs import FailMode


class RedisSettings(Section):
    url: str = "memory://"
    """memory://, redis://, rediss://, unix://, redis+sentinel://, redis+cluster://"""
    connect_timeout: PositiveSeconds = 1.0
    """seconds to open a connection"""
    socket_timeout: PositiveSeconds = 1.0
    """seconds any Redis reply may take"""
    max_connections: int = Field(default=64, ge=1)
    """connection pool size per worker"""
    prefix: str = Field(default="gw", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    """first segment of every key and of the pub/sub channel"""
    min_replicas_ack: int = Field(
        default=0,
        ge=0,
        description="replicas that must hold each session, refresh, revocation and audit write "
        "(WAIT) before it is answered; 0 = the primary's answer is enough",
    )
    replica_ack_timeout: PositiveSeconds = Field(
        default=0.5,
        description="seconds to wait for those replicas, else 503 (safe to retry); "
        "below socket_timeout",
    )

    @field_validator("url")
    @classmethod
    def _url_is_supported(cls, value: str) -> str:
        check_redis_url(value)
        return value

    @property
    def fails_over(self) -> str | None:
        """ "Sentinel" or "Cluster" when the URL names a topology that fails over, else None."""
        return _FAILOVER.get(urlsplit(self.url).scheme)

    def replica_warnings(self, replicas: int | None, why: str | None = None) -> list[str]:
        """What `check-config` says of min_replicas_ack behind a Sentinel or Cluster URL,
        given the fewest replicas a primary has (`replicas`; None when they could not be
        counted, `why` says why)."""
        kind, acks = self.fails_over, self.min_replicas_ack
        if kind is None:
            return []
        if acks == 0:
            return [
                f"redis.min_replicas_ack is 0 with Redis {kind}: a write the primary "
                "acknowledged (a session, a refresh, a revocation, an audit entry) is lost "
                "when the primary fails over before a replica holds it; set it to 1, below the "
                "number of replicas each primary has (deploy/REDIS.md)"
            ]
        if replicas is None:
            return [
                f"the replicas could not be counted ({why or 'unknown'}): check-config assumes "
                f"each primary has more than {acks} (redis.min_replicas_ack); with exactly "
                f"{acks}, a failover, which promotes one of them, leaves too few and every "
                "write fails (503) until another replica joins"
            ]
        if replicas < acks:
            return [
                f"redis.min_replicas_ack is {acks} but a primary has {_replicas(replicas)}: "
                "every write fails (503) now, waiting for acknowledgements that cannot come"
            ]
        if replicas == acks:
            return [
                f"redis.min_replicas_ack is {acks} and a primary has {_replicas(replicas)}: "
                "a failover promotes one of them, and from then every write fails (503) until "
                f"another replica joins; run {acks + 1} replicas per primary, or set "
                f"min_replicas_ack to {acks - 1} (0 loses acknowledged writes in a failover)"
            ]
        return []

    @model_validator(mode="after")
    def _acknowledgement_fits(self) -> RedisSettings:
        if self.min_replicas_ack and is_memory_url(self.url):
            raise ValueError("min_replicas_ack needs a Redis with replicas, not memory://")
        if self.min_replicas_ack and self.replica_ack_timeout >= self.socket_timeout:
            raise ValueError("replica_ack_timeout must be below socket_timeout")
        return self


_FAILOVER = {"redis+sentinel": "Sentinel", "redis+cluster": "Cluster"}


def _replicas(count: int) -> str:
    return f"{count} replica" if count == 1 else f"{count} replicas"


class RevocationSettings(Section):
    check_interval: PositiveSeconds = Field(
        default=1.0, description="seconds between store version checks (catch lost messages)"
    )
    max_staleness: PositiveSeconds = Field(
        default=30.0, description="how stale the view may become while Redis is unreachable"
    )
    fail_mode: FailMode = Field(
        default="closed", description="past max_staleness: closed = 503 on protected routes"
    )
