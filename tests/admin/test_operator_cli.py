"""Operator CLI against a real redis-server: users, admin keys, revocations, sessions, audit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gateway.authserver.credentials import load_user_file, verify_password
from gateway.config import Settings
from tests.support.gateway_cli import run_cli
from tests.support.gateway_client import GatewayFactory, login, wait_for_status
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.slow  # runs the CLI in child processes


def test_users_add_and_hash(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    result = run_cli(
        "users",
        "add",
        "--file",
        str(path),
        "--username",
        "carol",
        "--roles",
        "a,b",
        "--password-stdin",
        stdin="s3cret-pass\n",
    )
    assert result.returncode == 0, result.stderr
    assert "s3cret-pass" not in path.read_text()
    record = load_user_file(path)["carol"]
    assert record.identity.roles == ("a", "b")
    assert verify_password(record.password_hash, "s3cret-pass")
    assert not verify_password(record.password_hash, "wrong")
    hashed = run_cli("users", "hash-password", "--password-stdin", stdin="x\n")
    assert hashed.stdout.startswith("$argon2id$")
    empty = run_cli("users", "hash-password", "--password-stdin", stdin="\n")
    assert empty.returncode != 0


def test_admin_key_create_prints_key_once_and_hash() -> None:
    result = run_cli("admin-key", "create", "--id", "ops")
    assert result.returncode == 0
    key = result.stdout.split(": ", 1)[1].splitlines()[0].strip()
    assert key.startswith("gwadm_") and len(key) > 40
    from gateway.admin.apikeys import admin_key_hash

    assert admin_key_hash(key) in result.stdout


def test_operator_verbs_refuse_memory_store(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"redis": {"url": "memory://"}}))
    result = run_cli("revoke", "user", "alice", "--config", str(config))
    assert result.returncode == 2
    assert "memory://" in result.stderr


@pytest.mark.redis
def test_revoke_token_usage_errors(tmp_path: Path, redis_server: RedisServer) -> None:
    """A command line that cannot work is a usage message (exit 2), a bad token too."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"redis": {"url": redis_server.url}}))
    neither = run_cli("revoke", "token", "--jti", "abc", "--config", str(config))
    assert neither.returncode == 2
    assert "give --token, or --jti with --exp" in neither.stderr
    garbage = run_cli("revoke", "token", "--token", "not-a-jwt", "--config", str(config))
    assert garbage.returncode == 2
    assert "not a valid access token" in garbage.stderr
    assert "Traceback" not in neither.stderr + garbage.stderr


@pytest.mark.redis
async def test_operator_verbs_on_real_redis(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    users_file: Path,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    settings = settings_factory(
        redis={"url": redis_server.url},
        auth={"users_file": str(users_file)},
        revocation={"check_interval": 0.2},
    )
    gateway = await gateway_factory(settings)
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(settings.model_dump(mode="json")))
    laptop = await login(gateway, device_id="laptop", device_name="Laptop")
    phone = await login(gateway, device_id="phone")

    listed = run_cli("sessions", "list", "alice", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert {s["device_id"] for s in json.loads(listed.stdout)} == {"laptop", "phone"}

    result = run_cli("revoke", "session", laptop["session_id"], "--config", str(config))
    assert result.returncode == 0, result.stderr
    missing = run_cli("revoke", "session", laptop["session_id"], "--config", str(config))
    assert missing.returncode == 1

    result = run_cli("revoke", "user", "alice", "--config", str(config))
    assert "1 sessions ended" in result.stdout

    await wait_for_status(gateway, phone["access_token"], 401)

    audit = run_cli("audit", "tail", "--config", str(config))
    actions = [json.loads(line)["action"] for line in audit.stdout.splitlines()]
    assert actions == ["revoke_user", "revoke_session"]
    assert all(json.loads(line)["actor"].startswith("cli:") for line in audit.stdout.splitlines())


@pytest.mark.redis
def test_cli_reports_redis_outage(tmp_path: Path) -> None:
    from tests.support.processes import free_port

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"redis": {"url": f"redis://127.0.0.1:{free_port()}/0"}}))
    result = run_cli("revoke", "user", "alice", "--config", str(config))
    assert result.returncode == 3
    assert "Redis is unavailable" in result.stderr
