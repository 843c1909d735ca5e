"""Sealed cookie values: AES-256-GCM, so a copied cookie jar shows no token and no claim.

A sealed value is `<key id>.<base64(nonce ‖ ciphertext ‖ tag)>` (standard base64: `+`, `/`
and `=` are cookie-octets, and strict decoding in C needs no translation), authenticated
together with the cookie's purpose (an access value does not open as a refresh value). Keys
rotate: the first configured key seals, every configured key opens, and a value opened with
an older key is sealed again with the newest whenever the gateway sets that cookie anyway.

A browser sends the same access cookie for the access token's whole life, so what opened is
remembered (bounded; only values that did open, so junk cannot fill it): the cookie path
then costs a dict lookup more than the bearer path, not a decryption.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.config import BrowserSettings
from gateway.errors import ConfigError

ACCESS: Final = b"gateway cookie v1: access"
REFRESH: Final = b"gateway cookie v1: refresh"
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
MAX_SEALED: Final = 4096  # what a browser keeps of one cookie; anything longer is not ours
OPENED_CACHE_SIZE: Final = 10_000  # opened values remembered per purpose
_KEY_RE: Final = re.compile(r"^[A-Za-z0-9_-]+$")  # key files: base64url


@dataclass(frozen=True, slots=True)
class Opened:
    value: str
    stale_key: bool  # sealed with a key that no longer seals: seal it again when convenient


class CookieSeal(Protocol):
    def seal(self, value: str, purpose: bytes) -> str:
        """The cookie value to send for `value`."""

    def open(self, sealed: str, purpose: bytes) -> Opened | None:
        """What a presented cookie value holds; None when it does not open (never ours)."""


class AesGcmSeal:
    """AES-256-GCM under a list of keys, newest first."""

    def __init__(self, keys: Sequence[tuple[str, bytes]], *, cache_size: int = OPENED_CACHE_SIZE):
        if not keys:
            raise ValueError("at least one sealing key is required")
        self._sealing_id = keys[0][0]
        self._sealing = AESGCM(keys[0][1])
        self._keys = {kid: AESGCM(material) for kid, material in keys}
        self._cache_size = cache_size
        self._opened: dict[bytes, dict[str, Opened]] = {}

    def seal(self, value: str, purpose: bytes) -> str:
        nonce = os.urandom(NONCE_BYTES)
        box = nonce + self._sealing.encrypt(nonce, value.encode(), purpose)
        return f"{self._sealing_id}.{base64.b64encode(box).decode()}"

    def open(self, sealed: str, purpose: bytes) -> Opened | None:
        opened_before = self._opened.get(purpose)
        if opened_before is None:
            opened_before = self._opened[purpose] = {}
        hit = opened_before.get(sealed)
        if hit is not None:
            return hit
        if len(sealed) > MAX_SEALED:
            return None
        kid, dot, body = sealed.partition(".")
        aead = self._keys.get(kid)
        if aead is None or not dot:
            return None
        try:
            box = binascii.a2b_base64(body, strict_mode=True)
            value = aead.decrypt(box[:NONCE_BYTES], box[NONCE_BYTES:], purpose).decode()
        except (binascii.Error, InvalidTag, ValueError):
            return None
        opened = Opened(value, stale_key=kid != self._sealing_id)
        if self._cache_size > 0:
            if len(opened_before) >= self._cache_size:
                del opened_before[next(iter(opened_before))]  # oldest first
            opened_before[sealed] = opened
        return opened


class PlainCookies:
    """`browser.seal_cookies: false`: the tokens themselves are the cookie values."""

    def seal(self, value: str, purpose: bytes) -> str:
        return value

    def open(self, sealed: str, purpose: bytes) -> Opened | None:
        if not sealed or len(sealed) > MAX_SEALED:
            return None
        return Opened(sealed, stale_key=False)


def cookie_seal(settings: BrowserSettings, environ: Mapping[str, str] | None = None) -> CookieSeal:
    """The seal `browser.*` asks for, keys read from their files or environment variables."""
    if not settings.seal_cookies:
        return PlainCookies()
    return AesGcmSeal(load_seal_keys(settings, environ))


def load_seal_keys(
    settings: BrowserSettings, environ: Mapping[str, str] | None = None
) -> list[tuple[str, bytes]]:
    """(id, 32 bytes) per `browser.seal_keys` entry; ConfigError naming the entry otherwise."""
    env = os.environ if environ is None else environ
    keys = []
    for index, item in enumerate(settings.seal_keys):
        where = f"browser.seal_keys[{index}] ({item.id})"
        if item.secret_file is not None:
            try:
                text = item.secret_file.read_text()
            except OSError as exc:
                raise ConfigError(
                    f"{where}: cannot read {item.secret_file}: {exc.strerror}"
                ) from None
        else:
            assert item.secret_env is not None
            if item.secret_env not in env:
                raise ConfigError(f"{where}: environment variable {item.secret_env} is not set")
            text = env[item.secret_env]
        keys.append((item.id, _key_material(text.strip(), where)))
    if len({kid for kid, _ in keys}) != len(keys):
        raise ConfigError("browser.seal_keys: two keys share an id")
    return keys


def _key_material(text: str, where: str) -> bytes:
    try:
        material = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        material = b""
    if len(material) != KEY_BYTES or not _KEY_RE.match(text.rstrip("=")):
        raise ConfigError(
            f"{where}: a sealing key is {KEY_BYTES} random bytes, base64url "
            "(`gateway cookie-key generate` writes one)"
        )
    return material


def new_seal_key() -> bytes:
    """A fresh sealing key as stored in its file: base64url of 32 random bytes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).rstrip(b"=")
