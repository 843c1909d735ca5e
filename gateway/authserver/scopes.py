"""Scopes a grant may hand out (RFC 6749 §3.3): a request may only narrow what the client,
the user or the session already holds; asking for more is `invalid_scope`, never silently
granted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from gateway.config.client_settings import SCOPE_TOKEN
from gateway.errors import InvalidScope

MAX_SCOPE: Final = 1024  # characters of one scope parameter
OPENID: Final = "openid"


def scope_list(value: str | None) -> tuple[str, ...]:
    """The scope tokens of a `scope` parameter (duplicates dropped, order kept)."""
    if value is None:
        return ()
    if len(value) > MAX_SCOPE:
        raise InvalidScope("the scope parameter is too long")
    tokens = value.split(" ")
    if any(not SCOPE_TOKEN.match(token) for token in tokens if token) or not value.strip():
        raise InvalidScope("the scope parameter is malformed")
    return tuple(dict.fromkeys(t for t in tokens if t))


def narrowed(
    requested: str | None, allowed: Iterable[str], *, default: Iterable[str] | None = None
) -> str | None:
    """The scope to grant: the requested scopes when every one is allowed, `default` (all
    allowed, unless given) when none is requested; InvalidScope for anything more."""
    permitted = tuple(allowed)
    wanted = scope_list(requested)
    if not wanted:
        chosen = tuple(permitted if default is None else default)
        return " ".join(chosen) or None
    if any(s not in permitted for s in wanted):
        raise InvalidScope("a requested scope is beyond what may be granted")
    return " ".join(wanted)
