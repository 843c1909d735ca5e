"""Settings of named upstreams: pools of targets, their balancing, health, retries' deadline,
concurrency cap and TLS (`upstreams.<name>`); routes name them in `routes[].upstream`."""

from __future__ import annotations

import ipaddress
import re
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.fields import PositiveSeconds, Section

UPSTREAM_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BASE_URL_RE: Final = re.compile(r"^https?://[^/?#\s]+(/[^?#\s]*)?$")
_HOST_RE: Final = re.compile(r"^https?://(\[[^\]]+\]|[^/:?#]+)")


def is_base_url(value: str) -> bool:
    """An http(s):// base URL without query or fragment (a route's upstream or a target)."""
    return BASE_URL_RE.match(value) is not None


def is_loopback_target(url: str) -> bool:
    """Whether a target URL's host is on loopback (127.0.0.0/8, ::1 or localhost)."""
    match = _HOST_RE.match(url)
    if match is None:
        return False
    host = match.group(1).strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UpstreamHealthSettings(Section):
    path: str = Field(pattern=r"^/[^\s#]*$")
    """path each target is asked for (GET) every `interval`; a 2xx or 3xx answer within
    `timeout` passes, anything else takes the target out until a check passes"""
    interval: PositiveSeconds = 5
    """seconds between two checks of a target"""
    timeout: PositiveSeconds = 2
    """seconds a check may take (connect and answer)"""


class UpstreamTlsSettings(Section):
    ca_file: str | None = None
    """PEM bundle of the CAs that sign the targets' certificates (instead of the system's);
    read at start and on every reload"""
    cert_file: str | None = None
    """client certificate (PEM) the gateway presents to the targets (mTLS); needs key_file"""
    key_file: str | None = None
    """private key (PEM) of cert_file"""
    server_name: str | None = Field(default=None, min_length=1, max_length=253)
    """name sent in SNI and checked against the targets' certificates (default: each
    target's host)"""
    verify: bool = True
    """check the targets' certificates; false is accepted only when every target is on
    loopback"""

    @model_validator(mode="after")
    def _pair(self) -> UpstreamTlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (a client certificate)")
        return self


class UpstreamSettings(Section):
    targets: list[str] = Field(min_length=1, max_length=256)
    """http(s):// base URLs of the same service, one scheme for all; a path on a target is
    prefixed to the forwarded path, as on a route's URL upstream"""
    balance: Literal["round_robin", "least_in_flight"] = "round_robin"
    """how a request picks among the targets in rotation"""
    health: UpstreamHealthSettings | None = None
    """active checks (optional); without them a target leaves the rotation only when
    connecting to it fails or it stops answering (passive)"""
    tls: UpstreamTlsSettings | None = None
    """TLS to https:// targets: CA bundle, client certificate, server name"""
    max_in_flight: int | None = Field(default=None, ge=1)
    """requests in flight to this upstream (all targets, per worker) before 503 with
    Retry-After (answered at once, never queued); proxy.max_concurrency still applies"""
    backoff: PositiveSeconds = 1
    """seconds a failing target stays out of rotation the first time; doubled on each
    failure in a row, up to max_backoff"""
    max_backoff: PositiveSeconds = 30
    """the longest a failing target stays out of rotation before it is tried again"""
    retry_deadline: PositiveSeconds | None = None
    """seconds after forwarding began within which a failed request may still go to another
    target (default: proxy.connect_timeout + 2 × proxy.read_timeout)"""

    @field_validator("targets")
    @classmethod
    def _same_scheme(cls, value: list[str]) -> list[str]:
        for index, url in enumerate(value):
            if not is_base_url(url):
                raise ValueError(
                    f"targets[{index}]: {url!r} is not an http:// or https:// base URL "
                    "without query"
                )
        schemes = {url.split("://", 1)[0] for url in value}
        if len(schemes) > 1:
            raise ValueError("targets mix http:// and https://: every target needs one scheme")
        cleaned = [url.rstrip("/") for url in value]
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("a target is listed twice")
        return cleaned

    @model_validator(mode="after")
    def _tls_fits(self) -> UpstreamSettings:
        if self.max_backoff < self.backoff:
            raise ValueError("max_backoff is shorter than backoff")
        tls = self.tls
        if tls is None:
            return self
        if not self.targets[0].startswith("https://"):
            raise ValueError("tls applies to https:// targets only")
        if not tls.verify:
            remote = [t for t in self.targets if not is_loopback_target(t)]
            if remote:
                raise ValueError(
                    f"tls.verify: false is accepted only for loopback targets, not {remote[0]}"
                )
        return self

    @property
    def scheme(self) -> str:
        return self.targets[0].split("://", 1)[0]
