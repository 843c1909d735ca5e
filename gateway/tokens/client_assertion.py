"""Client assertions (RFC 7523 §2.2, OpenID Connect Core §9 `private_key_jwt`): the gateway
proves it is the client at a provider's token endpoint with a short JWT signed by its own
key, registered at the provider. The algorithm follows the key (RSA: RS256, EC P-256: ES256,
Ed25519: EdDSA); each assertion has a fresh `jti` and lives 60 seconds.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.errors import ConfigError
from gateway.typedefs import Clock

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LIFETIME: Final = 60


class ClientAssertionSigner:
    """Signs client assertions for one client id with one private key."""

    def __init__(self, key: Any, alg: str, *, client_id: str, kid: str | None, clock: Clock):
        self._key = key
        self._alg = alg
        self._client_id = client_id
        self._kid = kid
        self._clock = clock

    @classmethod
    def from_file(
        cls, path: Path, *, client_id: str, kid: str | None, clock: Clock, where: str
    ) -> ClientAssertionSigner:
        """The signer of a PEM private key file; ConfigError naming `where` otherwise."""
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
        except (ValueError, TypeError):
            raise ConfigError(f"{where}: {path} is not an unencrypted PEM private key") from None
        if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
            alg = "RS256"
        elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
            alg = "ES256"
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            alg = "EdDSA"
        else:
            raise ConfigError(f"{where}: use an RSA (2048 bits or more), P-256 or Ed25519 key")
        return cls(key, alg, client_id=client_id, kid=kid, clock=clock)

    def sign(self, audience: str) -> str:
        """An assertion for the token endpoint `audience`."""
        now = int(self._clock())
        claims = {
            "iss": self._client_id,
            "sub": self._client_id,
            "aud": audience,
            "iat": now,
            "exp": now + LIFETIME,
            "jti": secrets.token_urlsafe(24),
        }
        headers = {"kid": self._kid} if self._kid else None
        return jwt.encode(claims, self._key, algorithm=self._alg, headers=headers)
