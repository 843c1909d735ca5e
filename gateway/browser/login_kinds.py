"""What a browser may sign in with: each kind recognises its request body and opens a session.

Username and password go through the login service (rate limits, one answer for every
failure). An identity provider's token (`subject_token`, SPEC §10) is a second kind: it
opens a session through the federated token exchange when one is wired in, and is refused
as unsupported otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from gateway.authserver.login import LoginService
from gateway.authserver.token_service import Device, TokenPair
from gateway.edge.params import text_param
from gateway.errors import InvalidRequest, UnsupportedGrantType

# (subject_token, subject_token_type, device) → a new session's pair
SubjectTokenExchange = Callable[[str, str, Device], Awaitable[TokenPair]]
MAX_SUBJECT_TOKEN: Final = 16 * 1024  # ID tokens are longer than other parameters


class LoginKind(Protocol):
    def accepts(self, params: Mapping[str, Any]) -> bool:
        """Whether the body is this kind of credential."""

    async def open_session(self, params: Mapping[str, Any], device: Device) -> TokenPair:
        """A new session for valid credentials; raises the login errors otherwise."""


class PasswordLogin:
    """`username` and `password`, checked by the configured authenticator."""

    def __init__(self, login: LoginService, *, enabled: bool = True):
        self._login = login
        self._enabled = enabled  # browser.password_login

    def accepts(self, params: Mapping[str, Any]) -> bool:
        return "username" in params or "password" in params

    async def open_session(self, params: Mapping[str, Any], device: Device) -> TokenPair:
        if not self._enabled:
            raise UnsupportedGrantType(
                "password sign-in is off here (browser.password_login: false); "
                "sign in at your identity provider"
            )
        values = dict(params)
        username = text_param(values, "username", required=True)
        password = text_param(values, "password", required=True)
        assert username is not None and password is not None
        return await self._login.login(username, password, device)


class SubjectTokenLogin:
    """`subject_token` and `subject_token_type`: an identity provider's token (SPEC §10)."""

    def __init__(self, exchange: SubjectTokenExchange | None = None):
        self._exchange = exchange

    def accepts(self, params: Mapping[str, Any]) -> bool:
        return "subject_token" in params

    async def open_session(self, params: Mapping[str, Any], device: Device) -> TokenPair:
        if self._exchange is None:
            raise UnsupportedGrantType("sign-in with an identity provider token is not enabled")
        token = params.get("subject_token")
        if not isinstance(token, str) or not token or len(token) > MAX_SUBJECT_TOKEN:
            raise InvalidRequest("subject_token must be a token")
        token_type = text_param(dict(params), "subject_token_type", required=True)
        assert token_type is not None
        return await self._exchange(token, token_type, device)


def choose(kinds: Sequence[LoginKind], params: Mapping[str, Any]) -> LoginKind:
    """The first kind that recognises the body; 400 when none does."""
    for kind in kinds:
        if kind.accepts(params):
            return kind
    raise InvalidRequest("username and password (or subject_token) are required")


_BROWSERS: Final = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
)
_SYSTEMS: Final = (
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)
_PRINTABLE: Final = re.compile(r"^[\x20-\x7e]*$")


def device_name_from(user_agent: str | None) -> str:
    """A short name for the devices page ("Chrome on Linux"), from the User-Agent."""
    if not user_agent or not _PRINTABLE.match(user_agent):
        return "Browser"
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), "Browser")
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), None)
    return f"{browser} on {system}" if system else browser
