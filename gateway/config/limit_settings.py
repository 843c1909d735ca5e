"""Settings of the rate limits on proxied traffic: each route's token buckets
(`routes[].limits`) and how the gateway counts them (`rate_limiting`)."""

from __future__ import annotations

import re
from typing import Final, Literal, TypeAlias

from pydantic import Field, field_validator, model_validator

from gateway.config.fields import Section

LimitMode: TypeAlias = Literal["local", "shared"]
"""local: a token bucket per worker; shared: buckets shared through Redis, synced in batches."""

LIMIT_KEY_RE: Final = re.compile(r"^(sub|client_id|session|ip|claim:[A-Za-z0-9_.:-]{1,64})$")
MAX_RATE: Final = 1_000_000


class RouteLimitSettings(Section):
    """One token bucket per value of `key`: `rate` requests per `per` seconds, `burst` at once."""

    key: str
    """what is counted: sub, client_id, session, ip or claim:<name> (without a value, e.g. an
    anonymous request or a missing claim: the client IP)"""
    rate: float = Field(gt=0, le=MAX_RATE)
    """requests allowed per `per` seconds, sustained"""
    per: float = Field(default=1.0, gt=0, le=86400)
    """seconds `rate` is counted over"""
    burst: int | None = Field(default=None, ge=1, le=MAX_RATE)
    """requests allowed at once (the bucket's size; default: rate, at least 1)"""

    @field_validator("key")
    @classmethod
    def _known_key(cls, value: str) -> str:
        if not LIMIT_KEY_RE.match(value):
            raise ValueError(
                f"{value!r}: the key is sub, client_id, session, ip or claim:<claim name>"
            )
        return value

    @model_validator(mode="after")
    def _fills_in_time(self) -> RouteLimitSettings:
        if self.refill_seconds() > 86400:
            raise ValueError("a bucket that takes more than a day to refill: raise rate or per")
        return self

    @property
    def size(self) -> int:
        """The bucket's size: `burst`, else the rate (at least 1)."""
        return self.burst if self.burst is not None else max(1, int(self.rate))

    def refill_seconds(self) -> float:
        """Seconds an empty bucket takes to fill up again."""
        return self.size * self.per / self.rate


class RateLimitingSettings(Section):
    mode: LimitMode = "local"
    """local: each worker counts alone (with N workers or instances a key gets up to N times
    the rate); shared: the buckets are shared by every worker and instance on this Redis,
    synced in batches (local again while Redis is unreachable)"""
    sync_interval: float = Field(default=0.25, ge=0.05, le=5)
    """shared mode: seconds between two syncs of a worker's counts with Redis"""
    max_keys: int = Field(default=100_000, ge=100)
    """buckets a worker keeps per limit; past it, full (idle) buckets go first, then the oldest"""
