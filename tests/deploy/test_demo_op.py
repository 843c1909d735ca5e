"""The demo OpenID provider (deploy/demo_op.py: oidc-provider-mock in its own process) with
config.yaml's `demo-op` entry: a browser's sign-in as `make demo` runs it, on free ports
(the provider's form posted as a browser would), silent re-login through its session, and
its logout token by hand; the gateway never imports the provider."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import fakeredis
import pytest
import yaml

from gateway.config import Settings
from tests.support.browser_cookies import CookieJar, browser_section
from tests.support.gateway_client import GatewayFactory
from tests.support.processes import clean_env, free_port, stop_processes, wait_for_port
from tests.support.provider_sign_in import NAVIGATE
from tests.support.repository import DEPLOY, EXAMPLE_CONFIG, ROOT

pytestmark = pytest.mark.slow  # a process of its own


@pytest.fixture
def demo_op(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with (tmp_path / "demo-op.log").open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(DEPLOY / "demo_op.py"), "--port", str(port)],
            env=clean_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_processes([process])


async def test_config_yaml_signs_in_at_the_demo_provider(
    demo_op: str,
    gateway_factory: GatewayFactory,
    settings: Settings,
    seal_key_file: Path,
    tmp_path: Path,
) -> None:
    shipped = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    (entry,) = [p for p in shipped["federation"]["providers"] if p["name"] == "demo-op"]
    entry["issuer"] = demo_op
    secret = tmp_path / "secret"
    secret.write_text("demo\n")
    entry["login"]["client_secret_file"] = str(secret)
    data = settings.model_dump()
    data.update(
        environment="demo",
        federation={"providers": [entry]},
        browser={**browser_section(seal_key_file), "public_url": "http://gateway.test"},
    )
    gateway = await gateway_factory(
        Settings(**data), redis=fakeredis.FakeAsyncRedis(), cookie_jar=aiohttp.DummyCookieJar()
    )
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as provider:

        async def sign_in(
            jar: CookieJar, op_cookie: str, *, silent: bool
        ) -> tuple[aiohttp.ClientResponse, str]:
            """Through the provider and back: the callback's answer and the provider's
            session cookie (when it set one)."""
            query = {"return_to": "/app/", **({"prompt": "none"} if silent else {})}
            resp = await gateway.get(
                "/auth/browser/login/demo-op", params=query, allow_redirects=False
            )
            jar.update(resp)
            location = resp.headers["Location"]
            assert location.startswith(f"{demo_op}/oauth2/authorize?")
            headers = {"Cookie": op_cookie} if op_cookie else {}
            if silent:
                answer = await provider.get(location, headers=headers, allow_redirects=False)
            else:  # the provider's form, ada's button
                answer = await provider.post(location, data={"sub": "ada"}, allow_redirects=False)
            assert answer.status == 302, await answer.text()
            back = dict(parse_qsl(urlsplit(answer.headers["Location"]).query))
            cookie = answer.headers.get("Set-Cookie", "").partition(";")[0]
            resp = await gateway.get(
                "/auth/browser/callback/demo-op",
                params=back,
                headers={**jar.header(), **NAVIGATE},
                allow_redirects=False,
            )
            jar.update(resp)
            return resp, cookie

        jar = CookieJar()
        resp, op_cookie = await sign_in(jar, "", silent=False)
        assert resp.status == 303, await resp.text()
        assert op_cookie.startswith("demo_op_session=")
        session = await (await gateway.get("/auth/browser/session", headers=jar.header())).json()
        assert (session["sub"], session["roles"]) == ("demo-op:ada", ["user", "reports"])

        # silent: with the provider's session a code comes without the form; without, the
        # provider answers login_required and the login page follows
        silent = CookieJar()
        resp, _ = await sign_in(silent, op_cookie, silent=True)
        assert resp.status == 303 and resp.headers["Location"] == "/app/"
        resp, _ = await sign_in(CookieJar(), "", silent=True)
        assert resp.headers["Location"] == "/auth/browser/login?return_to=%2Fapp%2F"

        # the provider's logout token for ada, verified with its own published key
        async with provider.post(
            f"{demo_op}/demo/logout-token", data={"sub": "ada", "aud": "gateway-demo"}
        ) as answer:
            token = (await answer.json())["logout_token"]
        resp = await gateway.post("/auth/backchannel-logout", data={"logout_token": token})
        assert resp.status == 200, await resp.text()
        resp = await gateway.get("/app/x", headers={**jar.header(), "Accept": "application/json"})
        assert resp.status == 401


def test_the_gateway_never_imports_the_demo_provider() -> None:
    for path in (ROOT / "gateway").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not [n for n in names if n.split(".")[0] in ("oidc_provider_mock", "flask")], (
                path
            )
