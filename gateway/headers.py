"""Header policy: what crosses the gateway in each direction, and the identity it adds."""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config import ProxySettings
from gateway.tokens import Principal

# RFC 9110 §7.6.1 hop-by-hop fields plus framing and routing fields the gateway sets itself.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
SET_BY_GATEWAY: Final = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-real-ip",
        "x-request-id",
    }
)
REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_HEADER_VALUE_SAFE: Final = " !#$%&'()*+,-./:;<=>?@[]^_`{|}~"


def canonical(name: str) -> str:
    """Compare header names the way some backends do: case-folded, `_` equal to `-`."""
    return name.lower().replace("_", "-")


def request_id_from(headers: Mapping[str, str]) -> str:
    """The client's X-Request-Id when well-formed, otherwise a fresh one."""
    value = headers.get("X-Request-Id")
    if value is not None and REQUEST_ID_RE.match(value):
        return value
    return new_request_id()


_ID_PREFIX: Final = os.urandom(8).hex()  # per process: workers are spawned, never forked
_ID_COUNTER: Final = itertools.count(1)


def new_request_id() -> str:
    """32 hex digits, unique per process and across processes: a random process prefix and a
    counter (no system call per request, unlike uuid4)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


class HeaderPolicy:
    """Precomputed header sets, built once per app, applied per request."""

    def __init__(self, settings: ProxySettings):
        self.identity: tuple[tuple[str, str], ...] = tuple(settings.identity_headers.items())
        self._identity_names = frozenset(canonical(h) for _, h in self.identity)
        self._identity_prefixes = tuple(canonical(p) for p in settings.identity_header_prefixes)
        self._forward_authorization = settings.forward_authorization
        self._trusted = tuple(
            ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies
        )
        self._dropped_cache: dict[str, bool] = {}

    def is_identity_header(self, name: str) -> bool:
        key = canonical(name)
        return key in self._identity_names or key.startswith(self._identity_prefixes)

    def _dropped(self, name: str) -> bool:
        cached = self._dropped_cache.get(name)
        if cached is None:
            lower = name.lower()
            cached = (
                lower in HOP_BY_HOP
                or lower in SET_BY_GATEWAY
                or canonical(name) in SET_BY_GATEWAY
                or self.is_identity_header(name)
                or (lower == "authorization" and not self._forward_authorization)
            )
            if len(self._dropped_cache) < 4096:  # bounded: names are client-chosen
                self._dropped_cache[name] = cached
        return cached

    def upstream_request_headers(
        self,
        headers: CIMultiDictProxy[str],
        *,
        principal: Principal | None,
        request_id: str,
        remote: str | None,
        scheme: str,
        host: str | None,
        upstream_host: str | None,
    ) -> CIMultiDict[str]:
        """Client headers minus hop-by-hop/identity copies, plus forwarding and identity headers."""
        named = _connection_tokens(headers)
        out: CIMultiDict[str] = CIMultiDict()
        for name, value in headers.items():
            if self._dropped(name) or name.lower() in named:
                continue
            out.add(name, value)
        # Added after filtering, so `Connection: X-User-Id` can never remove these.
        if upstream_host is not None:
            out["Host"] = upstream_host
        elif host:
            out["Host"] = host
        out["X-Forwarded-For"] = self._forwarded_for(headers, remote)
        out["X-Forwarded-Proto"] = self._trusted_or(headers, remote, "X-Forwarded-Proto", scheme)
        out["X-Forwarded-Host"] = self._trusted_or(headers, remote, "X-Forwarded-Host", host or "")
        out["X-Request-Id"] = request_id
        if principal is not None:
            for claim, header in self.identity:
                text = header_value(principal.claims.get(claim))
                if text is not None:
                    out[header] = text
        return out

    def downstream_response_headers(
        self, headers: CIMultiDict[str] | CIMultiDictProxy[str]
    ) -> CIMultiDict[str]:
        """Upstream response headers minus hop-by-hop ones and framing (the gateway frames)."""
        named = _connection_tokens(headers)
        out: CIMultiDict[str] = CIMultiDict()
        for name, value in headers.items():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower == "content-length" or lower in named:
                continue
            out.add(name, value)
        return out

    def _is_trusted(self, remote: str | None) -> bool:
        if not self._trusted or not remote:
            return False
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    def _forwarded_for(self, headers: CIMultiDictProxy[str], remote: str | None) -> str:
        # SECURITY: a client-sent X-Forwarded-For is kept only from a configured trusted proxy;
        # otherwise legacy backends that trust it for IP checks could be fooled.
        prior = headers.getall("X-Forwarded-For", [])
        if prior and self._is_trusted(remote):
            return ", ".join([*prior, remote or "unknown"])
        return remote or "unknown"

    def _trusted_or(
        self, headers: CIMultiDictProxy[str], remote: str | None, name: str, own: str
    ) -> str:
        value = headers.get(name)
        if value is not None and self._is_trusted(remote):
            return value
        return own


def _connection_tokens(
    headers: Mapping[str, str] | CIMultiDict[str] | CIMultiDictProxy[str],
) -> frozenset[str]:
    values: Iterable[str]
    if isinstance(headers, CIMultiDict | CIMultiDictProxy):
        values = headers.getall("Connection", [])
    else:
        single = headers.get("Connection")
        values = [single] if single else []
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def header_value(claim: Any) -> str | None:
    """A claim as a header value: lists joined by ',', no control characters, ASCII only."""
    if claim is None or isinstance(claim, dict):
        return None
    if isinstance(claim, list | tuple):
        text = ",".join(str(item) for item in claim)
    elif isinstance(claim, bool):
        text = "true" if claim else "false"
    else:
        text = str(claim)
    # SECURITY: claim values come from user records; never let them inject header lines.
    if text.isascii() and text.isprintable():
        return text
    return quote(text, safe=_HEADER_VALUE_SAFE)
