"""The original request of a forward-auth decision, as the ingress describes it.

Three forms (SPEC §13): nginx's `X-Original-URI` + `X-Original-Method`; Traefik's and Caddy's
`X-Forwarded-Uri` + `X-Forwarded-Method` + `X-Forwarded-Host` + `X-Forwarded-Proto`; Envoy's
ext_authz HTTP service, which puts the original path after the decision path
(`/auth/verify/{original path}`) with the method in `X-Forwarded-Method` or the request's own.
Exactly one form per request, each header at most once, and a path already in normal form:
anything else is refused (400), never decided on a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.errors import InvalidRequest
from gateway.proxy.routing import MAX_PATH_LENGTH, RouteTable

DECISION_PATH: Final = "/auth/verify"
CHECKED_TARGETS: Final = 4096  # targets whose path is remembered as normal
IngressForm = Literal["nginx", "forwarded", "path"]

ORIGINAL_URI: Final = "X-Original-URI"
ORIGINAL_METHOD: Final = "X-Original-Method"
FORWARDED_URI: Final = "X-Forwarded-Uri"
FORWARDED_METHOD: Final = "X-Forwarded-Method"
FORWARDED_HOST: Final = "X-Forwarded-Host"
FORWARDED_PROTO: Final = "X-Forwarded-Proto"

# An RFC 9110 method token in upper case, as clients send them.
_METHOD: Final = re.compile(r"[A-Z][A-Z-]{0,31}").fullmatch
# SECURITY: TRACE (and TRACK) echo the request, cookies included (cross-site tracing), and
# are safe methods to the CSRF check; CONNECT opens a tunnel. No decision admits them.
REFUSED_METHODS: Final = frozenset({"TRACE", "TRACK", "CONNECT"})
# A request target's characters: printable ASCII without space (RFC 3986 plus `%` escapes).
_TARGET: Final = re.compile(r"/[\x21-\x7e]*").fullmatch
_ESCAPE: Final = re.compile(r"%[0-9a-fA-F]{2}")
_ESCAPED_CONTROL: Final = re.compile(r"%(?:[01][0-9a-fA-F]|7[fF])")
_HOST: Final = re.compile(r"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?").fullmatch


@dataclass(frozen=True, slots=True)
class OriginalRequest:
    """The request the ingress holds: how it was described, its method, its target (path and
    query as received), its path, and its Host and scheme when the ingress said them."""

    form: IngressForm
    method: str
    target: str
    path: str
    host: str | None = None
    scheme: str | None = None


def read_original(
    raw_path: str,
    raw_query: str,
    method: str,
    headers: CIMultiDictProxy[str] | CIMultiDict[str],
    routes: RouteTable,
    checked: dict[str, str] | None = None,
) -> OriginalRequest:
    """The original request described by a decision request (its path, query string, method
    and headers). Raises InvalidRequest for a missing, repeated, ambiguous or non-normal
    description. `checked` remembers the path of each target found normal (bounded: targets
    are the clients')."""
    suffix = raw_path[len(DECISION_PATH) :]
    nginx = _single(headers, ORIGINAL_URI)
    forwarded = _single(headers, FORWARDED_URI)
    given = [form for form, value in (("nginx", nginx), ("forwarded", forwarded)) if value]
    if suffix:
        given.append("path")
    if not given:
        # SECURITY: never a decision for `/` (or any default): a misconfigured ingress that
        # sends nothing must not get the answer for another path.
        raise InvalidRequest("the original request is not described (X-Original-URI)")
    if len(given) > 1:
        raise InvalidRequest("the original request is described twice")
    form: IngressForm
    if nginx is not None:
        form, target = "nginx", nginx
        named = _single(headers, ORIGINAL_METHOD)
    elif forwarded is not None:
        form, target = "forwarded", forwarded
        named = _single(headers, FORWARDED_METHOD)
    else:
        if suffix[0] != "/":  # `/auth/verifyX`: not the decision path at all
            raise InvalidRequest("the original request is not described")
        form, target = "path", suffix + (f"?{raw_query}" if raw_query else "")
        named = _single(headers, FORWARDED_METHOD)
    original_method = _method(named if named is not None else method)
    path = checked.get(target) if checked is not None else None
    if path is None:
        path = _path(target, routes)
        if checked is not None:
            if len(checked) >= CHECKED_TARGETS:
                checked.clear()
            checked[target] = path
    host = _single(headers, FORWARDED_HOST)
    if host is not None:
        valid = _HOST(host)
        if valid is None or int(valid[1] or 0) > 65535:
            raise InvalidRequest("invalid X-Forwarded-Host")
    scheme = _single(headers, FORWARDED_PROTO)
    if scheme is not None and scheme not in ("http", "https"):
        raise InvalidRequest("invalid X-Forwarded-Proto")
    return OriginalRequest(form, original_method, target, path, host, scheme)


def _single(headers: CIMultiDictProxy[str] | CIMultiDict[str], name: str) -> str | None:
    """A header's one value; two of them are refused (SECURITY: two servers in a chain may
    each believe another one)."""
    values = headers.getall(name, ())
    if len(values) > 1:
        raise InvalidRequest(f"{name} is sent twice")
    return values[0] if values else None


def _method(value: str) -> str:
    if _METHOD(value) is None:
        raise InvalidRequest("invalid original method")
    if value in REFUSED_METHODS:
        raise InvalidRequest(f"{value} requests are not decided")
    return value


def _path(target: str, routes: RouteTable) -> str:
    """The target's path, which must already be in normal form.

    SECURITY: the ingress forwards the request as it holds it, not as the gateway would
    normalize it; a decision made on `/public/../admin` read as `/admin` (or the other way
    round) would not be about the path the upstream gets (SPEC §8.2). So dot segments
    (`..`, `%2e%2e`), encoded separators, `//`, backslashes, `;params`, overlong UTF-8, full
    URLs and control characters are refused rather than normalized.
    """
    if len(target) > MAX_PATH_LENGTH or _TARGET(target) is None or "#" in target:
        raise InvalidRequest("the original URI must be a path (printable ASCII, no URL)")
    path = target.partition("?")[0]
    if _ESCAPED_CONTROL.search(target):  # `%0d%0a`: a backend that decodes it sees CR LF
        raise InvalidRequest("control characters in the original URI")
    if ";" in path:
        raise InvalidRequest("path parameters (;) are not accepted in a decision")
    normalized = routes.normalize(path)  # raises for bad escapes, overlong UTF-8, controls
    if normalized != _ESCAPE.sub(lambda m: m.group().upper(), path):
        raise InvalidRequest("the original path is not in normal form")
    return path
