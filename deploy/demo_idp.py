"""Demo identity provider for `make demo`: an OIDC issuer on 127.0.0.1:9100 with a discovery
document, a JWKS and a token endpoint that signs an ID token (and an access token for the
demo API, audience `demo-api`) for whoever asks.

DEMO ONLY: it checks no password. It stands in for Google, Okta or Cognito so that the
gateway's token exchange (RFC 8693) can be tried locally:

    ID_TOKEN=$(curl -s -X POST http://127.0.0.1:9100/token -d username=carol | jq -r .id_token)
    curl -s -X POST http://127.0.0.1:8080/auth/token \\
      -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \\
      -d subject_token_type=urn:ietf:params:oauth:token-type:id_token \\
      -d subject_token=$ID_TOKEN
"""

from __future__ import annotations

import argparse
import re
import secrets
import time
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CLIENT_ID = "demo-app"  # the audience of its ID tokens: the gateway's config names it
API_AUDIENCE = "demo-api"  # the audience of its access tokens: routes that accept demo-idp
TOKEN_TTL = 600
USERNAME = re.compile(r"^[a-z0-9._-]{1,64}$")
# Groups the demo gives some users; the gateway's roles map turns `staff` into `reports`.
GROUPS = {"carol": ["staff"], "alice": ["staff"]}
ISSUER: web.AppKey[str] = web.AppKey("issuer", str)
SIGNER: web.AppKey[tuple[str, Any]] = web.AppKey("signer", tuple)


async def discovery(request: web.Request) -> web.Response:
    issuer = request.app[ISSUER]
    return web.json_response(
        {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks",
            "token_endpoint": f"{issuer}/token",
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["id_token"],
        },
        headers={"Cache-Control": "max-age=300"},
    )


async def jwks(request: web.Request) -> web.Response:
    kid, key = request.app[SIGNER]
    public = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}
    return web.json_response(
        {"keys": [{**public, "alg": "RS256", "use": "sig"}]},
        headers={"Cache-Control": "max-age=300"},
    )


async def token(request: web.Request) -> web.Response:
    """POST username=NAME (form or JSON): an ID token for NAME, no questions asked."""
    data: Any = (
        await request.json() if request.content_type == "application/json" else await request.post()
    )
    username = str(data.get("username", "carol"))
    if not USERNAME.match(username):
        return web.json_response(
            {"error": "invalid_request", "error_description": "username: [a-z0-9._-]{1,64}"},
            status=400,
        )
    kid, key = request.app[SIGNER]
    now = int(time.time())
    claims = {
        "iss": request.app[ISSUER],
        "aud": CLIENT_ID,
        "sub": username,
        "iat": now,
        "exp": now + TOKEN_TTL,
        "email": f"{username}@example.com",
        "email_verified": True,
        "name": username.capitalize(),
        "groups": GROUPS.get(username, []),
    }
    id_token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})
    access = {
        "iss": claims["iss"],
        "aud": API_AUDIENCE,
        "sub": username,
        "client_id": CLIENT_ID,
        "iat": now,
        "exp": now + TOKEN_TTL,
        "jti": secrets.token_urlsafe(12),
        "scope": "profile",
        "groups": claims["groups"],
    }
    access_token = jwt.encode(access, key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})
    return web.json_response(
        {
            "id_token": id_token,
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL,
        },
        headers={"Cache-Control": "no-store"},
    )


def make_app(issuer: str) -> web.Application:
    app = web.Application()
    app[ISSUER] = issuer.rstrip("/")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    app[SIGNER] = (f"demo-{secrets.token_hex(4)}", key)  # a new key (and kid) every start
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    app.router.add_post("/token", token)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="demo OIDC identity provider (DEMO ONLY)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    issuer = f"http://{args.host}:{args.port}"
    web.run_app(make_app(issuer), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
