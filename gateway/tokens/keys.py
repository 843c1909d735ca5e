"""Signing and verification keys: load from files/env, one active signer, JWKS of public keys."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from gateway.config import KeySettings, KeysSettings
from gateway.errors import ConfigError

MIN_HMAC_SECRET_BYTES: Final = 32
MIN_RSA_BITS: Final = 2048

PrivateKey = (
    ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | ec.EllipticCurvePrivateKey
    | (rsa.RSAPrivateKey)
)
PublicKey = (
    ed25519.Ed25519PublicKey | ed448.Ed448PublicKey | ec.EllipticCurvePublicKey | (rsa.RSAPublicKey)
)


@dataclass(frozen=True, slots=True)
class Key:
    """One configured key, bound to exactly one algorithm (this is what stops alg confusion)."""

    kid: str
    alg: str
    verify_key: PublicKey | bytes
    sign_key: PrivateKey | bytes | None

    @property
    def is_symmetric(self) -> bool:
        return isinstance(self.verify_key, bytes)


class KeyRing:
    """All configured keys by kid; the active one signs, all of them verify."""

    def __init__(self, keys: list[Key], *, active_kid: str | None, algorithms: list[str]):
        self._by_kid: dict[str, Key] = {k.kid: k for k in keys}
        self.algorithms: frozenset[str] = frozenset(algorithms)
        self.active: Key | None = self._by_kid.get(active_kid) if active_kid else None
        if self.active is not None and self.active.sign_key is None:
            raise ConfigError(f"keys.active {active_kid!r} has no private key or secret")
        if self.active is not None and self.active.alg not in self.algorithms:
            raise ConfigError(f"keys.active uses {self.active.alg}, not in keys.algorithms")

    def verification_key(self, kid: object) -> Key | None:
        """The configured key for `kid`, or None. Never fetched from anywhere else."""
        if not isinstance(kid, str):
            return None
        return self._by_kid.get(kid)

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """RFC 7517 key set of the public keys; secrets are never published."""
        return {"keys": [public_jwk(k) for k in self if not k.is_symmetric]}

    def __iter__(self) -> Iterator[Key]:
        return iter(self._by_kid.values())

    def __len__(self) -> int:
        return len(self._by_kid)


def load_keyring(settings: KeysSettings, environ: Mapping[str, str] | None = None) -> KeyRing:
    """Build the KeyRing from configuration; any problem is a ConfigError naming the key."""
    env = os.environ if environ is None else environ
    keys = [load_key(item, env) for item in settings.items]
    return KeyRing(keys, active_kid=settings.active, algorithms=list(settings.algorithms))


def load_key(item: KeySettings, env: Mapping[str, str]) -> Key:
    where = f"keys.items[{item.kid}]"
    if item.alg == "HS256":
        secret = _material(item.secret_file, item.secret_env, env, where)
        if len(secret) < MIN_HMAC_SECRET_BYTES:
            raise ConfigError(f"{where}: HS256 secret must be at least 32 bytes")
        return Key(item.kid, item.alg, secret, secret)
    if item.private_key_file or item.private_key_env:
        pem = _material(item.private_key_file, item.private_key_env, env, where)
        private = _load_private(pem, where)
        _check_alg(item.alg, private.public_key(), where)
        return Key(item.kid, item.alg, private.public_key(), private)
    pem = _material(item.public_key_file, item.public_key_env, env, where)
    try:
        public = serialization.load_pem_public_key(pem)
    except ValueError:
        raise ConfigError(f"{where}: not a PEM public key") from None
    if not isinstance(public, PublicKey):
        raise ConfigError(f"{where}: unsupported key type")
    _check_alg(item.alg, public, where)
    return Key(item.kid, item.alg, public, None)


def _material(path: Path | None, env_name: str | None, env: Mapping[str, str], where: str) -> bytes:
    if path is not None:
        try:
            return path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(
                f"{where}: cannot read key file {str(path)!r}: {exc.strerror}"
            ) from None
    assert env_name is not None  # guaranteed by KeySettings validation
    value = env.get(env_name)
    if not value:
        raise ConfigError(f"{where}: environment variable {env_name} is not set")
    return value.encode().strip()


def _load_private(pem: bytes, where: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{where}: not an unencrypted PEM private key") from None
    if not isinstance(key, PrivateKey):
        raise ConfigError(f"{where}: unsupported key type")
    return key


def _check_alg(alg: str, public: PublicKey, where: str) -> None:
    ok = {
        "EdDSA": isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey),
        "ES256": isinstance(public, ec.EllipticCurvePublicKey)
        and isinstance(public.curve, ec.SECP256R1),
        "RS256": isinstance(public, rsa.RSAPublicKey) and public.key_size >= MIN_RSA_BITS,
    }[alg]
    if not ok:
        raise ConfigError(f"{where}: the key does not match alg {alg}")


def public_jwk(key: Key) -> dict[str, Any]:
    public = key.verify_key
    jwk: dict[str, Any]
    if isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    else:  # pragma: no cover - symmetric keys are filtered out by the caller
        raise ValueError("symmetric keys have no public JWK")
    return {**jwk, "kid": key.kid, "alg": key.alg, "use": "sig"}


def generate_key_material(alg: str) -> bytes:
    """A fresh private key (PEM, PKCS#8) or, for HS256, a 256-bit base64url secret."""
    if alg == "HS256":
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=")
    private: PrivateKey
    if alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        raise ValueError(f"unsupported algorithm {alg!r}")
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_secret_file(path: Path, data: bytes) -> None:
    """Write key material readable by the owner only (0600), refusing to overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data + b"\n")
