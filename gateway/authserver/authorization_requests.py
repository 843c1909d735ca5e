"""Authorization requests (RFC 6749 §4.1.1 with PKCE, RFC 7636, as OAuth 2.1 asks): read in
two stages. First the client and its redirect URI: until both are known good, a problem is
answered to the user (a page), never sent anywhere (an open redirector otherwise). Then the
rest — response type, PKCE `S256` challenge, scope, state, nonce — whose problems go back to
the client's redirect URI as `error=…` (AuthorizationError).

Codes issued for a request are kept by gateway.store.authorization_codes, bound to the
client, the redirect URI, the PKCE challenge, the nonce, the scope and who signed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

from gateway.authserver.client_registry import Client, ClientRegistry
from gateway.authserver.scopes import OPENID, narrowed
from gateway.errors import InvalidRequest, InvalidScope, UnauthorizedClient
from gateway.store import AuthorizationCodeStore, Session, new_authorization_code

MAX_QUERY: Final = 2000  # the request must fit the login page's return_to (2048)
MAX_PARAMS: Final = 32
MAX_STATE: Final = 512
MAX_NONCE: Final = 255
CHALLENGE: Final = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url(SHA-256), no padding
UNSUPPORTED: Final = ("request", "request_uri")  # request objects (RFC 9101) are not served


class AuthorizationError(Exception):
    """A refused request whose answer goes to the validated redirect URI (RFC 6749
    §4.1.2.1): `error`, `error_description`, and the request's `state`."""

    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request may be answered: its client and a redirect URI the client owns."""

    client: Client
    redirect_uri: str
    redirect_given: bool  # sent in the request (then the token request must send it too)
    state: str | None


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    target: Target
    scope: str | None
    code_challenge: str
    nonce: str | None

    @property
    def client(self) -> Client:
        return self.target.client

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.scope.split()) if self.scope else ()


def query_params(raw_query: str) -> dict[str, str]:
    """The request's parameters; a repeated one, an overlong query or bad encoding is
    InvalidRequest (a page: RFC 6749 §3.1 forbids repeats, and a request this long could not
    come back through the sign-in)."""
    if len(raw_query) > MAX_QUERY:
        raise InvalidRequest("the authorization request is too long")
    try:
        pairs = parse_qsl(
            raw_query,
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_PARAMS,
            errors="strict",
        )
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the authorization request cannot be read") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise InvalidRequest(f"the parameter {name!r} is repeated"[:80])
        params[name] = value
    return params


def identify(params: dict[str, str], registry: ClientRegistry) -> Target:
    """The client and the redirect URI, both checked; raises a ClientFault shown as a page."""
    client_id = params.get("client_id")
    if not client_id:
        raise InvalidRequest("client_id is required")
    client = registry.get(client_id) if len(client_id) <= 64 else None
    if client is None:
        raise InvalidRequest("unknown client_id")
    if not client.allows("authorization_code"):
        raise UnauthorizedClient("this client does not use the authorization code flow")
    given = params.get("redirect_uri")
    if given is None or given == "":
        # RFC 6749 §3.1.2.3: may be left out only when exactly one URI is registered
        if len(client.redirect_uris) != 1:
            raise InvalidRequest("redirect_uri is required")
        redirect, sent = client.redirect_uris[0], False
    elif client.redirect_matches(given):
        redirect, sent = given, True
    else:
        # SECURITY: compared exactly (RFC 9700 §4.1.3): a URI differing in scheme, host,
        # port (for confidential clients), path, query or fragment is never redirected to.
        raise InvalidRequest("redirect_uri is not registered for this client")
    state = params.get("state")
    if state is not None and (len(state) > MAX_STATE or not state.isprintable()):
        raise InvalidRequest("state is too long or contains control characters")
    return Target(client, redirect, sent, state or None)


def validate(params: dict[str, str], target: Target) -> AuthorizationRequest:
    """The rest of the request; problems raise AuthorizationError (sent to the client)."""
    for name in UNSUPPORTED:
        if name in params:
            raise AuthorizationError(f"{name}_not_supported", f"{name} is not supported")
    if params.get("response_type") != "code":
        raise AuthorizationError(
            "unsupported_response_type", "response_type must be code (authorization code flow)"
        )
    if params.get("response_mode", "query") != "query":
        raise AuthorizationError("invalid_request", "response_mode must be query")
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    # SECURITY: PKCE for every client (OAuth 2.1), S256 only: `plain` (the default when no
    # method is named) sends the verifier itself through the browser.
    if not challenge:
        raise AuthorizationError("invalid_request", "code_challenge is required (PKCE)")
    if method != "S256":
        raise AuthorizationError("invalid_request", "code_challenge_method must be S256")
    if not CHALLENGE.match(challenge):
        raise AuthorizationError("invalid_request", "code_challenge is not a S256 challenge")
    client = target.client
    try:
        scope = narrowed(
            params.get("scope") or None, (*client.scopes, OPENID), default=client.scopes
        )
    except InvalidScope as exc:
        raise AuthorizationError("invalid_scope", exc.description) from None
    nonce = params.get("nonce") or None
    if nonce is not None and (len(nonce) > MAX_NONCE or not nonce.isprintable()):
        raise AuthorizationError("invalid_request", "nonce is too long or malformed")
    return AuthorizationRequest(target, scope, challenge, nonce)


class CodeIssuer:
    """Issues authorization codes for validated requests and signed-in users."""

    def __init__(self, store: AuthorizationCodeStore, *, ttl: float):
        self._store = store
        self._ttl = ttl

    async def issue(self, request: AuthorizationRequest, session: Session) -> str:
        """A new single-use code for `request`, on behalf of the browser session's user."""
        code = new_authorization_code()
        record: dict[str, Any] = {
            "client_id": request.client.id,
            "redirect_uri": request.target.redirect_uri,
            "redirect_given": request.target.redirect_given,
            "code_challenge": request.code_challenge,
            "nonce": request.nonce,
            "scope": request.scope,
            "sub": session.sub,
            "roles": list(session.roles),
            "claims": session.extra_claims,
            "auth_time": session.created_at,
            "browser_sid": session.sid,
        }
        await self._store.issue(code, record, ttl=self._ttl)
        return code
