"""Access tokens signed with the tests' keys, valid or bent in any header or claim, and the
Authorization header that carries one."""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization

AUDIENCE: Final = "test-api"
ISSUER: Final = "http://gateway.test"


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid access token's claims for alice; an override of None leaves the claim out."""
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
    """The signing key of `alg` from the key files (the HMAC secret's bytes for HS256)."""
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
    """The Authorization header carrying `token`."""
    return {"Authorization": f"Bearer {token}"}


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS assembled by hand (for `alg: none` and HMAC-with-a-public-key)."""

    def segment(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = segment(json.dumps(header).encode()) + "." + segment(json.dumps(claims).encode())
    return head + "." + segment(signature)
