"""TLS to a pool's targets (`upstreams.<name>.tls`): the CA bundle, the client certificate for
mTLS and the server name, read into an SSL context when a configuration is built (at start,
by `check-config` and on every reload: a file that is missing or unreadable is a ConfigError,
and a reload refused for it leaves the running configuration serving)."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

from gateway.config import UpstreamTlsSettings
from gateway.errors import ConfigError
from gateway.proxy.upstream import TlsClient


def tls_client(settings: UpstreamTlsSettings, *, key: str) -> TlsClient:
    """The SSL context these settings describe; `key` (`upstreams.api.tls`) names them in
    errors."""
    digest = hashlib.sha256(
        repr((settings.server_name, settings.verify, settings.cert_file)).encode()
    )
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.ca_file is not None:
        pem = _read(settings.ca_file, f"{key}.ca_file")
        digest.update(pem)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_verify_locations(cadata=pem.decode("ascii", errors="replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                f"{key}.ca_file: {settings.ca_file!r} holds no usable PEM certificate ({exc})"
            ) from None
    if settings.cert_file is not None and settings.key_file is not None:
        digest.update(_read(settings.cert_file, f"{key}.cert_file"))
        digest.update(_read(settings.key_file, f"{key}.key_file"))
        try:
            context.load_cert_chain(settings.cert_file, settings.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"{key}.cert_file: the certificate and key_file do not load as a pair ({exc})"
            ) from None
    if not settings.verify:
        # Loopback only (checked with the settings): a test or sidecar target.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return TlsClient(context, settings.server_name, digest.hexdigest())


def _read(path: str, key: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path!r} ({exc.strerror})") from None
