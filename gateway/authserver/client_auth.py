"""Client authentication at the endpoints that take it (RFC 6749 §2.3): which credentials a
request presents — HTTP Basic (`client_secret_basic`), `client_id` + `client_secret` in the
body (`client_secret_post`), a signed assertion (`private_key_jwt`, RFC 7523), or a bare
`client_id` (`none`: public clients) — and whether they are the registered client's.

One method per request, in one place for every endpoint: HTTP Basic together with
credentials in the body is `invalid_request`, as are two different client ids. An unknown
client, a method the client is not registered for, a wrong secret or a bad assertion is 401
`invalid_client`, with a `Basic` challenge when Basic was tried.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import unquote_plus

from gateway.authserver.client_registry import Client, ClientRegistry
from gateway.config import RateLimit
from gateway.errors import (
    BasicClientRejected,
    ClientAuthFailed,
    ClientFault,
    InvalidRequest,
    RateLimited,
)
from gateway.safejson import parse_json
from gateway.store import OneTimeIds, RateLimiter
from gateway.tokens.client_assertions import ASSERTION_TYPE, ClientAssertions
from gateway.tokens.jws import MalformedToken, b64url_decode, split_compact

log = logging.getLogger("gateway.clients")

Method = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
SCOPE_FAILURES: Final = "client-auth-fail"
SCOPE_ASSERTIONS: Final = "client-assertion"
MAX_CLIENT_ID: Final = 64
BODY_CREDENTIALS: Final = ("client_secret", "client_assertion", "client_assertion_type")


@dataclass(frozen=True, slots=True)
class Presented:
    """The client credentials a request carries, nothing verified yet."""

    method: Method
    client_id: str
    secret: str | None = None
    assertion: str | None = None


def basic_credentials(values: Sequence[str]) -> tuple[str, str] | None:
    """(client id, secret) from exactly one `Basic` Authorization value (RFC 7617, with the
    form-encoding of RFC 6749 §2.3.1), else None."""
    if len(values) != 1:
        return None
    scheme, _, encoded = values[0].strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id or not secret:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


def presented_client(
    authorization: Sequence[str], params: Mapping[str, Any], *, realm: str
) -> Presented | None:
    """The credentials of a request (`authorization`: its Authorization values), or None
    when it names no client. Raises InvalidRequest for two methods or two client ids, and
    BasicClientRejected for a Basic header that cannot be read."""
    basic = [v for v in authorization if v.strip().lower().startswith("basic")]
    body_id = _text(params, "client_id")
    in_body = [name for name in BODY_CREDENTIALS if params.get(name) not in (None, "")]
    if basic:
        credentials = basic_credentials(authorization)
        if credentials is None:
            raise BasicClientRejected("malformed HTTP Basic client credentials", realm=realm)
        # SECURITY: RFC 6749 §2.3: one authentication method per request; a second one
        # (or a second client id) would leave open which client is speaking.
        if in_body:
            raise InvalidRequest("use one client authentication method, not Basic and the body")
        if body_id is not None and body_id != credentials[0]:
            raise InvalidRequest("client_id differs from the HTTP Basic client")
        return Presented("client_secret_basic", credentials[0], secret=credentials[1])
    if params.get("client_assertion") not in (None, "") or "client_assertion_type" in in_body:
        if "client_secret" in in_body:
            raise InvalidRequest("use one client authentication method")
        if params.get("client_assertion_type") != ASSERTION_TYPE:
            raise InvalidRequest(f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = params.get("client_assertion")
        if not isinstance(assertion, str) or not assertion:
            raise InvalidRequest("client_assertion is required")
        client_id = body_id or _assertion_subject(assertion)
        if client_id is None:
            raise ClientAuthFailed("the client assertion names no client")
        return Presented("private_key_jwt", client_id, assertion=assertion)
    if "client_secret" in in_body:
        if body_id is None:
            raise InvalidRequest("client_id is required with client_secret")
        secret = params.get("client_secret")
        if not isinstance(secret, str):
            raise InvalidRequest("client_secret must be a string")
        return Presented("client_secret_post", body_id, secret=secret)
    if body_id is not None:
        return Presented("none", body_id)
    return None


class ClientAuthenticator:
    """Authenticates the registered clients; see the module docstring."""

    def __init__(
        self,
        registry: ClientRegistry,
        *,
        assertions: ClientAssertions,
        one_time_ids: OneTimeIds,
        limiter: RateLimiter,
        failures: RateLimit,
        leeway: float,
        realm: str,
    ):
        self.registry = registry
        self._assertions = assertions
        self._one_time_ids = one_time_ids
        self._limiter = limiter
        self._failures = failures
        self._leeway = leeway
        self._realm = realm

    async def authenticate(
        self, authorization: Sequence[str], params: Mapping[str, Any]
    ) -> Client | None:
        """The registered client the request authenticates as, None when it names none."""
        presented = presented_client(authorization, params, realm=self._realm)
        if presented is None:
            return None
        client = self.registry.get(presented.client_id)
        if client is None:
            log.info(
                "client authentication failed: unknown client (id hash %s)",
                _short_hash(presented.client_id),
            )
            raise self._failed(presented, "unknown client")
        if client.method != presented.method:
            raise self._failed(presented, f"this client authenticates with {client.method}")
        if presented.method in ("client_secret_basic", "client_secret_post"):
            await self._check_secret(client, presented)
        elif presented.method == "private_key_jwt":
            await self._check_assertion(client, presented)
        return client

    async def _check_secret(self, client: Client, presented: Presented) -> None:
        limit = self._failures
        blocked, retry = await self._limiter.peek(
            SCOPE_FAILURES, client.id, limit=limit.limit, window=limit.window
        )
        if blocked:
            raise RateLimited("too many failed authentications of this client", retry_after=retry)
        assert presented.secret is not None
        if not await client.check_secret(presented.secret):
            await self._limiter.hit(
                SCOPE_FAILURES, client.id, limit=limit.limit, window=limit.window
            )
            log.info("client authentication failed client=%s: wrong secret", client.id)
            raise self._failed(presented, "client authentication failed")

    async def _check_assertion(self, client: Client, presented: Presented) -> None:
        assert presented.assertion is not None and client.keys is not None
        try:
            verified = await self._assertions.verify(presented.assertion, client.id, client.keys)
        except ClientAuthFailed as exc:
            log.info("client assertion refused client=%s: %s", client.id, exc.description)
            raise
        # SECURITY: an assertion is single use (RFC 7523 §3, jti): a captured one replayed
        # within its lifetime is refused.
        fresh = await self._one_time_ids.claim(
            SCOPE_ASSERTIONS, f"{client.id}:{verified.jti}", until=verified.exp + self._leeway
        )
        if not fresh:
            log.warning("client assertion replayed client=%s", client.id)
            raise ClientAuthFailed("the client assertion was used before")

    def _failed(self, presented: Presented, description: str) -> ClientFault:
        if presented.method == "client_secret_basic":
            return BasicClientRejected(description, realm=self._realm)
        return ClientAuthFailed(description)


def _text(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_CLIENT_ID or not value.isprintable():
        raise InvalidRequest(f"{name} is malformed")
    return value


def _assertion_subject(assertion: str) -> str | None:
    """The unverified `sub` of an assertion: it only chooses whose keys verify it."""
    try:
        _, payload, _ = split_compact(assertion)
        claims = parse_json(b64url_decode(payload))
    except (MalformedToken, ValueError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    if isinstance(sub, str) and 0 < len(sub) <= MAX_CLIENT_ID and sub.isprintable():
        return sub
    return None


def _short_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]
