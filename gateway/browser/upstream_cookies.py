"""What the upstream sees of browser sessions, and what it may send back.

Upstream requests keep every other cookie byte for byte and in order, in one Cookie field
(none when nothing is left), and lose the gateway's cookies (the session's two, the provider
cookie, login attempts') and `X-CSRF`. Upstream responses cannot set the gateway's cookies:
Set-Cookie fields that a user agent, lenient or not, could take for one of them are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config import BrowserSettings, ProxySettings
from gateway.edge import Exchange
from gateway.observability.tracecontext import TracePolicy
from gateway.proxy.headers import HeaderPolicy
from gateway.tokens.verifier import Principal

_COOKIE: Final = b"cookie"
_X_CSRF: Final = b"x-csrf"
FILTERED_CACHE_SIZE: Final = 4096


def without_gateway_cookies(
    values: Iterable[bytes], names: frozenset[bytes], prefixes: tuple[bytes, ...] = ()
) -> bytes:
    """The Cookie header values as one, minus the pairs named `names` (or whose names start
    with one of `prefixes`); b"" when none is left.

    Pairs are kept exactly as sent (a malformed one too), only the separators between them
    are rewritten as `; ` (RFC 6265 §5.4).
    """
    kept = []
    for value in values:
        for pair in value.split(b";"):
            stripped = pair.strip(b" \t")
            if not stripped:
                continue
            name = stripped.partition(b"=")[0].rstrip(b" \t")
            if name in names or (prefixes and name.startswith(prefixes)):
                continue
            kept.append(stripped)
    return b"; ".join(kept)


# Cookie name prefixes (RFC 6265bis §4.1.3), which browsers match in any case: `__Host-gw_at`
# and `gw_at` name the same cookie as far as an upstream may be concerned.
_NAME_PREFIXES: Final = ("__host-http-", "__host-", "__secure-", "__http-")


def cookie_name_key(name: str) -> str:
    """A cookie name as loosely as any user agent might read it: no surrounding whitespace
    or quotes, lower case, without the `__Host-`/`__Secure-`/`__Http-` prefixes."""
    key = name.strip().strip('"').strip().lower()
    while key.startswith(_NAME_PREFIXES):
        key = key[len(next(p for p in _NAME_PREFIXES if key.startswith(p))) :]
    return key


def is_gateway_set_cookie(
    value: str, keys: frozenset[str], key_prefixes: tuple[str, ...] = ()
) -> bool:
    """Whether an upstream Set-Cookie could set one of our cookies (`keys`: our names as
    `cookie_name_key` reads them; `key_prefixes`: the same for families of names, such as
    the login attempts' cookies).

    SECURITY: beyond our exact names: any case, whitespace or quotes around the name, the
    `__Host-`/`__Secure-` prefixes added or left out, an empty name whose value starts with
    ours (`=gw_at=x`, which a browser sends back as `gw_at=x`), a bare `gw_at`, and a second
    cookie after a comma (for clients that still split Set-Cookie on commas).
    """
    for piece in value.split(","):
        pair = piece.partition(";")[0]
        name, eq, rest = pair.partition("=")
        if not eq or not name.strip():  # an empty name: the value is what is sent back
            name = (rest if eq else pair).partition("=")[0]
        key = cookie_name_key(name)
        if key in keys or (key_prefixes and key.startswith(key_prefixes)):
            return True
    return False


class CookieHeaderPolicy(HeaderPolicy):
    """The header policy with browser mode on: our cookies never cross the gateway."""

    def __init__(
        self, settings: ProxySettings, browser: BrowserSettings, *, trace: TracePolicy | None = None
    ):
        super().__init__(settings, trace=trace)
        # the session's two, the provider cookie and every login attempt's (sign-in at a
        # provider: gateway.browser.login_attempts)
        names = (browser.access_cookie, browser.refresh_cookie, browser.provider_cookie)
        attempts = browser.login_cookie + "_"
        self._cookie_names = frozenset(n.encode("ascii") for n in names)
        self._cookie_prefixes = (attempts.encode("ascii"),)
        self._set_cookie_names = frozenset(cookie_name_key(n) for n in names)
        self._set_cookie_prefixes = (cookie_name_key(attempts),)
        # A browser sends the same Cookie header until a cookie changes: its filtered form
        # is remembered (bounded: the values are client-chosen).
        self._filtered_cookies: dict[bytes, bytes] = {}

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
        fields = super().upstream_request_fields(
            raw_headers,
            headers,
            principal=principal,
            request_id=request_id,
            remote=remote,
            scheme=scheme,
            host=host,
            upstream_host=upstream_host,
            exchange=exchange,
        )
        if "Cookie" not in headers and "X-CSRF" not in headers:
            return fields  # bearer clients: nothing to do
        return self._filtered(fields)

    def _filtered(self, fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        cookies: list[bytes] = []
        position = -1
        for name, value in fields:
            lower = name.lower()
            if lower == _COOKIE:
                if position < 0:
                    position = len(out)
                cookies.append(value)
            elif lower != _X_CSRF:
                out.append((name, value))
        if cookies:
            remaining = self._without_ours(cookies)
            if remaining:
                out.insert(position, (b"Cookie", remaining))
        return out

    def upstream_cookie(self, values: list[bytes]) -> bytes:
        return self._without_ours(values)

    def _without_ours(self, cookies: list[bytes]) -> bytes:
        if len(cookies) != 1:
            return without_gateway_cookies(cookies, self._cookie_names, self._cookie_prefixes)
        remaining = self._filtered_cookies.get(cookies[0])
        if remaining is None:
            remaining = without_gateway_cookies(cookies, self._cookie_names, self._cookie_prefixes)
            if len(self._filtered_cookies) >= FILTERED_CACHE_SIZE:
                self._filtered_cookies.clear()
            self._filtered_cookies[cookies[0]] = remaining
        return remaining

    def downstream_response_headers(
        self, raw_headers: Iterable[tuple[bytes, bytes]]
    ) -> CIMultiDict[str]:
        out = super().downstream_response_headers(raw_headers)
        if "Set-Cookie" in out:
            values = out.popall("Set-Cookie")
            for value in values:
                if not is_gateway_set_cookie(
                    value, self._set_cookie_names, self._set_cookie_prefixes
                ):
                    out.add("Set-Cookie", value)
        return out
