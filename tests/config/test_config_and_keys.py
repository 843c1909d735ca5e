"""Configuration and keys: bad settings stop the start naming the key; env beats YAML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gateway.config import Settings, load_settings
from gateway.config_reference import render_reference, replace_section
from gateway.errors import ConfigError
from gateway.tokens.keys import load_keyring
from tests.support.gateway_cli import run_cli
from tests.support.repository import DOCS, EXAMPLE_CONFIG


def write(tmp_path: Path, data: object, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def keys_section(key_file: Path, **extra: object) -> dict[str, object]:
    return {
        "active": "k1",
        "items": [{"kid": "k1", "alg": "EdDSA", "private_key_file": str(key_file), **extra}],
    }


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"tokens": {"access_ttl": -1}}, "tokens.access_ttl"),
        ({"tokens": {"access_ttl": "soon"}}, "tokens.access_ttl"),
        ({"tokens": {"acess_ttl": 5}}, "tokens.acess_ttl"),
        ({"unknown_section": {}}, "unknown_section"),
        ({"listen": {"port": 70000}}, "listen.port"),
        ({"routes": [{"prefix": "api", "upstream": "http://x"}]}, "routes.0.prefix"),
        ({"routes": [{"prefix": "/", "upstream": "ftp://x"}]}, "routes.0.upstream"),
        (
            {"routes": [{"prefix": "/", "upstream": "http://x", "policy": "maybe"}]},
            "routes.0.policy",
        ),
        ({"keys": {"active": "nope", "items": []}}, "keys"),
        ({"redis": {"socket_timeout": 0}}, "redis.socket_timeout"),
        ({"redis": {"url": "mongo://x"}}, "redis.url"),
        ({"redis": {"url": "redis+sentinel://s1:26379"}}, "redis.url"),
        ({"redis": {"url": "redis+sentinel://s1:port/mymaster"}}, "redis.url"),
        ({"revocation": {"fail_mode": "sometimes"}}, "revocation.fail_mode"),
        ({"proxy": {"identity_headers": {"sub": "X User"}}}, "proxy.identity_headers"),
    ],
)
def test_invalid_configuration_names_the_key(tmp_path: Path, data: object, named: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, data))
    assert named in exc.value.description


@pytest.mark.slow
def test_unsupported_redis_url_stops_serve_and_check_config_naming_the_key(
    tmp_path: Path,
) -> None:
    config = write(tmp_path, {"redis": {"url": "mongo://db:27017"}})
    for verb in ("serve", "check-config"):
        result = run_cli(verb, "--config", str(config))
        assert result.returncode == 2, result.stderr
        assert "redis.url" in result.stderr and "mongo://" in result.stderr
        assert "Traceback" not in result.stderr


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: [unclosed")
    with pytest.raises(ConfigError):
        load_settings(bad)


def test_environment_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, {"tokens": {"access_ttl": 900}, "listen": {"port": 8080}})
    monkeypatch.setenv("GATEWAY_TOKENS__ACCESS_TTL", "60")
    monkeypatch.setenv("GATEWAY_LISTEN__PORT", "9090")
    monkeypatch.setenv("GATEWAY_REDIS__URL", "redis://127.0.0.1:1/0")
    settings = load_settings(path)
    assert settings.tokens.access_ttl == 60
    assert settings.listen.port == 9090
    assert settings.redis.url == "redis://127.0.0.1:1/0"
    monkeypatch.setenv("GATEWAY_TOKENS__LEEWAY", "-3")
    with pytest.raises(ConfigError, match=r"tokens\.leeway"):
        load_settings(path)


def test_shipped_config_is_valid() -> None:
    settings = load_settings(EXAMPLE_CONFIG)
    assert settings.redis.url == "memory://"
    assert [r.prefix for r in settings.routes] == ["/public/", "/reports/", "/"]


def test_key_problems(tmp_path: Path, key_files: dict[str, Path]) -> None:
    def keyring(section: dict[str, object]) -> None:
        load_keyring(Settings(keys=section).keys, environ={})  # type: ignore[arg-type]

    with pytest.raises(ConfigError, match="cannot read key file"):
        keyring(keys_section(tmp_path / "missing.pem"))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(ConfigError, match="not an unencrypted PEM"):
        keyring(keys_section(not_pem))
    with pytest.raises(ConfigError, match="does not match alg"):
        keyring(
            {
                "active": "k1",
                "items": [
                    {"kid": "k1", "alg": "ES256", "private_key_file": str(key_files["EdDSA"])}
                ],
            }
        )
    short = tmp_path / "short.secret"
    short.write_text("too-short")
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        keyring(
            {
                "active": "k1",
                "algorithms": ["HS256"],
                "items": [{"kid": "k1", "alg": "HS256", "secret_file": str(short)}],
            }
        )
    with pytest.raises(ConfigError, match=r"not in keys\.algorithms"):
        keyring(
            {
                "active": "k1",
                "algorithms": ["ES256"],
                "items": [
                    {"kid": "k1", "alg": "EdDSA", "private_key_file": str(key_files["EdDSA"])}
                ],
            }
        )
    with pytest.raises(ConfigError, match="GATEWAY_SIGNING_KEY is not set"):
        keyring(
            {
                "active": "k1",
                "items": [{"kid": "k1", "alg": "EdDSA", "private_key_env": "GATEWAY_SIGNING_KEY"}],
            }
        )


def test_key_from_environment(key_files: dict[str, Path]) -> None:
    section = {
        "active": "k1",
        "items": [{"kid": "k1", "alg": "EdDSA", "private_key_env": "SIGNING_PEM"}],
    }
    ring = load_keyring(
        Settings(keys=section).keys,  # type: ignore[arg-type]
        environ={"SIGNING_PEM": key_files["EdDSA"].read_text()},
    )
    assert ring.active is not None and ring.active.kid == "k1"


@pytest.mark.slow
def test_cli_check_config(tmp_path: Path) -> None:
    bad = write(tmp_path, {"tokens": {"access_ttl": -1}})
    result = run_cli("check-config", "--config", str(bad))
    assert result.returncode == 2
    assert "tokens.access_ttl" in result.stderr


@pytest.mark.slow
def test_cli_check_config_masks_secrets(tmp_path: Path) -> None:
    secret = "hs256-secret-" + "s" * 40
    (tmp_path / "hs.key").write_text(secret)
    admin_hash = "sha256:" + "ab" * 32
    config = write(
        tmp_path,
        {
            "redis": {"url": "redis://gw:redis-pass-123@127.0.0.1:6390/0"},
            "admin": {"keys": [{"id": "ops", "hash": admin_hash}]},
            "keys": {
                "active": "h",
                "algorithms": ["HS256"],
                "items": [{"kid": "h", "alg": "HS256", "secret_file": str(tmp_path / "hs.key")}],
            },
            "auth": {"backend": {"url": "https://svc:backend-pass@legacy.example/login"}},
        },
    )
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["redis"]["url"] == "redis://gw:(masked)@127.0.0.1:6390/0"
    assert printed["auth"]["backend"]["url"] == "https://svc:(masked)@legacy.example/login"
    assert printed["admin"]["keys"][0]["hash"].endswith("(masked)")
    for leaked in (secret, "redis-pass-123", "backend-pass", admin_hash):
        assert leaked not in result.stdout + result.stderr


@pytest.mark.slow
def test_cli_keys_generate(tmp_path: Path) -> None:
    out = tmp_path / "k" / "es.pem"
    result = run_cli("keys", "generate", "--alg", "ES256", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" in out.read_bytes()
    again = run_cli("keys", "generate", "--alg", "ES256", "--out", str(out))
    assert again.returncode == 1
    assert "refusing to overwrite" in again.stderr


def test_configuration_page_matches_the_models() -> None:
    page = (DOCS / "configuration.md").read_text()
    assert replace_section(page, render_reference()) == page, "run `make docs`"


def test_configuration_reference_lists_every_key_of_the_example_config() -> None:
    import yaml

    reference = render_reference()

    def keys(data: object, prefix: str = "") -> list[str]:
        maps = (
            "proxy.identity_headers.",
            "federation.providers[].required_claims.",
            "federation.providers[].roles.map.",
            "federation.providers[].access_tokens.roles.map.",
        )
        if isinstance(data, dict) and prefix not in maps:
            return [k for name, v in data.items() for k in keys(v, f"{prefix}{name}.")]
        if isinstance(data, list) and data and isinstance(data[0], dict):
            return [k for item in data for k in keys(item, prefix[:-1] + "[].")]
        return [prefix[:-1]]

    for key in keys(yaml.safe_load(EXAMPLE_CONFIG.read_text())):
        assert f"| `{key}` |" in reference, key
