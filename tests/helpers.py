"""Test helpers: tokens (valid or deliberately broken), users, a fake clock, logins, the CLI.

Every test module imports shared pieces from here or gets them as fixtures from conftest.py;
no test module imports another.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import jwt
import yaml
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization

from gateway.admin.apikeys import admin_key_hash

AUDIENCE: Final = "test-api"
ISSUER: Final = "http://gateway.test"
ADMIN_KEY: Final = "gwadm_test-key-0123456789"
ADMIN: Final = {"Authorization": f"Bearer {ADMIN_KEY}"}
ADMIN_KEYS: Final = {"keys": [{"id": "ops", "hash": admin_key_hash(ADMIN_KEY)}]}
CONSOLE: Final = "/admin/console/"
HTML: Final = {"Accept": "text/html,application/xhtml+xml"}  # what a browser navigation sends
HOSTILE: Final = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>&amp;"\''
# Cheap argon2id parameters: the hashes are real, the tests stay fast.
FAST_HASHER: Final = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class FakeClock:
    """A clock that moves only when a test moves it (`clock.now += 60`)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": secrets.token_urlsafe(12),
        "sid": "s-" + secrets.token_urlsafe(8),
        "roles": ["user"],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def private_key(key_files: dict[str, Path], alg: str = "EdDSA") -> Any:
    data = key_files[alg].read_bytes().strip()
    if alg == "HS256":
        return data
    return serialization.load_pem_private_key(data, password=None)


def mint(
    key_files: dict[str, Path],
    *,
    alg: str = "EdDSA",
    kid: str | None = "ed1",
    typ: str | None = "at+jwt",
    headers: dict[str, Any] | None = None,
    **claim_overrides: Any,
) -> str:
    """An access token signed with a test key; every header and claim can be bent."""
    hdr: dict[str, Any] = {}
    if kid is not None:
        hdr["kid"] = kid
    if typ is not None:
        hdr["typ"] = typ
    hdr.update(headers or {})
    return jwt.encode(claims(**claim_overrides), private_key(key_files, alg), alg, headers=hdr)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_users_file(path: Path) -> Path:
    """The demo users: alice/wonderland (`user`), bob/builder (`user`, `reports`)."""
    users = {
        "alice": {"password_hash": FAST_HASHER.hash("wonderland"), "roles": ["user"]},
        "bob": {"password_hash": FAST_HASHER.hash("builder"), "roles": ["user", "reports"]},
    }
    path.write_text(yaml.safe_dump({"users": users}))
    return path


async def login(
    client: Any, user: str = "alice", password: str = "wonderland", **extra: Any
) -> Any:
    """POST /auth/login and return the token response (asserting 200)."""
    resp = await client.post("/auth/login", json={"username": user, "password": password, **extra})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def wait_for_status(client: Any, token: str, status: int, *, limit: float = 10.0) -> float:
    """Poll until the gateway answers `status` for the token; returns the seconds it took."""
    start = time.monotonic()
    while True:
        resp = await client.get("/api", headers=bearer(token))
        if resp.status == status:
            return time.monotonic() - start
        if time.monotonic() - start > limit:
            raise AssertionError(f"still {resp.status} after {limit}s, wanted {status}")
        await asyncio.sleep(0.005)


def clean_env() -> dict[str, str]:
    """This process's environment without any GATEWAY_* override."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}


def run_cli(
    *args: str, stdin: str | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m gateway ARGS` in a child process (`env` added to a clean environment)."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**clean_env(), **(env or {})},
        timeout=timeout,
    )


async def raw_request(
    client: Any, request: bytes, *, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """Send bytes exactly as given (no client-side normalization) and read one final
    response (framed by Content-Length, or by the end of the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(read_response(reader), timeout)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """The next final response on a connection (interim 1xx answers are skipped)."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        status, headers, _ = parse_response(head)
        if status >= 200:
            break
    length = next((int(v) for k, v in headers.items() if k.lower() == "content-length"), None)
    body = await (reader.readexactly(length) if length is not None else reader.read())
    return status, headers, body


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the last response in `data` (after any 100 Continue)."""
    while data.startswith(b"HTTP/1.1 100"):
        data = data.partition(b"\r\n\r\n")[2]
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def get(path: str, *headers: str) -> bytes:
    """A raw GET request line and headers, closing the connection after the answer."""
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n{extra}\r\n".encode("latin-1")


# ---- a fake identity provider (OIDC discovery + JWKS + a signer) ----------------------

IDP_CLIENT_ID: Final = "gateway-app"
ID_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:id_token"
JWT_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
_IDP_KEYS: dict[str, Any] = {}


def idp_key(name: str) -> Any:
    """Test keys made once per run (RSA generation is slow): rsa1, rsa2, ec1, attacker."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if name not in _IDP_KEYS:
        if name.startswith("ec"):
            _IDP_KEYS[name] = ec.generate_private_key(ec.SECP256R1())
        else:
            _IDP_KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _IDP_KEYS[name]


def public_jwk(name: str, alg: str) -> dict[str, Any]:
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    public = idp_key(name).public_key()
    codec: Any = ECAlgorithm if alg.startswith("ES") else RSAAlgorithm
    return {**codec.to_jwk(public, as_dict=True), "kid": name, "alg": alg, "use": "sig"}


class FakeIdentityProvider:
    """An OIDC provider on loopback that records every request it gets. Its JWKS can be
    made to fail (`jwks_mode`: ok, error, hang, redirect, huge) and its discovery document
    to name another issuer; `id_token` signs whatever a test needs."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[str] = []
        self.jwks_mode = "ok"
        self.redirect_to = ""
        self.discovery_issuer: str | None = None
        self.cache_control: str | None = "max-age=600"
        self.published = [("rsa1", "RS256"), ("ec1", "ES256")]
        self.release = asyncio.Event()  # frees handlers told to hang

    @property
    def issuer(self) -> str:
        return self.url

    def count(self, path: str) -> int:
        return sum(1 for p in self.requests if p == path)

    def id_token(
        self,
        *,
        now: float,
        alg: str = "RS256",
        kid: str | None = "rsa1",
        key: str | None = None,
        headers: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": IDP_CLIENT_ID,
            "sub": "user-123",
            "iat": int(now),
            "exp": int(now) + 600,
            "email": "ada@example.com",
            "email_verified": True,
            "groups": ["staff"],
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        header: dict[str, Any] = {"kid": kid} if kid is not None else {}
        header.update(headers or {})
        signer = idp_key(key or kid or "rsa1")
        return jwt.encode(claims, signer, algorithm=alg, headers=header)

    def app(self) -> Any:
        from aiohttp import web

        async def discovery(request: web.Request) -> web.Response:
            self.requests.append(request.path)
            return web.json_response(
                {
                    "issuer": self.discovery_issuer or self.issuer,
                    "jwks_uri": f"{self.url}/jwks",
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                }
            )

        async def jwks(request: web.Request) -> web.StreamResponse:
            self.requests.append(request.path)
            mode = self.jwks_mode
            if mode == "error":
                return web.json_response({"error": "boom"}, status=500)
            if mode == "hang":
                await self.release.wait()
            if mode == "redirect":
                raise web.HTTPFound(self.redirect_to)
            if mode == "huge":
                response = web.StreamResponse(headers={"Content-Type": "application/json"})
                await response.prepare(request)
                try:
                    await response.write(b'{"keys": [')
                    for _ in range(10 * 16):  # 10 MiB in 64 KiB pieces
                        await response.write(b" " * 65536)
                    await response.write(b"]}")
                except (ConnectionError, RuntimeError):
                    pass  # the gateway stopped reading long before
                return response
            headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
            keys = [public_jwk(kid, alg) for kid, alg in self.published]
            return web.json_response({"keys": keys}, headers=headers)

        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", discovery)
        app.router.add_get("/jwks", jwks)
        return app


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS assembled by hand (for `alg: none` and HMAC-with-a-public-key)."""
    import base64
    import json

    def segment(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = segment(json.dumps(header).encode()) + "." + segment(json.dumps(claims).encode())
    return head + "." + segment(signature)


# ---- browser sessions (cookie mode) -------------------------------------------------------

ACCESS_COOKIE: Final = "gw_at"
REFRESH_COOKIE: Final = "gw_rt"
APP_ORIGIN: Final = "http://app.example"


def browser_section(seal_key_file: Path, **overrides: Any) -> dict[str, Any]:
    """Browser mode as the demo runs it on plain http: no Secure, no __Host- names."""
    return {
        "enabled": True,
        "secure": False,
        "access_cookie": ACCESS_COOKIE,
        "refresh_cookie": REFRESH_COOKIE,
        "allowed_origins": [APP_ORIGIN],
        "seal_keys": [{"id": "k1", "secret_file": str(seal_key_file)}],
        **overrides,
    }


class CookieJar:
    """What a browser would keep of the gateway's Set-Cookie answers, kept by hand so each
    test controls exactly which Cookie header it sends."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}
        self.attributes: dict[str, str] = {}  # name → the attributes of its last Set-Cookie

    def update(self, response: Any) -> None:
        for header in response.headers.getall("Set-Cookie", []):
            pair, _, attributes = header.partition(";")
            name, _, value = pair.partition("=")
            self.attributes[name] = attributes.strip()
            if "Max-Age=0" in attributes:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def header(self, *extra: str) -> dict[str, str]:
        pairs = [*extra, *(f"{n}={v}" for n, v in self.cookies.items())]
        return {"Cookie": "; ".join(pairs)} if pairs else {}


async def browser_login(
    client: Any, user: str = "alice", password: str = "wonderland", **extra: Any
) -> tuple[CookieJar, dict[str, Any]]:
    """JSON sign-in at /auth/browser/login: the cookies it set and the identity it answered."""
    resp = await client.post(
        "/auth/browser/login", json={"username": user, "password": password, **extra}
    )
    assert resp.status == 200, await resp.text()
    jar = CookieJar()
    jar.update(resp)
    return jar, await resp.json()


def csrf_of(page: str) -> str:
    """The CSRF token in a console page's forms."""
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None, "no CSRF field on the page"
    return match.group(1)


async def console_sign_in(admin: Any, key: str = ADMIN_KEY) -> str:
    """Sign the client's cookie jar into the admin console; returns the CSRF token."""
    resp = await admin.post(f"{CONSOLE}signin", data={"key": key}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    page = await admin.get(CONSOLE, headers=HTML)
    assert page.status == 200
    return csrf_of(await page.text())
