"""TLS to a pool's targets: a CA bundle of its own, a client certificate (mTLS), the server name
to verify; a target the gateway cannot trust, or that refuses it, is a 502 at once (never a
hang). The files are read when a configuration is built: a missing one is check-config's
error and a refused reload, and a reload reads them again. Also through Debian's nginx as
the TLS target."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.services import check_configuration
from tests.support.gateway_client import GatewayClient, GatewayFactory
from tests.support.processes import free_port
from tests.support.programs import require
from tests.support.recording_upstream import Upstream
from tests.support.reloading import reload_config, reloadable_gateway
from tests.support.tls_certs import SERVER_NAME, TlsFiles, write_tls_files
from tests.support.waiting import eventually

NGINX = "/usr/sbin/nginx"
BAD_GATEWAY = {"error": "bad_gateway", "error_description": "the upstream could not be reached"}


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return write_tls_files(tmp_path / "tls")


async def _whoami(request: web.Request) -> web.Response:
    peer = request.transport.get_extra_info("peercert") if request.transport else None
    subject = dict(x[0] for x in peer["subject"]) if peer else {}
    return web.json_response({"path": request.path, "client": subject.get("commonName")})


@asynccontextmanager
async def tls_target(context: ssl.SSLContext) -> AsyncIterator[str]:
    """An aiohttp server over TLS on a free loopback port; its https:// URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _whoami)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context)
    await site.start()
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def tls_gateway_settings(
    settings_factory: Callable[..., Settings], target: str, **tls: Any
) -> Settings:
    return settings_factory(
        upstreams={"secure": {"targets": [target], "tls": tls}},
        routes=[{"prefix": "/", "upstream": "secure", "policy": "public"}],
    )


async def fetch(client: GatewayClient, path: str = "/x") -> tuple[int, Any]:
    resp = await client.get(path)
    return resp.status, await resp.json()


async def test_a_target_signed_by_the_pools_ca_is_trusted(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings], tls: TlsFiles
) -> None:
    async with tls_target(tls.server_context()) as target:
        client = await gateway_factory(
            tls_gateway_settings(settings_factory, target, ca_file=str(tls.ca))
        )
        for _ in range(2):  # the second on the kept-alive connection
            assert await fetch(client, "/a") == (200, {"path": "/a", "client": None})


async def test_a_target_signed_by_another_ca_is_502_at_once(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings], tls: TlsFiles
) -> None:
    async with tls_target(tls.server_context()) as target:
        untrusting = await gateway_factory(
            tls_gateway_settings(settings_factory, target, ca_file=str(tls.other_ca))
        )
        assert await fetch(untrusting) == (502, BAD_GATEWAY)
        system = await gateway_factory(  # the system's CAs do not know the tests' CA either
            settings_factory(routes=[{"prefix": "/", "upstream": target, "policy": "public"}])
        )
        assert await fetch(system) == (502, BAD_GATEWAY)


async def test_mutual_tls_presents_the_client_certificate(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings], tls: TlsFiles
) -> None:
    async with tls_target(tls.server_context(require_client_cert=True)) as target:
        with_cert = await gateway_factory(
            tls_gateway_settings(
                settings_factory,
                target,
                ca_file=str(tls.ca),
                cert_file=str(tls.client_cert),
                key_file=str(tls.client_key),
            )
        )
        assert await fetch(with_cert) == (200, {"path": "/x", "client": "gateway"})
        without = await gateway_factory(
            tls_gateway_settings(settings_factory, target, ca_file=str(tls.ca))
        )
        assert await fetch(without) == (502, BAD_GATEWAY)  # the target refused the handshake


async def test_the_server_name_is_what_the_certificate_must_name(
    gateway_factory: GatewayFactory, settings_factory: Callable[..., Settings], tls: TlsFiles
) -> None:
    async with tls_target(tls.server_context()) as target:
        named = await gateway_factory(
            tls_gateway_settings(
                settings_factory, target, ca_file=str(tls.ca), server_name=SERVER_NAME
            )
        )
        assert (await fetch(named))[0] == 200
        mismatch = await gateway_factory(
            tls_gateway_settings(
                settings_factory, target, ca_file=str(tls.ca), server_name="billing.internal"
            )
        )
        assert await fetch(mismatch) == (502, BAD_GATEWAY)
        unverified = await gateway_factory(  # loopback only: a sidecar's self-made certificate
            tls_gateway_settings(settings_factory, target, ca_file=str(tls.other_ca), verify=False)
        )
        assert (await fetch(unverified))[0] == 200


@pytest.mark.parametrize("missing", ["ca_file", "key_file"])
def test_a_missing_file_is_check_configs_error(
    settings_factory: Callable[..., Settings], tls: TlsFiles, tmp_path: Path, missing: str
) -> None:
    files = {"ca_file": tls.ca, "cert_file": tls.client_cert, "key_file": tls.client_key}
    files[missing] = tmp_path / "nowhere.pem"
    settings = tls_gateway_settings(
        settings_factory, "https://127.0.0.1:8443", **{k: str(v) for k, v in files.items()}
    )
    with pytest.raises(ConfigError) as refused:
        check_configuration(settings)
    assert refused.value.description.startswith(f"upstreams.secure.tls.{missing}: cannot read")
    assert "nowhere.pem" in refused.value.description


def test_an_unreadable_ca_is_check_configs_error(
    settings_factory: Callable[..., Settings], tls: TlsFiles, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    settings = tls_gateway_settings(
        settings_factory, "https://127.0.0.1:8443", ca_file=str(garbage)
    )
    with pytest.raises(ConfigError) as refused:
        check_configuration(settings)
    assert refused.value.description.startswith("upstreams.secure.tls.ca_file:")


async def test_a_reload_reads_the_files_again_and_refuses_a_missing_one(
    key_files: dict[str, Path],
    upstream: Upstream,
    users_file: Path,
    tmp_path: Path,
    tls: TlsFiles,
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(tls.other_ca.read_bytes())

    def config(ca_file: Path) -> dict[str, Any]:
        return reload_config(
            key_files,
            upstream.url,
            users_file,
            upstreams={"secure": {"targets": [], "tls": {"ca_file": str(ca_file)}}},
            routes=[{"prefix": "/", "upstream": "secure", "policy": "public"}],
        )

    async with tls_target(tls.server_context()) as target:
        first = config(bundle)
        first["upstreams"]["secure"]["targets"] = [target]
        async with reloadable_gateway(first, tmp_path / "gateway.yaml") as gw:
            assert await gw.status("/x") == 502  # not trusted yet
            bundle.write_bytes(tls.ca.read_bytes())  # the right CA, same file
            assert (await gw.reload()).reloaded
            assert await gw.status("/x") == 200
            missing = config(tmp_path / "gone.pem")
            missing["upstreams"]["secure"]["targets"] = [target]
            gw.write(missing)
            outcome = await gw.reload()
            assert not outcome.reloaded
            assert outcome.refusal is not None
            assert outcome.refusal.startswith("upstreams.secure.tls.ca_file: cannot read")
            assert await gw.status("/x") == 200  # the running configuration serves on
            no_key = config(bundle)
            no_key["upstreams"]["secure"]["targets"] = [target]
            no_key["upstreams"]["secure"]["tls"] |= {
                "cert_file": str(tls.client_cert),
                "key_file": str(tmp_path / "gone.key"),
            }
            gw.write(no_key)
            outcome = await gw.reload()
            assert outcome.refusal is not None
            assert outcome.refusal.startswith("upstreams.secure.tls.key_file: cannot read")
            assert await gw.status("/x") == 200


def nginx_conf(directory: Path, port: int, tls: TlsFiles) -> Path:
    temp = directory / "temp"
    temp.mkdir(parents=True, exist_ok=True)
    paths = " ".join(
        f"{kind}_temp_path {temp}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = directory / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  {paths}
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {tls.server_cert};
    ssl_certificate_key {tls.server_key};
    ssl_client_certificate {tls.ca};
    ssl_verify_client on;
    location / {{ return 200 "nginx saw $ssl_client_s_dn\\n"; }}
  }}
}}
"""
    )
    return conf


@pytest.fixture
async def nginx_target(tmp_path: Path, tls: TlsFiles) -> AsyncIterator[str]:
    """Debian's nginx serving TLS on a free loopback port, asking for a client certificate."""
    require(NGINX, install="apt-get install nginx")
    port = free_port()
    directory = tmp_path / "nginx"
    directory.mkdir()
    process = subprocess.Popen(
        [
            NGINX,
            "-e",
            str(directory / "stderr.log"),
            "-p",
            str(directory),
            "-c",
            str(nginx_conf(directory, port, tls)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def listening() -> bool:
        assert process.poll() is None, (directory / "stderr.log").read_text()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    try:
        await eventually(listening, what="nginx listening")
        yield f"https://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_nginx_as_a_tls_target(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    tls: TlsFiles,
    nginx_target: str,
) -> None:
    client = await gateway_factory(
        tls_gateway_settings(
            settings_factory,
            nginx_target,
            ca_file=str(tls.ca),
            cert_file=str(tls.client_cert),
            key_file=str(tls.client_key),
            server_name=SERVER_NAME,
        )
    )
    for _ in range(2):
        resp = await client.get("/x")
        assert resp.status == 200
        assert await resp.text() == "nginx saw CN=gateway\n"
    no_cert = await gateway_factory(
        tls_gateway_settings(settings_factory, nginx_target, ca_file=str(tls.ca))
    )
    refused = await no_cert.get("/x")
    assert refused.status == 400  # nginx's own refusal: no required SSL certificate was sent
    assert "No required SSL certificate" in await refused.text()
    wrong_ca = await gateway_factory(
        tls_gateway_settings(settings_factory, nginx_target, ca_file=str(tls.other_ca))
    )
    assert await fetch(wrong_ca) == (502, BAD_GATEWAY)
