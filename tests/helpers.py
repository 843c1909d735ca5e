"""Test helpers: craft access tokens (valid or deliberately broken) with the test keys."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from tests.conftest import AUDIENCE, ISSUER


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
    hdr: dict[str, Any] = {}
    if kid is not None:
        hdr["kid"] = kid
    if typ is not None:
        hdr["typ"] = typ
    hdr.update(headers or {})
    return jwt.encode(claims(**claim_overrides), private_key(key_files, alg), alg, headers=hdr)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
