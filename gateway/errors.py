"""The gateway's exception tree; every error knows its HTTP face.

    GatewayError                      status, OAuth-style code, description, headers
    ├── ClientFault (4xx)             the client sent something we refuse
    │   ├── InvalidRequest            400 invalid_request
    │   ├── InvalidGrant              400 invalid_grant
    │   │   └── BadCredentials        401 invalid_grant (login: unknown user = wrong password)
    │   ├── SignInFailed              400 a sign-in at an identity provider did not complete
    │   │   └── SignInDenied          403 access_denied (the provider refused it)
    │   ├── UnsupportedGrantType      400 unsupported_grant_type
    │   ├── InvalidScope              400 invalid_scope (more than the client or grant allows)
    │   ├── UnauthorizedClient        400 unauthorized_client (a grant the client may not use)
    │   ├── AuthenticationRequired    401, no error code in WWW-Authenticate (RFC 6750 §3.1)
    │   ├── LoginRedirect             302 to the login page (a browser navigation, no session)
    │   ├── InvalidToken              401 invalid_token, with a machine-readable reason
    │   ├── MalformedAuthorization    400 invalid_request (e.g. two Authorization headers)
    │   ├── InvalidClient             401 invalid_client (admin API keys)
    │   ├── BasicClientRejected       401 invalid_client, HTTP Basic challenge (introspection)
    │   ├── ClientAuthFailed          401 invalid_client, no challenge (a client's own body
    │   │                             credentials: client_secret_post, private_key_jwt, none)
    │   ├── InsufficientScope         403 insufficient_scope
    │   ├── AccessDenied              403 access_denied (e.g. a cross-site console form post)
    │   │   ├── CrossSiteRequest      403 access_denied (CSRF check of a cookie request)
    │   │   └── PolicyDenied          403 access_denied (a route's allow/deny/expr rules)
    │   ├── NotFound                  404 not_found
    │   ├── MethodNotAllowed          405 method_not_allowed
    │   ├── RequestTimeout            408 request_timeout (a body or head that stalls)
    │   ├── PayloadTooLarge           413 payload_too_large
    │   ├── ExpectationFailed         417 expectation_failed
    │   ├── ConfigurationRefused      400 invalid_configuration (a reload: check-config's words)
    │   ├── RateLimited               429 rate_limited (+ Retry-After, RateLimit fields)
    │   └── HeadersTooLarge           431 request_header_fields_too_large
    ├── ServiceFault (5xx)            our side, Redis or the upstream failed (503s: Retry-After)
    │   ├── StoreUnavailable          503 temporarily_unavailable
    │   │   └── ReplicaAckMissing     503 (Redis replicas did not confirm a write in time)
    │   ├── Overloaded                503 temporarily_unavailable (also an upstream's max_in_flight)
    │   ├── UpstreamsDown             503 temporarily_unavailable (every target out of rotation)
    │   ├── RevocationStale           503 temporarily_unavailable (fail mode "closed")
    │   ├── ProviderUnavailable       503 temporarily_unavailable (an identity provider's keys)
    │   ├── ProviderFailed            502 bad_gateway (an identity provider's token endpoint)
    │   │   └── ProviderTimeout       504 gateway_timeout
    │   ├── UpstreamUnavailable       502 bad_gateway
    │   ├── UpstreamTimeout           504 gateway_timeout
    │   ├── LoginBackendUnavailable   503 temporarily_unavailable (auth.backend failed)
    │   └── ReloadUnavailable         503 temporarily_unavailable (a reload did not report back)

    ConfigError                       start-up, check-config and reloads: never reaches a
                                      client as such (a refused reload answers with
                                      ConfigurationRefused)

`edge_middleware` in `gateway.edge` is the one place that turns GatewayErrors into responses:
the JSON error body (or, where a listener asks for it, an HTML page from the renderer it
was given), the `WWW-Authenticate` challenge (with the listener's realm) for the classes that
carry one, and `Retry-After` from the error's `retry_after`; everything else just raises. An
error may also carry Set-Cookie values (`cookies`: browser sessions clear theirs when they
end).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class GatewayError(Exception):
    """Root of every error the gateway answers a request with."""

    # An instance may answer with another status than its kind's: a forward-auth decision
    # in nginx's form answers 403 for refusals nginx would turn into a 500.
    status: int = 500
    code: ClassVar[str] = "server_error"
    default_description: ClassVar[str] = "internal error"
    # The RFC 6750 challenge this error answers with: None = no WWW-Authenticate header,
    # "" = the bare challenge (realm only), else the error code it names.
    challenge: ClassVar[str | None] = None
    # Seconds after which the same request may succeed (RFC 9110 §10.2.3), sent as
    # Retry-After; a class attribute per kind of fault, an instance's own where it varies
    # (a rate limit's window). None: no Retry-After.
    retry_after: int | None = None

    def __init__(self, description: str | None = None, *, headers: Mapping[str, str] | None = None):
        self.description = description or self.default_description
        self.extra_headers: dict[str, str] = dict(headers or {})
        self.cookies: tuple[str, ...] = ()  # Set-Cookie values the answer carries
        super().__init__(self.description)

    def headers(self) -> dict[str, str]:
        """Headers the error response carries besides Content-Type."""
        headers = dict(self.extra_headers)
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, int(self.retry_after)))
        return headers


class ClientFault(GatewayError):
    status = 400
    code = "invalid_request"
    default_description = "invalid request"


class InvalidRequest(ClientFault):
    pass


class InvalidGrant(ClientFault):
    code = "invalid_grant"
    default_description = "the grant is invalid, expired or revoked"

    def __init__(self, description: str | None = None, *, reason: str = "invalid"):
        super().__init__(description)
        self.reason = reason  # for metrics and logs: unknown, expired, reuse_detected, …


class BadCredentials(InvalidGrant):
    """Wrong password or unknown user: one answer for both (SPEC §3 asks for 401)."""

    status = 401
    default_description = "invalid username or password"

    challenge = ""

    def __init__(self, description: str | None = None):
        super().__init__(description, reason="bad_credentials")


class SignInFailed(ClientFault):
    """A browser's sign-in at an identity provider cannot complete (a callback without its
    login cookie, a replayed one, an ID token refused, …): shown as a page, no session."""

    default_description = "the sign-in could not be completed"

    def __init__(self, description: str | None = None, *, reason: str = "invalid"):
        super().__init__(description)
        self.reason = reason  # for metrics and logs: no_login_cookie, state_reused, nonce, …


class SignInDenied(SignInFailed):
    """The identity provider answered the sign-in with an error (access_denied, …)."""

    status = 403
    code = "access_denied"
    default_description = "the identity provider did not sign you in"


class UnsupportedGrantType(ClientFault):
    code = "unsupported_grant_type"
    default_description = "unsupported grant_type"


class InvalidScope(ClientFault):
    """A request for scopes beyond what the client, the user or the grant holds."""

    code = "invalid_scope"
    default_description = "the requested scope is not allowed"


class UnauthorizedClient(ClientFault):
    """An identified client asks for a grant its registration does not list."""

    code = "unauthorized_client"
    default_description = "the client may not use this grant"


class AuthenticationRequired(ClientFault):
    """No bearer token at all: RFC 6750 says the challenge carries no error code."""

    status = 401
    code = "invalid_request"
    default_description = "a bearer access token is required"
    challenge = ""


class InvalidToken(ClientFault):
    """A bearer token was presented and refused; `reason` feeds metrics and logs."""

    status = 401
    code = "invalid_token"
    default_description = "the access token is invalid"
    challenge = "invalid_token"

    def __init__(self, description: str | None = None, *, reason: str = "invalid"):
        super().__init__(description)
        self.reason = reason


class LoginRedirect(ClientFault):
    """A browser's top-level navigation without a session: sent to the login page. (The JSON
    body is for clients that do not follow redirects.)"""

    status = 302
    code = "login_required"
    default_description = "sign in to continue"

    def __init__(self, location: str, description: str | None = None):
        super().__init__(description, headers={"Location": location})


class MalformedAuthorization(ClientFault):
    """The Authorization header itself is malformed (e.g. sent twice): RFC 6750 §3.1 400."""

    default_description = "malformed Authorization header"
    challenge = "invalid_request"


class InvalidClient(ClientFault):
    status = 401
    code = "invalid_client"
    default_description = "client authentication failed"
    challenge = ""


class BasicClientRejected(ClientFault):
    """A client that authenticates with HTTP Basic (RFC 6749 §2.3.1) is missing or wrong:
    401 invalid_client whose challenge names the Basic scheme, not Bearer."""

    status = 401
    code = "invalid_client"
    default_description = "client authentication failed"

    def __init__(self, description: str | None = None, *, realm: str):
        super().__init__(description, headers={"WWW-Authenticate": f'Basic realm="{realm}"'})


class ClientAuthFailed(ClientFault):
    """A client that identified itself in the request body (RFC 6749 §2.3) is unknown or
    failed to authenticate: 401 invalid_client without a challenge (no Authorization header
    was tried; with one, BasicClientRejected)."""

    status = 401
    code = "invalid_client"
    default_description = "client authentication failed"


class InsufficientScope(ClientFault):
    status = 403
    code = "insufficient_scope"
    default_description = "the access token lacks a required role or scope"
    challenge = "insufficient_scope"

    def __init__(self, description: str | None = None, *, reason: str = "scope"):
        super().__init__(description)
        self.reason = reason  # for metrics and logs: role or scope


class AccessDenied(ClientFault):
    status = 403
    code = "access_denied"
    default_description = "access denied"


class CrossSiteRequest(AccessDenied):
    """A cookie-authenticated request that did not come from an allowed origin (CSRF)."""

    default_description = "cross-site request refused"

    def __init__(self, description: str | None = None, *, reason: str):
        super().__init__(description)
        self.reason = reason  # for metrics: cross_site, origin_null, foreign_origin, …


class PolicyDenied(AccessDenied):
    """A route's rules refused the request; the description names the deciding rule by its
    place (`deny[0]`, `allow[1].any[0]`, `expr`), never by its values."""

    def __init__(self, description: str | None = None, *, reason: str, rule: str):
        super().__init__(description)
        self.reason = reason  # bounded: deny, allow, expr, expr_error
        self.rule = rule


class NotFound(ClientFault):
    status = 404
    code = "not_found"
    default_description = "not found"


class MethodNotAllowed(ClientFault):
    status = 405
    code = "method_not_allowed"
    default_description = "method not allowed"


class RequestTimeout(ClientFault):
    """The client stopped sending (or sends too slowly) what it started: a 4xx, never 5xx."""

    status = 408
    code = "request_timeout"
    default_description = "the request was not received in time"


class PayloadTooLarge(ClientFault):
    status = 413
    code = "payload_too_large"
    default_description = "request body too large"


class ExpectationFailed(ClientFault):
    status = 417
    code = "expectation_failed"
    default_description = "only 'Expect: 100-continue' is supported"


class ConfigurationRefused(ClientFault):
    """POST /admin/reload found the configuration invalid (or changing a restart-only
    setting): the description is what `gateway check-config` prints; nothing was reloaded."""

    code = "invalid_configuration"
    default_description = "the configuration was refused; the running one keeps serving"


class RateLimited(ClientFault):
    status = 429
    code = "rate_limited"
    default_description = "too many requests, retry later"

    def __init__(
        self,
        description: str | None = None,
        *,
        retry_after: int = 60,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(description, headers=headers)
        self.retry_after = retry_after


class HeadersTooLarge(ClientFault):
    status = 431
    code = "request_header_fields_too_large"
    default_description = "request header fields too large"


class ServiceFault(GatewayError):
    status = 503
    code = "temporarily_unavailable"
    default_description = "service temporarily unavailable"
    # Every 503 says when to come back (RFC 9110 §10.2.3): a client that waits and retries the
    # same request (a refresh included: see the token service) gets a valid answer.
    retry_after: int | None = 1


class StoreUnavailable(ServiceFault):
    default_description = "the token store is temporarily unavailable"


class ReplicaAckMissing(StoreUnavailable):
    """Fewer Redis replicas than `redis.min_replicas_ack` confirmed a write in time."""

    default_description = "the token store did not confirm the write in time; retry"


class Overloaded(ServiceFault):
    default_description = "the upstream is at its concurrency limit"


class UpstreamsDown(ServiceFault):
    """Every target of a named upstream is out of rotation (failed, backing off, or failing
    its health checks): answered at once, with the time until the first is tried again."""

    default_description = "every target of the upstream is out of rotation"

    def __init__(self, description: str | None = None, *, retry_after: int = 1):
        super().__init__(description)
        self.retry_after = retry_after


class RevocationStale(ServiceFault):
    default_description = "revocation state is stale; refusing protected requests"
    retry_after = 5  # Redis has been out of reach for revocation.max_staleness already


class ProviderUnavailable(ServiceFault):
    """An identity provider's keys cannot be had (fetch failed, nothing usable cached)."""

    default_description = "the identity provider's keys are temporarily unavailable"

    def __init__(self, description: str | None = None, *, retry_after: int = 30):
        super().__init__(description)
        self.retry_after = retry_after


class ProviderFailed(ServiceFault):
    """An identity provider's token endpoint failed (5xx, not JSON, too large, unreachable)."""

    status = 502
    code = "bad_gateway"
    default_description = "the identity provider did not complete the sign-in"
    retry_after = None

    def __init__(self, description: str | None = None, *, reason: str = "failed"):
        super().__init__(description)
        self.reason = reason  # for metrics and logs: http_500, not_json, too_large, …


class ProviderTimeout(ProviderFailed):
    status = 504
    code = "gateway_timeout"
    default_description = "the identity provider did not answer in time"


class UpstreamUnavailable(ServiceFault):
    status = 502
    code = "bad_gateway"
    default_description = "the upstream could not be reached"
    retry_after = None  # another attempt may or may not reach it: nothing to promise


class UpstreamTimeout(ServiceFault):
    status = 504
    code = "gateway_timeout"
    default_description = "the upstream did not answer in time"
    retry_after = None


class LoginBackendUnavailable(ServiceFault):
    """The legacy backend that checks passwords (auth.backend) failed or did not answer."""

    default_description = "the login backend is unavailable"


class ReloadUnavailable(ServiceFault):
    """A reload asked of every worker did not report back in time (the supervisor is gone or
    busy): whether it ran is in the gateway's log."""

    default_description = "the reload did not complete in time; see the gateway's log"
    retry_after = 5


class ConfigError(Exception):
    """The configuration is invalid; raised at start-up, by `check-config` and by a reload.

    Not a GatewayError: it has no HTTP face, because it never answers a request.
    """

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description
