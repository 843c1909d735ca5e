"""`gateway clients add|list|remove` writing the clients file a gateway then serves, and
`gateway revoke client` against a real redis-server reaching a running gateway."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from gateway.config import Settings
from tests.support.gateway_cli import run_cli
from tests.support.gateway_client import GatewayFactory, wait_for_status
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.slow  # runs the CLI in child processes


def secret_of(output: str) -> str:
    line = next(line for line in output.splitlines() if "client secret" in line)
    return line.rsplit(": ", 1)[1].strip()


async def test_clients_file_and_client_revocation(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    clients = tmp_path / "clients.yaml"
    added = run_cli(
        "clients",
        "add",
        "--file",
        str(clients),
        "--id",
        "nightly",
        "--roles",
        "batch",
        "--scopes",
        "read:scoped",
    )
    assert added.returncode == 0, added.stderr
    secret = secret_of(added.stdout)
    assert secret.startswith("gwcs_") and secret not in clients.read_text()
    app = run_cli(
        "clients",
        "add",
        "--file",
        str(clients),
        "--id",
        "phone-app",
        "--type",
        "public",
        "--grants",
        "password,refresh_token",
    )
    assert app.returncode == 0, app.stderr
    refused = run_cli(
        "clients",
        "add",
        "--file",
        str(clients),
        "--id",
        "bad",
        "--type",
        "public",
        "--grants",
        "client_credentials",
    )
    assert refused.returncode == 2 and "confidential clients only" in refused.stderr
    listed = json.loads(run_cli("clients", "list", "--file", str(clients)).stdout)
    assert [c["id"] for c in listed] == ["nightly", "phone-app"]
    assert listed[0]["secret_hash"].endswith("(masked)")
    assert listed[1]["auth_method"] == "none"

    settings = settings_factory(
        redis={"url": redis_server.url},
        auth={"clients_file": str(clients)},
        revocation={"check_interval": 0.2},
    )
    gateway = await gateway_factory(settings)
    auth = {"Authorization": aiohttp.encode_basic_auth("nightly", secret)}
    resp = await gateway.post(
        "/auth/token", data={"grant_type": "client_credentials"}, headers=auth
    )
    assert resp.status == 200, await resp.text()
    access = (await resp.json())["access_token"]

    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(settings.model_dump(mode="json")))
    revoked = run_cli("revoke", "client", "nightly", "--config", str(config))
    assert revoked.returncode == 0, revoked.stderr
    assert "client:nightly" in revoked.stdout
    await wait_for_status(gateway, access, 401)
    audit = run_cli("audit", "tail", "--config", str(config))
    entry = json.loads(audit.stdout.splitlines()[0])
    assert (entry["action"], entry["target"]) == ("revoke_client", "nightly")

    removed = run_cli("clients", "remove", "--file", str(clients), "--id", "nightly")
    assert removed.returncode == 0
    again = run_cli("clients", "remove", "--file", str(clients), "--id", "nightly")
    assert again.returncode == 1
    assert "nightly" not in clients.read_text()
