"""A fake OpenID Connect identity provider on loopback (discovery, JWKS, a signer of ID tokens)
and the token-exchange URNs."""

from __future__ import annotations

import asyncio
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
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                }
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
        return app
