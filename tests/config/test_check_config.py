"""`gateway check-config` builds the configuration as a gateway would (the files it names
read and judged, nothing connected): what it refuses, a reload refuses with the same words."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.services import check_configuration
from tests.support.browser_cookies import browser_section
from tests.support.gateway_cli import run_cli
from tests.support.gateway_settings import auth_section, base_settings

Breaking = Callable[[Path], dict[str, Any]]


def users_not_yaml(tmp_path: Path) -> dict[str, Any]:
    users = tmp_path / "users.yaml"
    users.write_text("users: [oops: {")
    return {"auth": auth_section(users)}


def users_missing(tmp_path: Path) -> dict[str, Any]:
    return {"auth": auth_section(tmp_path / "nobody.yaml")}


def seal_key_too_short(tmp_path: Path) -> dict[str, Any]:
    key = tmp_path / "seal.key"
    key.write_text("c2hvcnQ")
    return {"environment": "development", "browser": browser_section(key)}


def key_file_missing(tmp_path: Path) -> dict[str, Any]:
    item = {"kid": "k9", "alg": "EdDSA", "private_key_file": str(tmp_path / "none.pem")}
    return {"keys": {"active": "k9", "items": [item]}}


@pytest.mark.parametrize(
    ("breaking", "named"),
    [
        (users_not_yaml, "auth.users_file"),
        (users_missing, "auth.users_file"),
        (seal_key_too_short, "browser.seal_keys[0]"),
        (key_file_missing, "keys.items[k9]"),
    ],
)
def test_the_files_a_configuration_names_are_checked(
    key_files: dict[str, Path], tmp_path: Path, breaking: Breaking, named: str
) -> None:
    settings = base_settings(key_files, "http://127.0.0.1:9000", **breaking(tmp_path))
    with pytest.raises(ConfigError) as refused:
        check_configuration(settings)
    assert refused.value.description.startswith(named)


def test_a_sound_configuration_passes_without_connecting(
    key_files: dict[str, Path], users_file: Path
) -> None:
    """Nothing listens on port 1: the check builds every service but connects to nothing."""
    settings = base_settings(
        key_files,
        "http://127.0.0.1:1",
        redis={"url": "redis://127.0.0.1:1/0"},
        auth=auth_section(users_file),
    )
    check_configuration(settings)
    check_configuration(Settings())


@pytest.mark.slow
def test_cli_check_config_reads_the_users_file(tmp_path: Path, key_files: dict[str, Path]) -> None:
    users = tmp_path / "users.yaml"
    users.write_text("users: [oops: {")
    signer = {"kid": "k1", "alg": "EdDSA", "private_key_file": str(key_files["EdDSA"])}
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps(
            {"keys": {"active": "k1", "items": [signer]}, "auth": {"users_file": str(users)}}
        )
    )
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert f"auth.users_file {str(users)!r}: not valid YAML/JSON" in result.stderr
