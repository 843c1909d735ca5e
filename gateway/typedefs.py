"""Types shared across planes, defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeAlias

Clock: TypeAlias = Callable[[], float]
"""Seconds since the epoch; `time.time` in production, a fixed clock in tests."""

RevocationKind: TypeAlias = Literal["jti", "sid", "sub"]
"""What a revocation names: one access token, one session, or every token of a user."""

RoutePolicy: TypeAlias = Literal["public", "optional", "required"]
"""What a configured route asks of a request's credentials."""

PathParameters: TypeAlias = Literal["match_without", "refuse"]
"""How `;params` in path segments are judged: routes matched without them, or refused."""

PathFolding: TypeAlias = Literal["fold", "refuse"]
"""How path characters whose compatibility form is a separator (`．` → `.`) are judged."""

FailMode: TypeAlias = Literal["closed", "open"]
"""What protected routes do once the revocation view is staler than allowed."""
