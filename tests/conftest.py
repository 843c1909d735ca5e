"""Shared fixtures: settings with fresh keys, a recording upstream, the gateway, redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import fakeredis
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner

from gateway.app import create_app
from gateway.browser.seal import new_seal_key
from gateway.config import Settings
from gateway.runtime.runner import GatewayRunner
from gateway.tokens.keys import generate_key_material, write_secret_file
from tests.helpers import (
    AUDIENCE,
    ISSUER,
    FakeClock,
    FakeIdentityProvider,
    browser_section,
    write_users_file,
)
from tests.support.processes import free_port, wait_for_port
from tests.support.redis_servers import spawn_redis
from tests.support.redis_topology import (
    ClusterSet,
    Replicated,
    SentinelSet,
    start_cluster,
    start_replicated,
    start_sentinel_set,
)


@pytest.fixture(autouse=True)
def _clean_gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GATEWAY_* variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def key_files(tmp_path: Path) -> dict[str, Path]:
    """Fresh key material for each algorithm, written like `gateway keys generate` does."""
    files = {}
    for alg in ("EdDSA", "ES256", "HS256"):
        path = tmp_path / f"{alg}.key"
        write_secret_file(path, generate_key_material(alg))
        files[alg] = path
    return files


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body_size: int


@dataclass
class Upstream:
    """A real aiohttp server on loopback that records what it received."""

    url: str
    received: list[Recorded] = field(default_factory=list)

    def headers_of(self, index: int = -1) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in self.received[index].headers:
            out.setdefault(name.lower(), []).append(value)
        return out


UPSTREAM = web.AppKey("upstream", Upstream)


async def _upstream_handler(request: web.Request) -> web.StreamResponse:
    upstream = request.app[UPSTREAM]
    size = 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
    upstream.received.append(
        Recorded(
            request.method,
            request.rel_url.raw_path,
            request.rel_url.raw_query_string,
            list(request.headers.items()),
            size,
        )
    )
    path = request.rel_url.raw_path
    leaf = path.rsplit("/", 1)[-1]
    if leaf == "slow":
        await asyncio.sleep(float(request.query.get("s", "5")))
    if leaf == "download":
        total = int(request.query.get("size", "1048576"))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if request.query.get("framing") != "chunked":
            response.content_length = total
        await response.prepare(request)
        block = b"x" * (256 * 1024)
        sent = 0
        cut = int(request.query.get("cut", "0"))
        while sent < total:
            piece = block[: min(len(block), total - sent)]
            await response.write(piece)
            sent += len(piece)
            if cut and sent >= cut:
                assert request.transport is not None
                request.transport.abort()  # the upstream dies mid-body
                return response
        await response.write_eof()
        return response
    headers = {"X-Upstream": "yes", "Connection": "X-Drop-Me", "X-Drop-Me": "1", "Keep-Alive": "5"}
    return web.json_response(
        {"path": path, "query": request.rel_url.raw_query_string, "body_size": size},
        headers=headers,
    )


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    recorder = Upstream(url="")
    app = web.Application()
    app[UPSTREAM] = recorder
    app.router.add_route("*", "/{tail:.*}", _upstream_handler)
    # no access log of its own: log assertions are about the gateway's lines only
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log=None)
    recorder.url = f"http://127.0.0.1:{server.port}"
    yield recorder
    await server.close()


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


@pytest.fixture
def settings_factory(key_files: dict[str, Path], upstream: Upstream) -> Callable[..., Settings]:
    def make(**sections: Any) -> Settings:
        return base_settings(key_files, upstream.url, **sections)

    return make


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


class GatewayTestServer(TestServer):
    """TestServer with the runner `gateway serve` uses (connection layer, fast lane)."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return GatewayRunner(self.app, **kwargs)


GatewayFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def gateway_factory(aiohttp_client: Any) -> GatewayFactory:
    """Start the gateway app on a real loopback socket; `create_app` kwargs pass through."""

    async def make(
        settings: Settings,
        *,
        cookie_jar: aiohttp.abc.AbstractCookieJar | None = None,
        **kwargs: Any,
    ) -> TestClient[Any, Any]:
        app = create_app(settings, **kwargs)
        # as `gateway serve` runs it: the fast lane on, aiohttp's own access log (which
        # prints queries) off
        server = GatewayTestServer(app, host="127.0.0.1")
        await server.start_server(access_log=None)
        options = {} if cookie_jar is None else {"cookie_jar": cookie_jar}
        client: TestClient[Any, Any] = await aiohttp_client(server, **options)
        return client

    return make


@pytest.fixture
async def gateway(gateway_factory: GatewayFactory, settings: Settings) -> TestClient[Any, Any]:
    return await gateway_factory(settings)


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


# ---- real redis-server ------------------------------------------------------------------


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def start(self) -> None:
        """(Re)start on the same port, e.g. after stop() in an outage test."""
        self.process = spawn_redis(self.port, self.directory, appendonly=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port (never the machine's 6379)."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required under CI but is not installed")
        pytest.skip("redis-server binary not found (install redis-server to run this test)")
    port = free_port()
    server = RedisServer(port, spawn_redis(port, tmp_path, appendonly=True), tmp_path)
    yield server
    server.stop()


# ---- the gateway as a real process ---------------------------------------------------


@pytest.fixture
async def gateway_process(
    tmp_path: Path, key_files: dict[str, Path], upstream: Upstream
) -> AsyncIterator[Callable[..., Any]]:
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
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
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
            for _ in range(200):
                try:
                    async with session.get(f"{base}/healthz") as resp:
                        if resp.status == 200:
                            return process, base
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        raise RuntimeError("gateway did not start")

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


@dataclass
class RedisClusterNodes:
    ports: list[int]
    processes: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"


def _cluster_is_ready(port: int) -> bool:
    info = subprocess.run(
        ["redis-cli", "-p", str(port), "cluster", "info"], capture_output=True, text=True
    ).stdout
    return "cluster_state:ok" in info


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """Three cluster-mode masters on free loopback ports, slots spread by redis-cli."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server and redis-cli are required under CI")
        pytest.skip("redis-server/redis-cli not found (install redis-server to run this test)")
    ports = [free_port() for _ in range(3)]
    processes = []
    for port in ports:
        directory = tmp_path / f"node-{port}"
        directory.mkdir()
        processes.append(
            subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(directory),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    # the bus port defaults to port + 10000, which may be taken or past 65535
                    "--cluster-port",
                    str(free_port()),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        for port in ports:
            wait_for_port(port)
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 15
        while not all(_cluster_is_ready(p) for p in ports):
            if time.monotonic() > deadline:
                raise RuntimeError("redis cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        yield RedisClusterNodes(ports, processes)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


# ---- the token service: users, a fake clock, the gateway on fakeredis and on redis-server


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    """The demo users (alice/wonderland, bob/builder with `reports`), cheaply hashed."""
    return write_users_file(tmp_path / "users.yaml")


@pytest.fixture
def auth_settings(settings_factory: Callable[..., Settings], users_file: Path) -> Settings:
    return settings_factory(
        auth={
            "users_file": str(users_file),
            "rate_limits": {
                "per_ip": {"limit": 1000, "window": 60},
                "failures_per_username": {"limit": 1000, "window": 60},
            },
        },
        tokens={"refresh_reuse_grace": 10},
    )


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["fakeredis", pytest.param("redis-server", marks=pytest.mark.redis)])
async def client(
    request: pytest.FixtureRequest,
    gateway_factory: GatewayFactory,
    auth_settings: Settings,
    fake_server: fakeredis.FakeServer,
    clock: FakeClock,
) -> Any:
    """The gateway on fakeredis (unit) and on a real redis-server (integration)."""
    if request.param == "fakeredis":
        redis = fakeredis.FakeAsyncRedis(server=fake_server)
        return await gateway_factory(auth_settings, redis=redis, clock=clock)
    server: RedisServer = request.getfixturevalue("redis_server")
    settings = auth_settings.model_copy(
        update={"redis": auth_settings.redis.model_copy(update={"url": server.url})}
    )
    return await gateway_factory(settings, clock=clock)


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
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are required under CI")
        pytest.skip(
            "chromium/chromium-driver not installed (apt-get install chromium chromium-driver)"
        )
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
    path = tmp_path / "cookie-seal.key"
    write_secret_file(path, new_seal_key())
    return path


@pytest.fixture
def browser_settings_factory(
    settings_factory: Callable[..., Settings], users_file: Path, seal_key_file: Path
) -> Callable[..., Settings]:
    """Browser mode on plain http (`secure: false`, development), the demo users, a sealing
    key; `browser=` overrides browser keys, other keywords whole sections."""

    def make(browser: dict[str, Any] | None = None, **sections: Any) -> Settings:
        defaults: dict[str, Any] = {
            "environment": "development",
            "auth": {
                "users_file": str(users_file),
                "rate_limits": {
                    "per_ip": {"limit": 1000, "window": 60},
                    "failures_per_username": {"limit": 1000, "window": 60},
                },
            },
            "browser": {**browser_section(seal_key_file), **(browser or {})},
        }
        return settings_factory(**{**defaults, **sections})

    return make


@pytest.fixture(params=["fakeredis", pytest.param("redis-server", marks=pytest.mark.redis)])
async def browser_client(
    request: pytest.FixtureRequest,
    gateway_factory: GatewayFactory,
    browser_settings_factory: Callable[..., Settings],
    fake_server: fakeredis.FakeServer,
    clock: FakeClock,
) -> Any:
    """The gateway in browser mode on fakeredis and on a real redis-server; the client keeps
    no cookies of its own (tests send Cookie themselves, byte for byte)."""
    settings = browser_settings_factory()
    jar = aiohttp.DummyCookieJar()
    if request.param == "fakeredis":
        redis = fakeredis.FakeAsyncRedis(server=fake_server)
        return await gateway_factory(settings, redis=redis, clock=clock, cookie_jar=jar)
    server: RedisServer = request.getfixturevalue("redis_server")
    settings = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"url": server.url})}
    )
    return await gateway_factory(settings, clock=clock, cookie_jar=jar)


# ---- replicated Redis: a primary with a replica, Sentinel, a cluster with replicas ------


def _require_redis_binaries() -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server and redis-cli are required under CI")
        pytest.skip("redis-server/redis-cli not found (install redis-server to run this test)")


@pytest.fixture
def redis_replicated(tmp_path: Path) -> Iterator[Replicated]:
    """A primary and one replica (link up), on free loopback ports."""
    _require_redis_binaries()
    topology = start_replicated(tmp_path / "replicated", replicas=1)
    yield topology
    topology.stop()


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[SentinelSet]:
    """A primary, two replicas and three sentinels (quorum 2, primary down after 1 s)."""
    _require_redis_binaries()
    topology = start_sentinel_set(tmp_path / "sentinel", replicas=2)
    yield topology
    topology.stop()


@pytest.fixture
def redis_cluster_replicas(tmp_path: Path) -> Iterator[ClusterSet]:
    """Three cluster masters with two replicas each (a master fails over in ~2 s)."""
    _require_redis_binaries()
    cluster = start_cluster(tmp_path / "cluster", masters=3, replicas=2)
    yield cluster
    cluster.stop()
