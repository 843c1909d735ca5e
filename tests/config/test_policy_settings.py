"""Route rules and limits in the configuration: what is refused at load, naming the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings, load_settings
from gateway.errors import ConfigError


def route(**fields: Any) -> dict[str, Any]:
    return {"prefix": "/api/", "upstream": "http://127.0.0.1:9", **fields}


def refusal(tmp_path: Path, *routes: dict[str, Any]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"routes": list(routes)}))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value.description


@pytest.mark.parametrize(
    ("fields", "key", "says"),
    [
        (
            {"allow": {"claim": {"name": "groups", "startswith": "fin"}}},
            "routes.0.allow.0.claim.startswith",
            "Extra inputs are not permitted",
        ),
        (
            {"allow": {"claim": {"name": "groups", "equals": "a", "contains": "b"}}},
            "routes.0.allow.0.claim",
            "exactly one of equals, in, contains, matches",
        ),
        ({"deny": {"roles": ["a"], "scopes": ["b"]}}, "routes.0.deny.0", "a rule is exactly one"),
        ({"allow": {"sometimes": True}}, "routes.0.allow.0.sometimes", "Extra inputs"),
        ({"hosts": ["api.example.com:443"]}, "routes.0.hosts", "no port"),
        ({"hosts": ["api.*.example.com"]}, "routes.0.hosts", "only as the first label"),
        ({"hosts": ["*example.com"]}, "routes.0.hosts", "only as the first label"),
        ({"hosts": ["api.example.com."]}, "routes.0.hosts", "without the trailing dot"),
        ({"hosts": ["API.example.com"]}, "routes.0.hosts", "lower case"),
        ({"methods": ["GET /"]}, "routes.0.methods", "is not an HTTP method"),
        ({"prefix": "/api/v*/"}, "routes.0.prefix", "one whole segment"),
        ({"limits": [{"key": "sub", "rate": 0}]}, "routes.0.limits.0.rate", "greater than 0"),
        ({"limits": [{"key": "sub", "rate": -5}]}, "routes.0.limits.0.rate", "greater than 0"),
        (
            {"limits": [{"key": "sub", "rate": 1, "per": 0}]},
            "routes.0.limits.0.per",
            "greater than 0",
        ),
        (
            {"limits": [{"key": "sub", "rate": 1, "burst": 0}]},
            "routes.0.limits.0.burst",
            "greater than or equal to 1",
        ),
        ({"limits": [{"key": "user", "rate": 1}]}, "routes.0.limits.0.key", "claim:<claim name>"),
        ({"limits": [{"key": "claim:", "rate": 1}]}, "routes.0.limits.0.key", "claim:<claim"),
    ],
)
def test_bad_rules_and_limits_are_refused_naming_the_key(
    tmp_path: Path, fields: dict[str, Any], key: str, says: str
) -> None:
    description = refusal(tmp_path, route(**fields))
    line = next(line for line in description.splitlines() if line.strip().startswith(key))
    assert says in line, description


def test_routes_that_share_a_prefix_need_names(tmp_path: Path) -> None:
    description = refusal(tmp_path, route(methods=["GET"]), route(methods=["POST"]))
    assert "two routes are named '/api/'" in description
    settings = Settings.model_validate(
        {"routes": [route(name="read", methods=["GET"]), route(name="write", methods=["POST"])]}
    )
    assert [r.route_name for r in settings.routes] == ["read", "write"]
    assert settings.routes[0].methods == ["GET", "HEAD"]
    description = refusal(tmp_path, route(name="a"), route(name="b"))
    assert "two routes share a prefix" in description


def test_one_rule_or_a_list(tmp_path: Path) -> None:
    one = Settings.model_validate(
        {"routes": [route(allow={"roles": ["a"]}, deny={"client_id": "x"})]}
    )
    assert one.routes[0].allow is not None and len(one.routes[0].allow) == 1
    assert one.routes[0].deny is not None and one.routes[0].deny[0].client_id == ["x"]
