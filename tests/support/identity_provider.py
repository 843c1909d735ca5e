"""A fake OpenID Connect identity provider on loopback (discovery, JWKS, a signer of ID tokens,
a token endpoint that redeems the codes it handed out, logout tokens) and the token-exchange
URNs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

IDP_CLIENT_ID: Final = "gateway-app"
ID_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:id_token"
JWT_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
_IDP_KEYS: dict[str, Any] = {}


def idp_key(name: str) -> Any:
    """Test keys made once per run (RSA generation is slow): rsa1, rsa2, ec1, attacker."""
    if name not in _IDP_KEYS:
        if name.startswith("ec"):
            _IDP_KEYS[name] = ec.generate_private_key(ec.SECP256R1())
        else:
            _IDP_KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _IDP_KEYS[name]


def public_jwk(name: str, alg: str) -> dict[str, Any]:
    """The public half of test key `name` as a JWK for `alg`."""
    public = idp_key(name).public_key()
    codec: Any = ECAlgorithm if alg.startswith("ES") else RSAAlgorithm
    return {**codec.to_jwk(public, as_dict=True), "kid": name, "alg": alg, "use": "sig"}


IDP_CLIENT_SECRET: Final = "gateway-app-secret"
BACKCHANNEL_EVENT: Final = "http://schemas.openid.net/event/backchannel-logout"


@dataclass
class IssuedCode:
    """A code the provider handed out: what it was asked for and what its ID token says."""

    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str | None
    claims: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    forge: Callable[[dict[str, Any]], str] | None = None  # makes the ID token from its claims


class FakeIdentityProvider:
    """An OIDC provider on loopback that records every request it gets. Its JWKS can be
    made to fail (`jwks_mode`: ok, error, hang, redirect, huge) and its discovery document
    to name another issuer; `id_token` signs whatever a test needs."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[str] = []
        self.jwks_mode = "ok"
        self.redirect_to = ""
        self.discovery_issuer: str | None = None
        self.cache_control: str | None = "max-age=600"
        self.published = [("rsa1", "RS256"), ("ec1", "ES256")]
        self.release = asyncio.Event()  # frees handlers told to hang
        # the token endpoint: ok, error (500), html, huge (10 MiB), hang, or refuse (400)
        self.token_mode = "ok"
        self.codes: dict[str, IssuedCode] = {}
        self.token_requests: list[tuple[dict[str, str], dict[str, str]]] = []  # form, headers
        self.clock: Any = None  # times of the ID tokens it issues (a FakeClock), else time

    def authorize(self, params: dict[str, str], *, sub: str = "user-123", **claims: Any) -> str:
        """Sign the user in as the authorization endpoint would for these request
        parameters; the code to send back. `claims` override the ID token's (None drops
        one); `_headers` and `_key` change its header and signing key, `_forge` makes the
        token from the claims itself (alg none, HS256, …)."""
        headers = claims.pop("_headers", {})
        key = claims.pop("_key", None)
        forge = claims.pop("_forge", None)
        code = secrets.token_urlsafe(24)
        self.codes[code] = IssuedCode(
            client_id=params["client_id"],
            redirect_uri=params["redirect_uri"],
            nonce=params.get("nonce"),
            challenge=params.get("code_challenge"),
            claims={"sub": sub, **claims},
            headers=headers,
            key=key,
            forge=forge,
        )
        return code

    def logout_token(self, *, now: float, key: str = "rsa1", **overrides: Any) -> str:
        """A Back-Channel Logout 1.0 logout token (None drops a claim)."""
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": IDP_CLIENT_ID,
            "iat": int(now),
            "exp": int(now) + 120,
            "jti": secrets.token_urlsafe(12),
            "events": {BACKCHANNEL_EVENT: {}},
            "sub": "user-123",
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        headers = {"kid": key, "typ": "logout+jwt"}
        return jwt.encode(claims, idp_key(key), algorithm="RS256", headers=headers)

    @property
    def issuer(self) -> str:
        return self.url

    def count(self, path: str) -> int:
        return sum(1 for p in self.requests if p == path)

    def id_token(
        self,
        *,
        now: float,
        alg: str = "RS256",
        kid: str | None = "rsa1",
        key: str | None = None,
        headers: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": IDP_CLIENT_ID,
            "sub": "user-123",
            "iat": int(now),
            "exp": int(now) + 600,
            "email": "ada@example.com",
            "email_verified": True,
            "groups": ["staff"],
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        header: dict[str, Any] = {"kid": kid} if kid is not None else {}
        header.update(headers or {})
        signer = idp_key(key or kid or "rsa1")
        return jwt.encode(claims, signer, algorithm=alg, headers=header)

    def app(self) -> web.Application:
        """Discovery at /.well-known/openid-configuration, the key set at /jwks."""

        async def discovery(request: web.Request) -> web.Response:
            self.requests.append(request.path)
            return web.json_response(
                {
                    "issuer": self.discovery_issuer or self.issuer,
                    "jwks_uri": f"{self.url}/jwks",
                    "authorization_endpoint": f"{self.url}/authorize",
                    "token_endpoint": f"{self.url}/token",
                    "end_session_endpoint": f"{self.url}/logout",
                    "backchannel_logout_supported": True,
                    "code_challenge_methods_supported": ["S256"],
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                }
            )

        async def token(request: web.Request) -> web.StreamResponse:
            self.requests.append(request.path)
            form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
            self.token_requests.append((form, dict(request.headers)))
            mode = self.token_mode
            if mode == "error":
                return web.json_response({"error": "server_error"}, status=500)
            if mode == "html":
                return web.Response(
                    text="<html><body>Maintenance</body></html>",
                    status=200,
                    content_type="text/html",
                )
            if mode == "hang":
                await self.release.wait()
            if mode == "huge":
                return await _huge(request)
            issued = self.codes.pop(form.get("code", ""), None)  # a code works once
            if mode == "refuse" or issued is None or not _pkce_ok(issued, form):
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "bad code"}, status=400
                )
            if form.get("redirect_uri") != issued.redirect_uri:
                return web.json_response({"error": "invalid_grant"}, status=400)
            now = self.clock() if self.clock is not None else time.time()
            access_token = secrets.token_urlsafe(24)
            claims = {"nonce": issued.nonce, "aud": issued.client_id, **issued.claims}
            claims.setdefault("at_hash", _at_hash(access_token))
            if issued.forge is not None:
                base = {"iss": self.issuer, "iat": int(now), "exp": int(now) + 600}
                forged = issued.forge({**base, **claims})
                return web.json_response({"access_token": access_token, "id_token": forged})
            kid = issued.headers.pop("kid", "rsa1")
            alg = issued.headers.pop("alg", "RS256")
            id_token = self.id_token(
                now=now, kid=kid, alg=alg, key=issued.key, headers=issued.headers, **claims
            )
            return web.json_response(
                {"access_token": access_token, "token_type": "Bearer", "id_token": id_token}
            )

        async def jwks(request: web.Request) -> web.StreamResponse:
            self.requests.append(request.path)
            mode = self.jwks_mode
            if mode == "error":
                return web.json_response({"error": "boom"}, status=500)
            if mode == "hang":
                await self.release.wait()
            if mode == "redirect":
                raise web.HTTPFound(self.redirect_to)
            if mode == "huge":
                response = web.StreamResponse(headers={"Content-Type": "application/json"})
                await response.prepare(request)
                try:
                    await response.write(b'{"keys": [')
                    for _ in range(10 * 16):  # 10 MiB in 64 KiB pieces
                        await response.write(b" " * 65536)
                    await response.write(b"]}")
                except (ConnectionError, RuntimeError):
                    pass  # the gateway stopped reading long before
                return response
            headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
            keys = [public_jwk(kid, alg) for kid, alg in self.published]
            return web.json_response({"keys": keys}, headers=headers)

        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", discovery)
        app.router.add_get("/jwks", jwks)
        app.router.add_post("/token", token)
        return app


def _pkce_ok(issued: IssuedCode, form: dict[str, str]) -> bool:
    verifier = form.get("code_verifier", "")
    digest = hashlib.sha256(verifier.encode()).digest()
    return issued.challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


async def _huge(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        await response.write(b'{"id_token": "')
        for _ in range(10 * 16):  # 10 MiB in 64 KiB pieces
            await response.write(b"a" * 65536)
        await response.write(b'"}')
    except (ConnectionError, RuntimeError):
        pass  # the gateway stopped reading long before
    return response
