"""Shared fixtures, one per thing a test needs running: fresh keys and settings, the recording
upstream, the gateway (in this process or as `gateway serve`), fakeredis and a private
redis-server or topology, a fake identity provider, headless Chromium. What they are built
from lives in tests/support/; fixtures only start things and clean them up."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import fakeredis
import pytest
from aiohttp.abc import AbstractCookieJar
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpClient

from gateway.app import create_app, create_apps
from gateway.config import Settings
from tests.support.browser_cookies import browser_section
from tests.support.clock import FakeClock
from tests.support.credential_files import write_key_files, write_seal_key, write_users_file
from tests.support.faulty_upstream import Fault, FaultyUpstream
from tests.support.gateway_client import (
    GatewayClient,
    GatewayFactory,
    GatewayPair,
    GatewayPairFactory,
    GatewayProcessFactory,
    GatewayTestServer,
)
from tests.support.gateway_settings import auth_section, base_settings, on_redis
from tests.support.identity_provider import IDP_CLIENT_SECRET, FakeIdentityProvider
from tests.support.nginx_front import (
    INSTALL_NGINX,
    TEMPLATE,
    NginxFront,
    NginxFrontFactory,
    main_config,
    nginx_binary,
    render,
)
from tests.support.processes import clean_env, free_port
from tests.support.programs import require
from tests.support.provider_sign_in import PUBLIC_URL, SignInGateway, sign_in_provider
from tests.support.recording_upstream import RecordingUpstreams, Upstream, recording_app
from tests.support.redis_servers import RedisServer, spawn_redis
from tests.support.redis_topology import (
    ClusterSet,
    Replicated,
    SentinelSet,
    start_cluster,
    start_replicated,
    start_sentinel_set,
)
from tests.support.waiting import eventually


@pytest.fixture(autouse=True)
def _clean_gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GATEWAY_* variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def key_files(tmp_path: Path) -> dict[str, Path]:
    """Fresh key material for each algorithm, written like `gateway keys generate` does."""
    return write_key_files(tmp_path)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """The recording upstream on a free loopback port."""
    recorder = Upstream(url="")
    app = recording_app(recorder)
    # no access log of its own: log assertions are about the gateway's lines only
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log=None)
    recorder.url = f"http://127.0.0.1:{server.port}"
    yield recorder
    await server.close()


@pytest.fixture
async def upstreams() -> AsyncIterator[RecordingUpstreams]:
    """More recording upstreams (a pool's targets), started and stopped by the test; every
    one still running is closed after it."""
    started = RecordingUpstreams()
    yield started
    await started.close()


@pytest.fixture
async def faulty_upstream_factory() -> AsyncIterator[Callable[[Fault], Awaitable[FaultyUpstream]]]:
    """Upstreams that reset every request after reading it, or stall; closed after the test."""
    started: list[FaultyUpstream] = []

    async def make(fault: Fault) -> FaultyUpstream:
        upstream = await FaultyUpstream(fault).start()
        started.append(upstream)
        return upstream

    yield make
    for upstream in started:
        await upstream.close()


@pytest.fixture
def settings_factory(key_files: dict[str, Path], upstream: Upstream) -> Callable[..., Settings]:
    def make(**sections: Any) -> Settings:
        return base_settings(key_files, upstream.url, **sections)

    return make


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
async def gateway_factory() -> AsyncIterator[GatewayFactory]:
    """Start the gateway app on a real loopback socket; `create_app` kwargs pass through.
    Every client it made is closed after the test."""
    clients: list[GatewayClient] = []

    async def make(
        settings: Settings, *, cookie_jar: AbstractCookieJar | None = None, **kwargs: Any
    ) -> GatewayClient:
        app = create_app(settings, **kwargs)
        # as `gateway serve` runs it: the fast lane on, aiohttp's own access log (which
        # prints queries) off
        server = GatewayTestServer(app, host="127.0.0.1")
        await server.start_server(access_log=None)
        client = GatewayClient(server, cookie_jar=cookie_jar)
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def gateway(gateway_factory: GatewayFactory, settings: Settings) -> GatewayClient:
    return await gateway_factory(settings)


@pytest.fixture
def gateway_pair_factory(aiohttp_client: AiohttpClient) -> GatewayPairFactory:
    """One gateway's two listeners (`create_apps`: public, admin), each behind a test client;
    `create_apps` kwargs pass through."""

    async def make(settings: Settings, **kwargs: Any) -> GatewayPair:
        public, admin = create_apps(settings, **kwargs)
        return await aiohttp_client(public), await aiohttp_client(admin)

    return make


@pytest.fixture
async def identity_provider() -> AsyncIterator[FakeIdentityProvider]:
    """A fake OIDC identity provider on a free loopback port (discovery, JWKS, signer)."""
    idp = FakeIdentityProvider()
    server = TestServer(idp.app(), host="127.0.0.1")
    await server.start_server(access_log=None)
    idp.url = f"http://127.0.0.1:{server.port}"
    yield idp
    idp.release.set()
    await server.close()


# ---- nginx in front (forward-auth) -------------------------------------------------------


@pytest.fixture
async def nginx_front(tmp_path: Path) -> AsyncIterator[NginxFrontFactory]:
    """nginx configured by deploy/nginx/'s template, in front of a gateway (its decisions and
    its own endpoints) and an app; stopped after the test."""
    require("nginx", install=INSTALL_NGINX)
    binary = nginx_binary()
    assert binary is not None
    started: list[subprocess.Popen[bytes]] = []

    async def start(gateway: str, app: str, *, decisions: str | None = None) -> NginxFront:
        workdir = tmp_path / f"nginx-{len(started)}"
        workdir.mkdir()
        port = free_port()
        included = workdir / "forward-auth.conf"
        addresses = {"LISTEN": f"127.0.0.1:{port}", "GATEWAY": gateway, "APP": app}
        included.write_text(render(TEMPLATE, DECISIONS=decisions or gateway, **addresses))
        config = main_config(workdir, included)
        process = subprocess.Popen(
            [binary, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        front = NginxFront(f"http://127.0.0.1:{port}", process, workdir)

        async def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited with {process.returncode}: {front.error_log()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return False
            writer.close()
            return True

        await eventually(listening, 30, what=f"nginx listens on {port}")
        return front

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
    for process in started:
        process.wait(timeout=15)


# ---- real redis-server ------------------------------------------------------------------

INSTALL_REDIS = "apt-get install redis-server"  # redis-server and redis-cli


# Fixtures that run each test on fakeredis and on a real redis-server. The real half starts
# a redis-server per test (about 0.15 s with its stop): `make test` and CI run it, `make
# test-fast` keeps the fakeredis half.
FAKE_AND_REAL_REDIS: Final = [
    "fakeredis",
    pytest.param("redis-server", marks=[pytest.mark.redis, pytest.mark.slow]),
]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port (never the machine's 6379)."""
    require("redis-server", install=INSTALL_REDIS)
    port = free_port()
    server = RedisServer(port, spawn_redis(port, tmp_path, appendonly=True), tmp_path)
    yield server
    server.stop()


# ---- the gateway as a real process ---------------------------------------------------


@pytest.fixture
async def gateway_process(
    tmp_path: Path, key_files: dict[str, Path], upstream: Upstream
) -> AsyncIterator[GatewayProcessFactory]:
    """Start `gateway serve` in a child process (see `start`); killed after the test."""
    processes: list[subprocess.Popen[bytes]] = []

    async def start(
        *args: str,
        redis_url: str = "memory://",
        sections: dict[str, Any] | None = None,
        **proxy: Any,
    ) -> tuple[subprocess.Popen[bytes], str]:
        """`gateway serve` in a child process; returns it once /healthz answers. `sections`
        replaces whole sections of the configuration below."""
        port = free_port()
        config: dict[str, Any] = {
            "redis": {"url": redis_url},
            "listen": {"port": port},
            "admin": {"port": free_port()},
            "keys": {
                "active": "k",
                "items": [{"kid": "k", "private_key_file": str(key_files["EdDSA"])}],
            },
            "proxy": proxy,
            "routes": [{"prefix": "/", "upstream": upstream.url, "policy": "public"}],
        }
        config.update(sections or {})
        path = tmp_path / f"config-{port}.yaml"
        path.write_text(json.dumps(config))
        env = clean_env()
        # Logs go to a file: an unread pipe fills up and blocks the workers' log writes.
        with (tmp_path / f"gateway-{port}.log").open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--config", str(path), *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:

            async def healthy() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"gateway serve exited with {process.returncode}")
                try:
                    async with session.get(f"{base}/healthz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(healthy, 30, what=f"{base}/healthz answers 200")
        return process, base

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[ClusterSet]:
    """Three cluster-mode masters on free loopback ports, slots spread by redis-cli."""
    require("redis-server", "redis-cli", install=INSTALL_REDIS)
    cluster = start_cluster(tmp_path / "cluster", masters=3, replicas=0, node_timeout_ms=2000)
    yield cluster
    cluster.stop()


# ---- the token service: users, a fake clock, the gateway on fakeredis and on redis-server


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    """The demo users (alice/wonderland, bob/builder with `reports`), cheaply hashed."""
    return write_users_file(tmp_path / "users.yaml")


@pytest.fixture
def auth_settings(settings_factory: Callable[..., Settings], users_file: Path) -> Settings:
    return settings_factory(auth=auth_section(users_file), tokens={"refresh_reuse_grace": 10})


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=FAKE_AND_REAL_REDIS)
async def client(
    request: pytest.FixtureRequest,
    gateway_factory: GatewayFactory,
    auth_settings: Settings,
    fake_server: fakeredis.FakeServer,
    clock: FakeClock,
) -> GatewayClient:
    """The gateway on fakeredis (unit) and on a real redis-server (integration)."""
    return await _on_each_store(request, gateway_factory, auth_settings, fake_server, clock)


async def _on_each_store(
    request: pytest.FixtureRequest,
    gateway_factory: GatewayFactory,
    settings: Settings,
    fake_server: fakeredis.FakeServer,
    clock: FakeClock,
    **options: Any,
) -> GatewayClient:
    """The gateway on fakeredis, or on a private redis-server for the `redis-server` param."""
    if request.param == "fakeredis":
        redis = fakeredis.FakeAsyncRedis(server=fake_server)
        return await gateway_factory(settings, redis=redis, clock=clock, **options)
    server: RedisServer = request.getfixturevalue("redis_server")
    return await gateway_factory(on_redis(settings, server.url), clock=clock, **options)


# ---- a real browser ----------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # this machine has no network: no background fetches, updates or sync to be refused
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium (Debian's) driven by Selenium through Debian's chromedriver, with a
    fresh profile; quit after the test. Skipped without the packages unless CI is set."""
    require(CHROMIUM, CHROMEDRIVER, install="apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


# ---- browser sessions (cookie mode) -------------------------------------------------------


@pytest.fixture
def seal_key_file(tmp_path: Path) -> Path:
    """A cookie-sealing key, written as `gateway cookie-key generate` does."""
    return write_seal_key(tmp_path / "cookie-seal.key")


@pytest.fixture
def browser_settings_factory(
    settings_factory: Callable[..., Settings], users_file: Path, seal_key_file: Path
) -> Callable[..., Settings]:
    """Browser mode on plain http (`secure: false`, development), the demo users, a sealing
    key; `browser=` overrides browser keys, other keywords whole sections."""

    def make(browser: dict[str, Any] | None = None, **sections: Any) -> Settings:
        defaults: dict[str, Any] = {
            "environment": "development",
            "auth": auth_section(users_file),
            "browser": {**browser_section(seal_key_file), **(browser or {})},
        }
        return settings_factory(**{**defaults, **sections})

    return make


@pytest.fixture(params=FAKE_AND_REAL_REDIS)
async def browser_client(
    request: pytest.FixtureRequest,
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    fake_server: fakeredis.FakeServer,
    clock: FakeClock,
) -> GatewayClient:
    """The gateway in browser mode on fakeredis and on a real redis-server; the client keeps
    no cookies of its own (tests send Cookie themselves, byte for byte)."""
    settings = browser_settings_factory()
    jar = aiohttp.DummyCookieJar()
    return await _on_each_store(
        request, gateway_factory, settings, fake_server, clock, cookie_jar=jar
    )


# ---- replicated Redis: a primary with a replica, Sentinel, a cluster with replicas ------


@pytest.fixture
def redis_replicated(tmp_path: Path) -> Iterator[Replicated]:
    """A primary and one replica (link up), on free loopback ports."""
    require("redis-server", "redis-cli", install=INSTALL_REDIS)
    topology = start_replicated(tmp_path / "replicated", replicas=1)
    yield topology
    topology.stop()


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[SentinelSet]:
    """A primary, two replicas and three sentinels (quorum 2, primary down after 1 s)."""
    require("redis-server", "redis-cli", install=INSTALL_REDIS)
    topology = start_sentinel_set(tmp_path / "sentinel", replicas=2)
    yield topology
    topology.stop()


@pytest.fixture
def redis_cluster_replicas(tmp_path: Path) -> Iterator[ClusterSet]:
    """Three cluster masters with two replicas each (a master fails over in ~2 s)."""
    require("redis-server", "redis-cli", install=INSTALL_REDIS)
    cluster = start_cluster(tmp_path / "cluster", masters=3, replicas=2)
    yield cluster
    cluster.stop()


# ---- sign-in at an identity provider (browsers) -------------------------------------------


@pytest.fixture
def client_secret_file(tmp_path: Path) -> Path:
    """The gateway's client secret at the fake identity provider."""
    path = tmp_path / "client-secret"
    path.write_text(IDP_CLIENT_SECRET + "\n")
    return path


@pytest.fixture
def sign_in_settings(
    browser_settings_factory: Callable[..., Settings],
    identity_provider: FakeIdentityProvider,
    client_secret_file: Path,
    upstream: Upstream,
) -> Callable[..., Settings]:
    """Browser mode with the fake provider offered for sign-in (`login=` and `browser=`
    override keys of its login block and of the browser section)."""

    def make(
        login: dict[str, Any] | None = None, browser: dict[str, Any] | None = None
    ) -> Settings:
        provider = sign_in_provider(identity_provider, client_secret_file, **(login or {}))
        return browser_settings_factory(
            browser={"public_url": PUBLIC_URL, **(browser or {})},
            federation={"providers": [provider], "fetch_timeout": 1.0},
            routes=[{"prefix": "/", "upstream": upstream.url}],
        )

    return make


@pytest.fixture
def sign_in_gateway(
    gateway_factory: GatewayFactory,
    sign_in_settings: Callable[..., Settings],
    identity_provider: FakeIdentityProvider,
    fake_server: fakeredis.FakeServer,
    clock: FakeClock,
) -> SignInGateway:
    """The gateway (on fakeredis, the test's clock) offering the fake provider for sign-in;
    each call starts one more over the same store."""
    identity_provider.clock = clock

    async def make(**overrides: Any) -> GatewayClient:
        return await gateway_factory(
            sign_in_settings(**overrides),
            redis=fakeredis.FakeAsyncRedis(server=fake_server),
            clock=clock,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    return make
