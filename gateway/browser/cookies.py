"""The gateway's two cookies: read from the raw Cookie header(s), rendered as Set-Cookie.

The gateway parses Cookie itself instead of using a general cookie parser: those give up
on (or silently skip past) a malformed foreign cookie, which could hide ours, and they
pick one value when a name is sent twice. Here a name is ours only when it matches exactly
(`__host-gw_at` is somebody else's cookie), and two values for one of our names are
reported, never resolved (cookie tossing: another path or a sibling domain can add a cookie
of the same name that the browser sends alongside ours).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from gateway.config import BrowserSettings

SEPARATORS: Final = " \t"


@dataclass(frozen=True, slots=True)
class PresentedCookies:
    access: str | None
    refresh: str | None
    duplicated: bool  # one of our names appeared more than once

    @property
    def any(self) -> bool:
        return self.access is not None or self.refresh is not None or self.duplicated


NO_COOKIES: Final = PresentedCookies(None, None, False)


def read_cookies(values: Iterable[str], access_name: str, refresh_name: str) -> PresentedCookies:
    """Our two cookies from the Cookie header values (RFC 6265 §5.4 pairs, `; `-separated)."""
    access = refresh = None
    duplicated = False
    for header in values:
        for pair in header.split(";"):
            name, eq, value = pair.partition("=")
            if not eq:
                continue
            name = name.strip(SEPARATORS)
            if name == access_name:
                duplicated = duplicated or access is not None
                access = _unquoted(value.strip(SEPARATORS))
            elif name == refresh_name:
                duplicated = duplicated or refresh is not None
                refresh = _unquoted(value.strip(SEPARATORS))
    if access is None and refresh is None and not duplicated:
        return NO_COOKIES
    return PresentedCookies(access or None, refresh or None, duplicated)


def _unquoted(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


class CookieFormat:
    """Set-Cookie values for the two cookies: HttpOnly, Path=/, no Domain, SameSite, and
    Secure unless configured off (outside production)."""

    def __init__(self, settings: BrowserSettings):
        self.access_name = settings.access_cookie
        self.refresh_name = settings.refresh_cookie
        same_site = settings.same_site.capitalize()
        self._attributes = f"; Path=/; HttpOnly; SameSite={same_site}" + (
            "; Secure" if settings.secure else ""
        )

    def access(self, value: str, max_age: float) -> str:
        return self._render(self.access_name, value, max_age)

    def refresh(self, value: str, max_age: float) -> str:
        return self._render(self.refresh_name, value, max_age)

    def cleared(self) -> tuple[str, str]:
        """Both cookies removed (same attributes, or the browser would keep them)."""
        return (
            f"{self.access_name}=; Max-Age=0{self._attributes}",
            f"{self.refresh_name}=; Max-Age=0{self._attributes}",
        )

    def _render(self, name: str, value: str, max_age: float) -> str:
        # rounded up: the cookie never ends before what it carries does
        return f"{name}={value}; Max-Age={max(0, math.ceil(max_age))}{self._attributes}"
