"""Sign-in at an identity provider as the tests drive it with aiohttp (the fake provider of
tests/support/identity_provider.py): the provider's section with a `login` block, a browser
starting a sign-in, coming back to the callback, and signing in in one go."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from aiohttp import ClientResponse

from tests.support.browser_cookies import ACCESS_COOKIE, REFRESH_COOKIE, CookieJar
from tests.support.gateway_client import GatewayClient
from tests.support.identity_provider import IDP_CLIENT_ID, FakeIdentityProvider

PUBLIC_URL: Final = "http://gateway.test"
CALLBACK: Final = "/auth/browser/callback/idp"
NAVIGATE: Final = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
CHROME: Final = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
# The `sign_in_gateway` fixture: the gateway offering the fake provider for sign-in;
# `login=` and `browser=` override keys of the login block and of the browser section.
SignInGateway = Callable[..., Awaitable[GatewayClient]]


def sign_in_provider(idp: FakeIdentityProvider, secret_file: Path, **login: Any) -> dict[str, Any]:
    """The fake provider as `federation.providers[]` entry `idp`, with a login block."""
    return {
        "name": "idp",
        "issuer": idp.issuer,
        "discovery": True,
        "audiences": [IDP_CLIENT_ID],
        "algorithms": ["RS256", "ES256"],
        "roles": {"default": ["user"], "from_claim": "groups", "map": {"staff": ["reports"]}},
        "copy_claims": ["email"],
        "login": {
            "client_id": IDP_CLIENT_ID,
            "client_secret_file": str(secret_file),
            "display_name": "Example SSO",
            **login,
        },
    }


async def start(
    client: GatewayClient, jar: CookieJar, *, return_to: str = "/app/", silent: bool = False
) -> dict[str, str]:
    """GET /auth/browser/login/idp: the authorization request's parameters (asserting the
    302 to the provider); the attempt cookie goes into `jar`."""
    query = {"return_to": return_to, **({"prompt": "none"} if silent else {})}
    resp = await client.get(
        "/auth/browser/login/idp", params=query, headers=jar.header(), allow_redirects=False
    )
    assert resp.status == 302, await resp.text()
    jar.update(resp)
    location = urlsplit(resp.headers["Location"])
    assert location.path == "/authorize"
    return dict(parse_qsl(location.query))


async def back(client: GatewayClient, jar: CookieJar, **query: str) -> ClientResponse:
    """The browser comes back from the provider to the callback with `query`."""
    resp = await client.get(
        CALLBACK,
        params=query,
        headers={**jar.header(), "User-Agent": CHROME, **NAVIGATE},
        allow_redirects=False,
    )
    jar.update(resp)
    return resp


async def signed_in(
    client: GatewayClient, idp: FakeIdentityProvider, jar: CookieJar | None = None, **claims: Any
) -> tuple[CookieJar, ClientResponse]:
    """A whole sign-in (the provider signs the user in at once; `claims` shape its ID token)."""
    jar = jar or CookieJar()
    params = await start(client, jar)
    code = idp.authorize(params, **claims)
    return jar, await back(client, jar, code=code, state=params["state"])


def no_session_cookies(resp: ClientResponse) -> bool:
    names = [c.partition("=")[0] for c in resp.headers.getall("Set-Cookie", [])]
    return ACCESS_COOKIE not in names and REFRESH_COOKIE not in names
