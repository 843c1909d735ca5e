"""Settings the tests start from: an EdDSA signer with ES256 and HS256 verification keys, and
routes of each policy in front of one upstream; any section can be replaced or extended. The
`auth` section tests log in with: their users, login rate limits no test reaches."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from gateway.config import Settings
from tests.support.jwt_tokens import AUDIENCE, ISSUER

# Far above what a test sends: only the rate limits' own tests meet theirs.
ROOMY_LOGIN_LIMITS: Final = {
    "per_ip": {"limit": 1000, "window": 60},
    "failures_per_username": {"limit": 1000, "window": 60},
}


def auth_section(users_file: Path, **rate_limits: Any) -> dict[str, Any]:
    """The `auth` section with these users and ROOMY_LOGIN_LIMITS (`rate_limits` replace
    single limits: `per_ip={"limit": 100_000, "window": 60}`)."""
    return {"users_file": str(users_file), "rate_limits": {**ROOMY_LOGIN_LIMITS, **rate_limits}}


def base_settings(key_files: dict[str, Path], upstream_url: str, **sections: Any) -> Settings:
    """Settings with an EdDSA signer, an ES256 and an HS256 verification key, and demo routes."""
    data: dict[str, Any] = {
        "tokens": {"issuer": ISSUER, "audience": AUDIENCE},
        "keys": {
            "active": "ed1",
            "algorithms": ["EdDSA", "ES256", "HS256"],
            "items": [
                {"kid": "ed1", "alg": "EdDSA", "private_key_file": str(key_files["EdDSA"])},
                {"kid": "es1", "alg": "ES256", "private_key_file": str(key_files["ES256"])},
                {"kid": "hs1", "alg": "HS256", "secret_file": str(key_files["HS256"])},
            ],
        },
        "routes": [
            {"prefix": "/public/", "upstream": upstream_url, "policy": "public"},
            {"prefix": "/optional/", "upstream": upstream_url, "policy": "optional"},
            {"prefix": "/reports/", "upstream": upstream_url, "roles": ["reports"]},
            {"prefix": "/scoped/", "upstream": upstream_url, "scopes": ["read:scoped"]},
            {"prefix": "/", "upstream": upstream_url},
        ],
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(name), dict):
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    return Settings(**data)


def on_redis(settings: Settings, url: str, **redis: Any) -> Settings:
    """The same settings on the Redis at `url` (other `redis.*` fields as keywords)."""
    section = settings.redis.model_copy(update={"url": url, **redis})
    return settings.model_copy(update={"redis": section})
