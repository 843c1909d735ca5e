"""Forward-auth decisions: `/auth/verify` and `/auth/verify/{original path}` (SPEC §13).

An ingress (nginx auth_request, Traefik ForwardAuth, Envoy ext_authz) asks whether a request
it holds may pass. The answer comes from the inline path's own `Admission.admit`, on a
request that describes the original one (gateway.proxy.original_request): 200 with the
identity headers, or the refusal the proxied request would get, rendered by the edge
middleware like every error. nginx accepts only 2xx, 401 and 403 from a decision, so in its
form every other refusal is a 403 carrying the inline status in `X-Gateway-Status`, and a
navigation without a session a 401 naming the login page in `X-Gateway-Login`.
"""

from __future__ import annotations

import functools
from typing import Final, Protocol

from aiohttp import hdrs, web
from prometheus_client import Counter
from yarl import URL

from gateway.appkeys import EXCHANGE
from gateway.config import ForwardAuthSettings
from gateway.edge import Exchange
from gateway.edge.bodies import defer_expectation
from gateway.edge.lean_server import Answer, LeanRequest, encode_fields
from gateway.edge.request_view import DescribedRequest, RequestView
from gateway.errors import (
    AccessDenied,
    AuthenticationRequired,
    GatewayError,
    InvalidRequest,
    LoginRedirect,
    NotFound,
)
from gateway.observability.metrics import Metrics
from gateway.proxy.admission import Admission
from gateway.proxy.headers import HeaderPolicy, ProxyTrust, header_value
from gateway.proxy.original_request import (
    DECISION_PATH,
    ORIGINAL_URI,
    OriginalRequest,
    read_original,
)
from gateway.proxy.routing import RouteTable
from gateway.tokens.verifier import Principal

GATEWAY_STATUS: Final = "X-Gateway-Status"
GATEWAY_LOGIN: Final = "X-Gateway-Login"
GATEWAY_ERROR: Final = "X-Gateway-Error"
GATEWAY_DESCRIPTION: Final = "X-Gateway-Error-Description"
UPSTREAM_COOKIE: Final = "X-Upstream-Cookie"
# nginx's auth_request passes these statuses on; it turns any other into a 500.
NGINX_ANSWERS: Final = frozenset({401, 403})
# `forward_auth.headers: oauth2-proxy`: the names oauth2-proxy's auth_request mode sets.
OAUTH2_PROXY_HEADERS: Final = (
    ("sub", "X-Auth-Request-User"),
    ("email", "X-Auth-Request-Email"),
    ("roles", "X-Auth-Request-Groups"),
)
_NO_STORE: Final = (hdrs.CACHE_CONTROL, "no-store")
_PRIVATE_NO_STORE: Final = (hdrs.CACHE_CONTROL, "private, no-store")
_UNDER_DECISION_PATH: Final = DECISION_PATH + "/"
_IDENTITY: Final = "decision identity headers"  # the key of what is kept on a Principal
_ANONYMOUS: Final = ((_NO_STORE,), encode_fields((_NO_STORE,)))
KNOWN_URLS: Final = 4096  # original targets whose URL is remembered (they are the clients')


class DecisionRequest(RequestView, Protocol):
    """A decision request as the endpoint reads it: a `web.Request`, or the decision
    listener's own (gateway.edge.lean_server.LeanRequest)."""

    @property
    def body_exists(self) -> bool: ...

    @property
    def content_length(self) -> int | None: ...


class DecisionEndpoint:
    """Answers an ingress's question about one of its requests, as the proxy would."""

    def __init__(
        self,
        settings: ForwardAuthSettings,
        *,
        admission: Admission,
        routes: RouteTable,
        headers: HeaderPolicy,
        metrics: Metrics,
    ):
        self._trust = ProxyTrust(settings.trusted_proxies)
        self._oauth2_proxy = settings.headers == "oauth2-proxy"
        self._admission = admission
        self._routes = routes
        self._checked: dict[str, str] = {}  # targets found in normal form → their path
        self._urls: dict[str, URL] = {}  # those targets as URLs
        self._headers = headers
        self._decisions = metrics.forward_auth_decisions
        self._admitted = metrics.forward_auth_decisions.labels("allowed", "admitted")
        self._untrusted = metrics.forward_auth_untrusted
        self._denials: dict[str, Counter] = {}  # by reason: error codes, a fixed set

    def routes(self) -> list[web.RouteDef]:
        """Any method, on the decision path and under it (Envoy's form)."""
        return [
            web.route("*", DECISION_PATH, self.handle, expect_handler=defer_expectation),
            web.route(
                "*", DECISION_PATH + "/{tail:.*}", self.handle, expect_handler=defer_expectation
            ),
        ]

    async def handle(self, request: web.Request) -> web.Response:
        """The decision as aiohttp's response (the public listener)."""
        answer = await self.decide(request, request[EXCHANGE])
        return answer.response()

    async def answer(self, request: LeanRequest) -> Answer:
        """The decision as the decision listener writes it (its edge put the Exchange)."""
        return await self.decide(request, request[EXCHANGE])

    async def decide(self, request: DecisionRequest, exchange: Exchange) -> Answer:
        """The decision; a refusal raises the inline path's error (nginx's form adjusted)."""
        # SECURITY: whoever may call the decision endpoint chooses the path it is about; only
        # the ingress may, or any client could ask for the answer of a path it picks.
        if not self._trust.trusts(request.remote):
            self._untrusted.inc()
            raise AccessDenied("decisions are given to trusted proxies only")
        path = request.rel_url.raw_path
        if path != DECISION_PATH and not path.startswith(_UNDER_DECISION_PATH):
            raise NotFound("no route for this path")  # the decision listener serves no other
        nginx = ORIGINAL_URI in request.headers
        try:
            original = self.original(request)
            exchange.original_method, exchange.original_path = original.method, original.path
            admitted = await self._admission.admit(self.described(request, original), exchange)
        except GatewayError as exc:
            reason = "no_credential" if isinstance(exc, AuthenticationRequired) else exc.code
            self._denied(reason).inc()
            raise self.refusal(exc, nginx=nginx) from None
        self._admitted.inc()
        return self.allowed(request, admitted.principal, exchange)

    def original(self, request: DecisionRequest) -> OriginalRequest:
        """The original request the ingress describes; a decision request has no body."""
        if (
            request.body_exists
            or request.content_length
            or hdrs.TRANSFER_ENCODING in request.headers
        ):
            raise InvalidRequest("a decision request has no body")
        url = request.rel_url
        return read_original(
            url.raw_path,
            url.raw_query_string,
            request.method,
            request.headers,
            self._routes,
            self._checked,
        )

    def described(self, request: RequestView, original: OriginalRequest) -> DescribedRequest:
        """The decision request as the original one: its method, target and Host, from the
        same peer, with the same headers (the description in them decides nothing)."""
        urls = self._urls
        url = urls.get(original.target)
        if url is None:
            path, _, query = original.target.partition("?")
            url = URL.build(path=path, query_string=query, encoded=True)
            if len(urls) >= KNOWN_URLS:
                urls.clear()
            urls[original.target] = url
        host = request.host if original.host is None else original.host
        return DescribedRequest(original.method, url, host, request.headers, request.remote)

    def _denied(self, reason: str) -> Counter:
        counter = self._denials.get(reason)
        if counter is None:
            counter = self._denials[reason] = self._decisions.labels("denied", reason)
        return counter

    def refusal(self, error: GatewayError, *, nginx: bool) -> GatewayError:
        """The answer to a refused decision: the inline path's, in a form the ingress takes.
        At most one Set-Cookie (nginx passes one): the access cookie's."""
        error.cookies = error.cookies[:1]
        if not nginx:
            return error  # Traefik and Envoy pass any answer on, a login's 302 too
        if isinstance(error, LoginRedirect):
            # a 401 whose header names the login page (`error_page 401 = @login`)
            login = AuthenticationRequired(
                "sign in to continue", headers={GATEWAY_LOGIN: error.extra_headers["Location"]}
            )
            login.cookies = error.cookies
            error = login
        # nginx does not pass the decision's body on: its error pages rebuild the JSON body
        # from these (codes are identifiers; descriptions the gateway's own words)
        error.extra_headers[GATEWAY_ERROR] = error.code
        error.extra_headers[GATEWAY_DESCRIPTION] = _json_safe(error.description)
        if error.status not in NGINX_ANSWERS:
            error.extra_headers[GATEWAY_STATUS] = str(error.status)
            error.status = 403
        return error

    def identity(self, principal: Principal) -> tuple[tuple[str, str], ...]:
        """The identity headers of an allowed decision, kept on the principal (the verifier
        hands out the same one for every request with a cached token)."""
        return self._identity_answer(principal)[0][1:]

    def _identity_answer(
        self, principal: Principal
    ) -> tuple[tuple[tuple[str, str], ...], bytes | None]:
        """`Cache-Control: no-store` and the identity headers, and the same encoded, kept on
        the principal."""
        key = (_IDENTITY, self._oauth2_proxy)
        kept: tuple[tuple[tuple[str, str], ...], bytes | None] | None = principal.derived.get(key)
        if kept is None:
            built = [
                (name.decode("ascii"), value.decode("ascii"))
                for name, value in self._headers.identity_fields(principal)
            ]
            if self._oauth2_proxy:
                claims = principal.claims
                for claim, header in OAUTH2_PROXY_HEADERS:
                    text = header_value(claims.get(claim))
                    if text is not None:
                        built.append((header, text))
            fields = (_NO_STORE, *built)
            kept = principal.derived[key] = (fields, encode_fields(fields))
        return kept

    def allowed(
        self, request: RequestView, principal: Principal | None, exchange: Exchange
    ) -> Answer:
        """200 with who the caller is (nothing on a public route), the access cookie of a
        transparent refresh, and the Cookie header the upstream may get."""
        fields, encoded = _ANONYMOUS if principal is None else self._identity_answer(principal)
        if exchange.set_cookies:  # no cache may keep it
            fields = (_PRIVATE_NO_STORE, *fields[1:])
            encoded = encode_fields(fields)
        answer = Answer(200, fields, encoded)
        cookies = request.headers.getall(hdrs.COOKIE, ())
        if cookies:
            values = [c.encode("utf-8", "surrogateescape") for c in cookies]
            remaining = self._headers.upstream_cookie(values)
            answer.headers[UPSTREAM_COOKIE] = remaining.decode("utf-8", "surrogateescape")
        if exchange.set_cookies:
            # the access cookie only: the refresh cookie never rotates in a decision
            answer.headers.add(hdrs.SET_COOKIE, exchange.set_cookies[0])
        return answer


@functools.lru_cache(maxsize=1024)  # descriptions are the gateway's own words: few of them
def _json_safe(text: str) -> str:
    """Text that can stand inside a JSON string and a header value as it is."""
    return "".join(c for c in text.replace('"', "'") if c != "\\" and 0x20 <= ord(c) < 0x7F)
