"""`upstreams`: named pools that routes forward to; what a configuration may not say about them,
refused with check-config's words (the key and the problem)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import Settings, load_settings
from gateway.errors import ConfigError
from tests.support.gateway_cli import run_cli


def _load(tmp_path: Path, upstreams: dict[str, Any], upstream: str = "api") -> Settings:
    path = tmp_path / "config.yaml"
    config = {"upstreams": upstreams, "routes": [{"prefix": "/api/", "upstream": upstream}]}
    path.write_text(yaml.safe_dump(config))
    return load_settings(path)


def test_a_route_names_a_pool_or_keeps_its_url(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        {"api": {"targets": ["http://10.0.0.1:8080/", "http://10.0.0.2:8080/base"]}},
    )
    assert settings.routes[0].upstream_name == "api"
    assert settings.upstreams["api"].targets == [
        "http://10.0.0.1:8080",
        "http://10.0.0.2:8080/base",
    ]
    url = Settings.model_validate(
        {"routes": [{"prefix": "/", "upstream": "http://127.0.0.1:9000/"}]}
    )
    assert url.routes[0].upstream == "http://127.0.0.1:9000"
    assert url.routes[0].upstream_name is None


@pytest.mark.parametrize(
    ("upstreams", "route_upstream", "message"),
    [
        (
            {"api": {"targets": ["http://127.0.0.1:1"]}},
            "billing",
            "routes[/api/].upstream: 'billing' is neither an http(s):// URL nor an upstream",
        ),
        ({"api": {"targets": []}}, "api", "upstreams.api.targets: List should have at least 1"),
        (
            {"api": {"targets": ["http://10.0.0.1", "https://10.0.0.2"]}},
            "api",
            "upstreams.api.targets: Value error, targets mix http:// and https://",
        ),
        (
            {"api": {"targets": ["http://10.0.0.1?x=1"]}},
            "api",
            "upstreams.api.targets: Value error, targets[0]: 'http://10.0.0.1?x=1' is not an",
        ),
        (
            {
                "api": {
                    "targets": ["https://127.0.0.1:8443", "https://10.0.0.2"],
                    "tls": {"verify": False},
                }
            },
            "api",
            "tls.verify: false is accepted only for loopback targets, not https://10.0.0.2",
        ),
        (
            {"api": {"targets": ["http://127.0.0.1:1"], "tls": {"ca_file": "/x"}}},
            "api",
            "tls applies to https:// targets only",
        ),
        (
            {"api": {"targets": ["https://a.internal"], "tls": {"cert_file": "/c.pem"}}},
            "api",
            "cert_file and key_file go together",
        ),
        (
            {"api": {"targets": ["http://127.0.0.1:1"], "balance": "random"}},
            "api",
            "upstreams.api.balance: Input should be 'round_robin' or 'least_in_flight'",
        ),
        (
            {"api": {"targets": ["http://127.0.0.1:1"], "max_in_flight": 0}},
            "api",
            "upstreams.api.max_in_flight: Input should be greater than or equal to 1",
        ),
    ],
)
def test_bad_pools_are_refused_naming_the_key(
    tmp_path: Path, upstreams: dict[str, Any], route_upstream: str, message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, upstreams, route_upstream)
    assert refused.value.description.startswith("invalid configuration:")
    assert message in refused.value.description


def test_verify_off_is_accepted_on_loopback(tmp_path: Path) -> None:
    targets = ["https://127.0.0.1:8443", "https://[::1]:8443", "https://localhost:9443"]
    settings = _load(tmp_path, {"api": {"targets": targets, "tls": {"verify": False}}})
    tls = settings.upstreams["api"].tls
    assert tls is not None and not tls.verify


def test_cli_check_config_names_the_route_and_the_missing_ca(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    routes = [{"prefix": "/api/", "upstream": "billing"}]
    config.write_text(yaml.safe_dump({"routes": routes}))
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert "routes[/api/].upstream: 'billing' is neither an http(s):// URL" in result.stderr
    tls = {"ca_file": str(tmp_path / "missing-ca.pem")}
    pools = {"billing": {"targets": ["https://10.0.0.7:8443"], "tls": tls}}
    config.write_text(yaml.safe_dump({"upstreams": pools, "routes": routes}))
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert f"upstreams.billing.tls.ca_file: cannot read {tls['ca_file']!r}" in result.stderr
