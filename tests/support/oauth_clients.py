"""Registered clients as the tests configure them (public apps, password-grant clients,
confidential machines with a secret or a key), PKCE values, and client assertions
(private_key_jwt) signed with a client's own key."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from gateway.app import create_app
from gateway.config import ClientSettings, Settings
from tests.support.gateway_client import GatewayTestServer
from tests.support.processes import free_port

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
APP_REDIRECT: Final = "http://127.0.0.1/callback"  # any loopback port (RFC 8252 §7.3)
MACHINE_SECRET: Final = "machine-secret-0123456789abcdef"
_KEYS: dict[str, ec.EllipticCurvePrivateKey] = {}


def sha256_hash(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def password_client(client_id: str, *, grants: list[str] | None = None) -> ClientSettings:
    """A public client registered for the password grant (and refresh)."""
    fields: dict[str, Any] = {
        "id": client_id,
        "type": "public",
        "grants": grants or ["password", "refresh_token"],
    }
    return ClientSettings(**fields)


def app_client(
    client_id: str = "demo-app",
    *,
    redirect_uris: list[str] | None = None,
    scopes: list[str] | None = None,
    **extra: Any,
) -> ClientSettings:
    """A public app of the authorization code flow (a loopback redirect, any port)."""
    fields: dict[str, Any] = {
        "id": client_id,
        "type": "public",
        "grants": ["authorization_code", "refresh_token"],
        "redirect_uris": redirect_uris or [APP_REDIRECT],
        "scopes": scopes if scopes is not None else ["read:scoped", "reports"],
        **extra,
    }
    return ClientSettings(**fields)


def machine_client(
    client_id: str = "batch",
    *,
    secret: str = MACHINE_SECRET,
    method: str = "client_secret_basic",
    roles: list[str] | None = None,
    scopes: list[str] | None = None,
    **extra: Any,
) -> ClientSettings:
    """A confidential client of the client credentials grant, authenticated by a secret."""
    return ClientSettings(
        id=client_id,
        type="confidential",
        grants=extra.pop("grants", ["client_credentials"]),
        auth_method=method,  # type: ignore[arg-type]
        secret_hash=sha256_hash(secret),
        roles=roles if roles is not None else ["batch"],
        scopes=scopes if scopes is not None else ["read:scoped", "write:scoped"],
        **extra,
    )


def client_key(name: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 key per name, made once per run."""
    if name not in _KEYS:
        _KEYS[name] = ec.generate_private_key(ec.SECP256R1())
    return _KEYS[name]


def client_jwks(*names: str) -> dict[str, Any]:
    """The public JWKS of the named keys (ES256, kid = name)."""
    keys = []
    for name in names:
        jwk = ECAlgorithm.to_jwk(client_key(name).public_key(), as_dict=True)
        keys.append({**jwk, "kid": name, "alg": "ES256", "use": "sig"})
    return {"keys": keys}


def write_jwks(path: Path, *names: str) -> Path:
    path.write_text(json.dumps(client_jwks(*names)))
    return path


def jwt_client(client_id: str, jwks_file: Path, **extra: Any) -> ClientSettings:
    """A confidential client authenticating with private_key_jwt (keys in a JWKS file)."""
    return ClientSettings(
        id=client_id,
        type="confidential",
        grants=extra.pop("grants", ["client_credentials"]),
        auth_method="private_key_jwt",
        jwks_file=jwks_file,
        roles=extra.pop("roles", ["batch"]),
        scopes=extra.pop("scopes", ["read:scoped"]),
        **extra,
    )


def client_assertion(
    client_id: str,
    audience: str,
    *,
    key: str = "client-key",
    now: float | None = None,
    **claims: Any,
) -> str:
    """A private_key_jwt assertion signed with test key `key`; any claim can be bent (None
    leaves it out)."""
    instant = int(time.time() if now is None else now)
    body: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": instant,
        "exp": instant + 60,
        "jti": secrets.token_urlsafe(12),
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, client_key(key), algorithm="ES256", headers={"kid": key})


def new_verifier() -> str:
    return secrets.token_urlsafe(48)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@asynccontextmanager
async def gateway_at(
    make_settings: Callable[[str], Settings], **injected: Any
) -> AsyncIterator[str]:
    """The gateway on a port chosen beforehand, so that its issuer (and the endpoints its
    RFC 8414 metadata names) is where clients really reach it; yields that base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = GatewayTestServer(
        create_app(make_settings(base), **injected), host="127.0.0.1", port=port
    )
    await server.start_server(access_log=None)
    try:
        yield base
    finally:
        await server.close()
