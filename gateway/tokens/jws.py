"""Compact JWS (RFC 7515) parsing and signature checks for access tokens, lean on purpose.

On the cache-cold path every request verifies a token. PyJWT's decode checks the base64url
alphabet one character at a time in Python and, once the header has been read to pick the
key, parses the whole token again, all before the signature. Here the token is split and
its alphabet checked with C-level operations, and signatures are verified by libsodium
(PyNaCl) for Ed25519 — faster than OpenSSL's Ed25519 through `cryptography` — and by
PyJWT's own algorithm implementations for
every other algorithm (ES256, RS256, HS256 with a constant-time comparison). Claims are
TokenVerifier's business; tokens are still signed by PyJWT.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from gateway.tokens.keys import Key

_SEGMENT: Final = re.compile(r"[A-Za-z0-9_-]+")  # base64url without padding (RFC 7515 §2)


class MalformedToken(ValueError):
    """Not a compact JWS: wrong number of segments, bad alphabet or bad encoding."""


def split_compact(token: str) -> tuple[str, str, str]:
    """(header, payload, signature) segments of a compact JWS; the signing input is the
    token up to the last dot."""
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedToken("a compact JWS has three segments")
    return parts[0], parts[1], parts[2]


def b64url_decode(segment: str) -> bytes:
    """Decode one segment; anything outside the base64url alphabet is refused first."""
    if not _SEGMENT.fullmatch(segment):
        raise MalformedToken("not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (ValueError, binascii.Error):
        raise MalformedToken("not base64url") from None


class SignatureCheck:
    """Verifies signatures made with one configured key (and only with its algorithm)."""

    def __init__(self, key: Key):
        self._key = key.verify_key
        self._sodium: VerifyKey | None = None
        if isinstance(key.verify_key, ed25519.Ed25519PublicKey):
            raw = key.verify_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
            self._sodium = VerifyKey(raw)
        self._algorithm = jwt.get_algorithm_by_name(key.alg)

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        if self._sodium is not None:
            if len(signature) != 64:
                return False
            try:
                self._sodium.verify(signing_input, signature)
            except BadSignatureError:
                return False
            return True
        try:
            return bool(self._algorithm.verify(signing_input, self._key, signature))
        except (jwt.PyJWTError, ValueError):  # e.g. a signature of the wrong shape
            return False
