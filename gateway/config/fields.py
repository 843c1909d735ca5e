"""What the settings sections share: the section base, value types and name patterns."""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

ASYMMETRIC_ALGORITHMS: Final = ("EdDSA", "ES256", "RS256")


SUPPORTED_ALGORITHMS: Final = (*ASYMMETRIC_ALGORITHMS, "HS256")


HEADER_NAME_RE: Final = re.compile(r"^[A-Za-z0-9-]+$")


COOKIE_NAME_RE: Final = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$"  # an RFC 6265 token


ORIGIN_RE: Final = re.compile(
    r"^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$"  # no path, no userinfo
)


PositiveSeconds = Annotated[float, Field(gt=0)]


NonNegativeSeconds = Annotated[float, Field(ge=0)]


Port = Annotated[int, Field(ge=0, le=65535)]


Algorithm = Literal["EdDSA", "ES256", "RS256", "HS256"]


class RestartOnly:
    """Marks a setting (`Annotated[T, RESTART]`) that a running gateway reads only when it
    starts: a reload that changes it is refused, naming it (gateway.config.restart_only)."""

    def __repr__(self) -> str:
        return "RESTART"


RESTART: Final = RestartOnly()


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "[::1]"})


def is_loopback_http(url: str) -> bool:
    match = re.match(r"^http://([^/:]+|\[[^\]]+\])(:\d+)?(/|$)", url)
    return match is not None and match.group(1) in LOOPBACK_HOSTS


class RateLimit(Section):
    limit: int = Field(ge=1)
    """attempts allowed per window"""
    window: int = Field(ge=1, description="window length, seconds")
