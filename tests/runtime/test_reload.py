"""Reload without a restart, in this process as `gateway serve` runs it: the configuration file
and the files it names are read again and swapped in for new requests; requests in flight
finish on the configuration they started on; a configuration that does not load, fails a
check or changes a setting read only at start is refused with check-config's message, and the
running one keeps serving."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.admin.reload_endpoint import ReloadOutcome
from gateway.authserver.introspection import client_secret_hash
from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.runtime.generations import Generation
from gateway.services import check_configuration
from tests.support.admin_access import ADMIN
from tests.support.credential_files import FAST_HASHER
from tests.support.jwt_tokens import bearer
from tests.support.recording_upstream import Upstream
from tests.support.reloading import ReloadableGateway, reload_config, reloadable_gateway
from tests.support.waiting import eventually

Config = dict[str, Any]


@pytest.fixture
def config(key_files: dict[str, Path], upstream: Upstream, users_file: Path) -> Config:
    return reload_config(key_files, upstream.url, users_file)


@pytest.fixture
async def gw(config: Config, tmp_path: Path) -> AsyncIterator[ReloadableGateway]:
    async with reloadable_gateway(config, tmp_path / "gateway.yaml") as running:
        yield running


def with_route(config: Config, prefix: str, upstream: str, **route: Any) -> Config:
    routes = [*config["routes"], {"prefix": prefix, "upstream": upstream, **route}]
    return {**config, "routes": routes}


async def login(gw: ReloadableGateway, user: str = "alice", password: str = "wonderland") -> str:
    body = {"username": user, "password": password}
    async with gw.http.post(f"{gw.base}/auth/login", json=body) as resp:
        assert resp.status == 200, await resp.text()
        token: str = (await resp.json())["access_token"]
        return token


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


async def jwks_kids(gw: ReloadableGateway) -> set[str]:
    async with gw.http.get(f"{gw.base}/.well-known/jwks.json") as resp:
        return {key["kid"] for key in (await resp.json())["keys"]}


async def metric(gw: ReloadableGateway, sample: str) -> float:
    async with gw.http.get(f"{gw.base}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(f"{sample} "):
                return float(line.split()[1])
    raise AssertionError(f"{sample} is not in /metrics")


# ---- what a reload takes up --------------------------------------------------------------


async def test_a_new_route_table_serves_new_requests(
    gw: ReloadableGateway, config: Config, upstream: Upstream
) -> None:
    assert await gw.status("/public/x") == 200
    assert await gw.status("/reports/x") == 404  # no route yet
    changed = with_route(config, "/reports/", upstream.url, policy="public")
    changed["routes"] = [r for r in changed["routes"] if r["prefix"] != "/public/"]
    gw.write(changed)
    assert await gw.reload() == ReloadOutcome(reloaded=True, generation=2)
    assert await gw.status("/reports/x") == 200
    assert await gw.status("/public/x") == 404  # removed
    assert await metric(gw, "gateway_config_generation") == 2
    assert await metric(gw, 'gateway_config_reloads_total{outcome="ok"}') == 1


async def test_kept_alive_connections_take_the_new_configuration(
    gw: ReloadableGateway, config: Config, upstream: Upstream
) -> None:
    """aiohttp's connections keep the handler they opened with: the gateway's hands each
    request to the configuration current when the request comes."""
    connector = aiohttp.TCPConnector(limit=1)  # one connection, kept alive throughout
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"{gw.base}/public/x") as resp:
            assert resp.status == 200
        gw.write(with_route(config, "/new/", upstream.url, policy="public"))
        assert (await gw.reload()).reloaded
        async with session.get(f"{gw.base}/new/x") as resp:
            assert resp.status == 200
        assert len(gw.gateway.public.server.connections) == 1  # the same connection


async def test_the_users_file_is_read_again(
    gw: ReloadableGateway, config: Config, users_file: Path
) -> None:
    await login(gw, "alice", "wonderland")
    users = {"carol": {"password_hash": FAST_HASHER.hash("c4rol-pass"), "roles": ["user"]}}
    users_file.write_text(json.dumps({"users": users}))
    assert (await gw.reload()).reloaded
    await login(gw, "carol", "c4rol-pass")
    async with gw.http.post(
        f"{gw.base}/auth/login", json={"username": "alice", "password": "wonderland"}
    ) as resp:
        assert resp.status == 401  # gone from the file


async def test_admin_keys_are_read_again(gw: ReloadableGateway, config: Config) -> None:
    async with gw.http.get(f"{gw.admin}/admin/revocations", headers=ADMIN) as resp:
        assert resp.status == 200
    gw.write({**config, "admin": {"port": 0, "keys": []}})
    assert (await gw.reload()).reloaded
    async with gw.http.get(f"{gw.admin}/admin/revocations", headers=ADMIN) as resp:
        assert resp.status == 401


# ---- signing-key rotation by three reloads -------------------------------------------------


async def test_key_rotation_by_reloads_refuses_no_token_on_the_way(
    gw: ReloadableGateway, config: Config, key_files: dict[str, Path]
) -> None:
    old = await login(gw)
    assert kid_of(old) == "ed1"
    ed1 = config["keys"]["items"][0]
    es2 = {"kid": "es2", "alg": "ES256", "private_key_file": str(key_files["ES256"])}
    algorithms = ["EdDSA", "ES256"]

    # 1. publish: the new key verifies and is in the JWKS at once; nothing signs with it yet
    gw.write({**config, "keys": {"active": "ed1", "algorithms": algorithms, "items": [ed1, es2]}})
    assert (await gw.reload()).reloaded
    assert await jwks_kids(gw) == {"ed1", "es2"}
    assert kid_of(await login(gw)) == "ed1"
    assert await gw.status("/api/x", headers=bearer(old)) == 200

    # 2. sign with it: new tokens carry es2, those of ed1 still pass
    gw.write({**config, "keys": {"active": "es2", "algorithms": algorithms, "items": [ed1, es2]}})
    assert (await gw.reload()).reloaded
    new = await login(gw)
    assert kid_of(new) == "es2"
    for token in (old, new):
        assert await gw.status("/api/x", headers=bearer(token)) == 200

    # 3. drop the old key (once its tokens have expired, in real life): a token it signed is
    # refused even though the previous configuration had verified and cached it
    gw.write({**config, "keys": {"active": "es2", "algorithms": algorithms, "items": [es2]}})
    assert (await gw.reload()).reloaded
    assert await jwks_kids(gw) == {"es2"}
    assert await gw.status("/api/x", headers=bearer(new)) == 200
    async with gw.http.get(f"{gw.base}/api/x", headers=bearer(old)) as resp:
        assert resp.status == 401
        assert "unknown key" in resp.headers["WWW-Authenticate"]


# ---- refused: the running configuration keeps serving --------------------------------------


def broken_users_file(config: Config, tmp_path: Path) -> Config:
    users = tmp_path / "broken-users.yaml"
    users.write_text("users: [this is: not: a mapping")
    return {**config, "auth": {**config["auth"], "users_file": str(users)}}


def missing_key_file(config: Config, tmp_path: Path) -> Config:
    item = {"kid": "ed9", "alg": "EdDSA", "private_key_file": str(tmp_path / "nowhere.pem")}
    return {**config, "keys": {**config["keys"], "items": [*config["keys"]["items"], item]}}


def invalid_value(config: Config, tmp_path: Path) -> Config:
    return {**config, "tokens": {**config["tokens"], "access_ttl": -5}}


def unknown_key(config: Config, tmp_path: Path) -> Config:
    return {**config, "routez": []}


@pytest.mark.parametrize(
    "breaking", [broken_users_file, missing_key_file, invalid_value, unknown_key]
)
async def test_an_invalid_configuration_is_refused_with_check_configs_message(
    gw: ReloadableGateway,
    config: Config,
    tmp_path: Path,
    upstream: Upstream,
    breaking: Callable[[Config, Path], Config],
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = breaking(with_route(config, "/never/", upstream.url, policy="public"), tmp_path)
    gw.write(broken)
    with pytest.raises(ConfigError) as checked:  # what `gateway check-config` says of it
        check_configuration(load_settings(gw.config))
    with caplog.at_level(logging.ERROR, logger="gateway"):
        outcome = await gw.reload()
    assert outcome == ReloadOutcome(reloaded=False, generation=1, refusal=checked.value.description)
    assert await gw.status("/public/x") == 200  # the running configuration serves on
    assert await gw.status("/never/x") == 404
    assert f"configuration 1 keeps serving: {checked.value.description}" in caplog.text
    assert await metric(gw, 'gateway_config_reloads_total{outcome="refused"}') == 1
    assert await metric(gw, "gateway_config_last_reload_successful") == 0
    gw.write(config)  # fixed: the next reload goes through
    assert await gw.reload() == ReloadOutcome(reloaded=True, generation=2)
    assert await metric(gw, "gateway_config_last_reload_successful") == 1


async def test_unparsable_yaml_is_refused(gw: ReloadableGateway) -> None:
    gw.write("routes: [\n  - {prefix: /a/\n")
    outcome = await gw.reload()
    assert not outcome.reloaded
    assert outcome.refusal is not None and "cannot read configuration" in outcome.refusal
    assert await gw.status("/public/x") == 200


@pytest.mark.parametrize(
    ("section", "change", "named"),
    [
        ("listen", {"port": 1}, "listen.port"),
        ("admin", {"host": "0.0.0.0", "port": 0}, "admin.host"),
        ("redis", {"url": "redis://127.0.0.1:1/0"}, "redis.url"),
        ("proxy", {"drain_timeout": 5, "max_concurrency": 10}, "proxy.max_concurrency"),
        ("revocation", {"fail_mode": "open"}, "revocation.fail_mode"),
    ],
)
async def test_a_restart_only_change_is_refused_naming_it(
    gw: ReloadableGateway,
    config: Config,
    upstream: Upstream,
    section: str,
    change: dict[str, Any],
    named: str,
) -> None:
    changed = with_route(config, "/n/", upstream.url, policy="public")
    gw.write({**changed, section: {**config.get(section, {}), **change}})
    outcome = await gw.reload()
    assert not outcome.reloaded
    assert outcome.refusal is not None
    assert outcome.refusal.startswith("restart required: ")
    assert named in outcome.refusal
    assert await gw.status("/n/x") == 404  # nothing of it was taken up


# ---- requests in flight, and the retired configuration --------------------------------------


async def test_a_request_in_flight_finishes_on_the_old_configuration(
    gw: ReloadableGateway, config: Config, upstream: Upstream
) -> None:
    slow = asyncio.ensure_future(gw.http.get(f"{gw.base}/public/slow?s=1"))
    await eventually(
        lambda: any(r.path == "/public/slow" for r in upstream.received), what="in flight"
    )
    old = gw.gateway.reloader.current
    gw.write({**config, "routes": [r for r in config["routes"] if r["prefix"] != "/public/"]})
    assert (await gw.reload()).reloaded
    assert await gw.status("/public/x") == 404  # new requests: the new table
    assert old.in_flight == 1
    resp = await slow
    assert resp.status == 200  # the one in flight: the old table, to its end
    assert (await resp.json())["path"] == "/public/slow"
    resp.release()
    # retired once its requests are done: its apps stopped, nothing of it kept alive
    await until_retired(old)
    verifier = weakref.ref(old.services.tokens.verifier)
    del old
    gc.collect()
    assert verifier() is None


async def until_retired(generation: Generation) -> None:
    """Until the configuration's apps were stopped (their runners cleaned up)."""
    runners = list(generation.runners.values())
    await eventually(lambda: all(r.server is None for r in runners), what="retired")


async def test_reloads_asked_for_together_are_done_once(
    gw: ReloadableGateway, config: Config, upstream: Upstream
) -> None:
    """Five SIGHUPs in a row: one reload reads the file after all of them."""
    gw.write(with_route(config, "/new/", upstream.url, policy="public"))
    outcomes = await asyncio.gather(*(gw.reload() for _ in range(5)))
    assert outcomes == [ReloadOutcome(reloaded=True, generation=2)] * 5
    assert await gw.status("/new/x") == 200
    assert await gw.reload() == ReloadOutcome(reloaded=True, generation=3)


async def test_introspection_counts_outlive_a_reload(gw: ReloadableGateway, config: Config) -> None:
    secret = "svc-secret-0123456789"
    config = {
        **config,
        "introspection": {
            "clients": [{"id": "svc", "hash": client_secret_hash(secret)}],
            "rate_limit": {"limit": 2, "window": 3600},
        },
    }
    gw.write(config)
    assert (await gw.reload()).reloaded
    auth = {"Authorization": aiohttp.encode_basic_auth("svc", secret)}

    async def introspect() -> int:
        url = f"{gw.base}/auth/introspect"
        async with gw.http.post(url, data={"token": "x"}, headers=auth) as resp:
            return resp.status

    assert [await introspect(), await introspect()] == [200, 200]
    assert (await gw.reload()).reloaded
    assert await introspect() == 429  # the limit still counts what came before the reload


# ---- POST /admin/reload --------------------------------------------------------------------


async def test_post_admin_reload(
    gw: ReloadableGateway, config: Config, upstream: Upstream, tmp_path: Path
) -> None:
    url = f"{gw.admin}/admin/reload"
    async with gw.http.post(url) as resp:
        assert resp.status == 401  # an admin key is required
    gw.write(with_route(config, "/new/", upstream.url, policy="public"))
    async with gw.http.post(url, headers=ADMIN) as resp:
        assert resp.status == 200
        assert await resp.json() == {"reloaded": True, "generation": 2}
    assert await gw.status("/new/x") == 200

    gw.write(broken_users_file(config, tmp_path))
    async with gw.http.post(url, headers=ADMIN) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"] == "invalid_configuration"
    assert "not valid YAML/JSON" in body["error_description"]
    assert await gw.status("/new/x") == 200  # still the previous configuration

    async with gw.http.get(url, headers=ADMIN) as resp:
        assert resp.status == 405
    async with gw.http.get(f"{gw.admin}/admin/audit", headers=ADMIN) as resp:
        entries = [e for e in (await resp.json())["entries"] if e["action"] == "reload_config"]
    assert [e["detail"]["reloaded"] for e in entries] == [False, True]  # newest first
    assert entries[0]["actor"] == "admin-key:ops"


async def test_no_reload_once_the_gateway_stops(config: Config, tmp_path: Path) -> None:
    async with reloadable_gateway(config, tmp_path / "stopping.yaml") as running:
        reloader = running.gateway.reloader
    outcome = await reloader.reload()  # (POST /admin/reload answers 503 for it)
    assert outcome.shutting_down and not outcome.reloaded
    assert outcome.generation == 1
