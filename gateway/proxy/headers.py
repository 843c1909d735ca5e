"""Header policy: what crosses the gateway in each direction, and the identity it adds."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import quote

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config import ProxySettings
from gateway.edge import Exchange
from gateway.observability.tracecontext import TRACE_HEADERS, TracePolicy
from gateway.tokens.verifier import Principal

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
# Client-sent copies of these pass only from a configured trusted proxy (like X-Forwarded-*).
FROM_TRUSTED_PROXIES_ONLY: Final = frozenset({"forwarded", "x-real-ip"})
CACHE_SIZE: Final = 4096  # bound of each per-name cache below
_PLAIN_CONNECTION: Final = frozenset({b"keep-alive", b"close"})
_NOTHING: Final[frozenset[str]] = frozenset()
_XFF: Final = "X-Forwarded-For"
_XFP: Final = "X-Forwarded-Proto"
_XFH: Final = "X-Forwarded-Host"
_HEADER_VALUE_SAFE: Final = " !#$%&'()*+,-./:;<=>?@[]^_`{|}~"
# An item of a list header: as a value, but `,` (the separator) and `%` (so that an encoded
# item reads one way only) are percent-encoded.
_LIST_ITEM_SAFE: Final = _HEADER_VALUE_SAFE.replace(",", "").replace("%", "")


def canonical(name: str) -> str:
    """Compare header names the way some backends do: case-folded, `_` equal to `-`."""
    return name.lower().replace("_", "-")


class HeaderPolicy:
    """Precomputed header sets, built once per app, applied per request."""

    def __init__(self, settings: ProxySettings, *, trace: TracePolicy | None = None):
        self.identity: tuple[tuple[str, str], ...] = tuple(settings.identity_headers.items())
        self._identity_names = frozenset(canonical(h) for _, h in self.identity)
        self._identity_prefixes = tuple(canonical(p) for p in settings.identity_header_prefixes)
        self._stripped = frozenset(canonical(h) for h in settings.strip_request_headers)
        self._drop_underscores = settings.underscore_headers == "drop"
        self._forward_authorization = settings.forward_authorization
        self._trust = ProxyTrust(settings.trusted_proxies)
        self._identity_bytes = tuple((claim, h.encode("ascii")) for claim, h in self.identity)
        self._request_verdicts: dict[bytes, tuple[bool, str]] = {}
        self._response_verdicts: dict[bytes, tuple[bool, str]] = {}
        # None in passthrough mode: trace context is forwarded like any other field.
        self._trace = trace
        self._trace_dropped = TRACE_HEADERS if trace is not None else _NOTHING

    def is_identity_header(self, name: str) -> bool:
        key = canonical(name)
        return key in self._identity_names or key.startswith(self._identity_prefixes)

    def _request_verdict(self, name: bytes) -> tuple[bool, str]:
        """(dropped, lower-case name) for a client header name; cached, bounded."""
        verdict = self._request_verdicts.get(name)
        if verdict is None:
            text = name.decode("latin-1")
            lower = text.lower()
            key = canonical(text)
            dropped = (
                lower in HOP_BY_HOP
                or lower in SET_BY_GATEWAY
                or key in SET_BY_GATEWAY
                # SECURITY: headers that make frameworks serve another URL or method than
                # the one authorized (X-Original-URL, X-HTTP-Method-Override, ...)
                or key in self._stripped
                # SECURITY: CGI and WSGI backends read `X_User_Id` as `X-User-Id` (both are
                # HTTP_X_USER_ID to them): a name the gateway judges one way, they another
                or (self._drop_underscores and "_" in text)
                or self.is_identity_header(text)
                or (lower == "authorization" and not self._forward_authorization)
                or lower in self._trace_dropped
            )
            verdict = _remember(self._request_verdicts, name, (dropped, lower))
        return verdict

    def upstream_request_fields(
        self,
        raw_headers: Iterable[tuple[bytes, bytes]],
        headers: CIMultiDictProxy[str],
        *,
        principal: Principal | None,
        request_id: str,
        remote: str | None,
        scheme: str,
        host: str | None,
        upstream_host: str | None,
        exchange: Exchange | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """Client header fields (bytes as received) minus hop-by-hop and identity copies,
        plus the forwarding and identity fields, ready to be written upstream."""
        fields: list[tuple[bytes, bytes]] = []
        connection: list[bytes] = []
        proxied: list[tuple[bytes, bytes]] = []  # kept only if a trusted proxy sent them
        verdict_of = self._request_verdict
        for name, value in raw_headers:
            dropped, lower = verdict_of(name)
            if dropped:
                if lower == "connection":
                    connection.append(value)
                elif lower in FROM_TRUSTED_PROXIES_ONLY:
                    proxied.append((name, value))
                continue
            fields.append((name, value))
        named = _named_by_connection(connection)
        if named:  # fields named in Connection are hop-by-hop too (RFC 9110 §7.6.1)
            fields = [(n, v) for n, v in fields if verdict_of(n)[1] not in named]
        # Added after filtering, so `Connection: X-User-Id` can never remove these.
        own_host = upstream_host if upstream_host is not None else host
        if own_host:
            fields.append((b"Host", _encode(own_host)))
        client = remote or "unknown"
        if self._is_trusted(remote):  # a proxy we trust: keep what it says and append
            fields += proxied
            prior = headers.getall(_XFF, [])
            forwarded_for = ", ".join([*prior, client])
            proto, forwarded_host = headers.get(_XFP, scheme), headers.get(_XFH, host or "")
        else:
            # SECURITY: client-sent X-Forwarded-*, Forwarded and X-Real-IP are replaced or
            # dropped unless they come from a configured trusted proxy; legacy backends that
            # trust them could be fooled.
            forwarded_for, proto, forwarded_host = client, scheme, host or ""
        fields += (
            (b"X-Forwarded-For", _encode(forwarded_for)),
            (b"X-Forwarded-Proto", _encode(proto)),
            (b"X-Forwarded-Host", _encode(forwarded_host)),
            (b"X-Request-Id", request_id.encode("ascii")),
        )
        if principal is not None:
            fields += self.identity_fields(principal)
        if self._trace is not None and exchange is not None:
            fields += self._trace.upstream_fields(headers, exchange)
        return fields

    def identity_fields(self, principal: Principal) -> tuple[tuple[bytes, bytes], ...]:
        """The identity header fields for a principal, kept on it (keyed by the claim →
        header mapping): the verifier hands out the same Principal for every request with a
        cached token, so they are built once per token and go when it leaves the cache."""
        mapping = self._identity_bytes
        fields: tuple[tuple[bytes, bytes], ...] | None = principal.derived.get(mapping)
        if fields is not None:
            return fields
        claims = principal.claims
        built = []
        for claim, header in mapping:
            text = header_value(claims.get(claim))
            if text is not None:
                built.append((header, text.encode("ascii")))
        fields = principal.derived[mapping] = tuple(built)
        return fields

    def upstream_cookie(self, values: list[bytes]) -> bytes:
        """The Cookie header the upstream gets for the client's Cookie values (b"" for none
        left); with browser mode on, without the gateway's cookies."""
        return b"; ".join(values)

    def downstream_response_headers(
        self, raw_headers: Iterable[tuple[bytes, bytes]]
    ) -> CIMultiDict[str]:
        """Upstream response headers minus hop-by-hop ones and framing (the gateway frames)."""
        out: CIMultiDict[str] = CIMultiDict()
        connection: list[bytes] = []
        verdicts = self._response_verdicts
        for name, value in raw_headers:
            verdict = verdicts.get(name)
            if verdict is None:  # names are upstream-chosen: the cache is bounded
                verdict = _remember(verdicts, name, _response_verdict(name))
            dropped, text = verdict
            if dropped:
                if text.lower() == "connection":
                    connection.append(value)
                continue
            out.add(text, value.decode("latin-1"))
        for token in _named_by_connection(connection):
            out.popall(token, None)
        return out

    def _is_trusted(self, remote: str | None) -> bool:
        return self._trust.trusts(remote)


class ProxyTrust:
    """Which peers are trusted proxies (`proxy.trusted_proxies`): whose X-Forwarded-* the
    gateway keeps, and so who the client is."""

    def __init__(self, networks: Iterable[str]):
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        self._verdicts: dict[str, bool] = {}

    def trusts(self, remote: str | None) -> bool:
        if not self._networks or not remote:
            return False
        verdict = self._verdicts.get(remote)
        if verdict is None:
            verdict = self._contains(remote)
            if len(self._verdicts) >= CACHE_SIZE:  # peers are many but not client-chosen
                self._verdicts.clear()
            self._verdicts[remote] = verdict
        return verdict

    def _contains(self, value: str) -> bool:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def client(self, remote: str | None, headers: CIMultiDictProxy[str]) -> str:
        """The client's address: the peer, unless the peer is a trusted proxy; then the
        nearest X-Forwarded-For address that is not a trusted proxy.

        SECURITY: X-Forwarded-For is the client's to write; only the entries trusted
        proxies appended can be believed, so the list is read from the right and never
        past the first untrusted address. From an untrusted peer it is ignored: a client
        rotating made-up addresses there stays one client."""
        peer = remote or "unknown"
        if not self.trusts(remote):
            return peer
        forwarded = [
            part.strip() for value in headers.getall(_XFF, ()) for part in value.split(",")
        ]
        nearest = peer
        for hop in reversed(forwarded):
            if not _is_address(hop):
                return nearest  # a garbled entry: the last proxy that spoke for it
            if not self._contains(hop):
                return hop
            nearest = hop
        return nearest


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# Cache-Control directives that let a shared cache store a response, or that only shared
# caches read; a qualified `private="Set-Cookie"` lets them store the rest of it.
_SHARED_CACHE_DIRECTIVES: Final = frozenset({"public", "s-maxage", "proxy-revalidate", "private"})
# Fields that speak to one cache in front (a CDN, an nginx cache) rather than to all of them:
# RFC 9213's CDN-Cache-Control and every *-Cache-Control of its kind, Surrogate-Control
# (Fastly, Varnish), Edge-Control (Akamai), X-Accel-Expires (nginx's proxy cache).
_TARGETED_CACHE_FIELDS: Final = frozenset({"surrogate-control", "edge-control", "x-accel-expires"})


def keep_private(headers: CIMultiDict[str]) -> None:
    """Make an upstream answer personal: no shared cache may store it, whatever the upstream
    said. `Cache-Control` becomes `private` plus the upstream's directives that only concern
    the browser's own cache (public, s-maxage, proxy-revalidate and a qualified private go),
    `Vary` names `Cookie`, and cache fields addressed to one cache in front are dropped.

    SECURITY: a CDN or reverse-proxy cache in front of the gateway keys answers on the URL,
    not on the Cookie header: an answer it stores for one user's session is served to the
    next user asking for the same URL.
    """
    for name in list(headers.keys()):
        lower = name.lower()
        if lower in _TARGETED_CACHE_FIELDS or lower.endswith("-cache-control"):
            headers.popall(name, None)
    kept = [
        directive
        for value in headers.popall("Cache-Control", ())
        for directive in (d.strip() for d in value.split(","))
        if directive and directive.partition("=")[0].strip().lower() not in _SHARED_CACHE_DIRECTIVES
    ]
    headers["Cache-Control"] = ", ".join(["private", *kept])
    varied = [v.strip() for value in headers.popall("Vary", ()) for v in value.split(",")]
    varied = [v for v in varied if v]
    if "*" not in varied and "cookie" not in (v.lower() for v in varied):
        varied.append("Cookie")
    headers["Vary"] = ", ".join(varied)


def _named_by_connection(values: list[bytes]) -> frozenset[str]:
    """The lower-case field names listed in Connection header values; `keep-alive` and
    `close` (nearly every message) name nothing that is not hop-by-hop already."""
    if not values or (len(values) == 1 and values[0].lower() in _PLAIN_CONNECTION):
        return _NOTHING
    return frozenset(
        t.strip().lower() for v in values for t in v.decode("latin-1").split(",") if t.strip()
    )


def _remember(
    cache: dict[bytes, tuple[bool, str]], name: bytes, verdict: tuple[bool, str]
) -> tuple[bool, str]:
    """Cache a header-name verdict while the cache is below its bound (names are chosen by
    the other side; beyond the bound they are decided each time)."""
    if len(cache) < CACHE_SIZE:
        cache[name] = verdict
    return verdict


def _response_verdict(name: bytes) -> tuple[bool, str]:
    text = name.decode("latin-1")
    lower = text.lower()
    return (lower in HOP_BY_HOP or lower == "content-length", text)


def _encode(value: str) -> bytes:
    """A header value back to the bytes it was received as (aiohttp decodes UTF-8 with
    surrogateescape); values the gateway makes are ASCII."""
    return value.encode("utf-8", "surrogateescape")


def header_value(claim: Any) -> str | None:
    """A claim as a header value: lists joined by ',', no control characters, ASCII only."""
    if type(claim) is str:  # the common case first
        text = claim
    elif claim is None or isinstance(claim, dict):
        return None
    elif isinstance(claim, list | tuple):
        return ",".join(map(_list_item, claim))
    elif isinstance(claim, bool):
        text = "true" if claim else "false"
    else:
        text = str(claim)
    # SECURITY: claim values come from user records; never let them inject header lines.
    if text.isascii() and text.isprintable():
        return text
    return quote(text, safe=_HEADER_VALUE_SAFE)


def _list_item(item: Any) -> str:
    """One value of a list claim in a comma-separated header.

    SECURITY: values come from outside (a provider's group named `staff,reports`): a `,` in
    one would add a value the upstream splits out, so it is percent-encoded, and so is `%`
    (`staff%2Creports` reads one way only), as are control and non-ASCII characters.
    """
    text = item if type(item) is str else str(item)
    if text.isascii() and text.isprintable() and "," not in text and "%" not in text:
        return text
    return quote(text, safe=_LIST_ITEM_SAFE)
