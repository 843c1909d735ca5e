"""Test helpers: tokens (valid or deliberately broken), users, a fake clock, logins, the CLI.

Every test module imports shared pieces from here or gets them as fixtures from conftest.py;
no test module imports another.
"""

from __future__ import annotations

import asyncio
import os
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
