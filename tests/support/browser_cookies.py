"""Browser mode as the tests run it: the cookie names, the `browser` section, a hand-kept cookie
jar and the JSON sign-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from aiohttp import ClientResponse

from tests.support.gateway_client import GatewayClient

ACCESS_COOKIE: Final = "gw_at"
REFRESH_COOKIE: Final = "gw_rt"
APP_ORIGIN: Final = "http://app.example"


def browser_section(seal_key_file: Path, **overrides: Any) -> dict[str, Any]:
    """Browser mode as the demo runs it on plain http: no Secure, no __Host- names."""
    return {
        "enabled": True,
        "secure": False,
        "access_cookie": ACCESS_COOKIE,
        "refresh_cookie": REFRESH_COOKIE,
        "allowed_origins": [APP_ORIGIN],
        "seal_keys": [{"id": "k1", "secret_file": str(seal_key_file)}],
        **overrides,
    }


class CookieJar:
    """What a browser would keep of the gateway's Set-Cookie answers, kept by hand so each
    test controls exactly which Cookie header it sends."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}
        self.attributes: dict[str, str] = {}  # name → the attributes of its last Set-Cookie

    def update(self, response: ClientResponse) -> None:
        for header in response.headers.getall("Set-Cookie", []):
            pair, _, attributes = header.partition(";")
            name, _, value = pair.partition("=")
            self.attributes[name] = attributes.strip()
            if "Max-Age=0" in attributes:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def header(self, *extra: str) -> dict[str, str]:
        pairs = [*extra, *(f"{n}={v}" for n, v in self.cookies.items())]
        return {"Cookie": "; ".join(pairs)} if pairs else {}


async def browser_login(
    client: GatewayClient, user: str = "alice", password: str = "wonderland", **extra: Any
) -> tuple[CookieJar, dict[str, Any]]:
    """JSON sign-in at /auth/browser/login: the cookies it set and the identity it answered."""
    resp = await client.post(
        "/auth/browser/login", json={"username": user, "password": password, **extra}
    )
    assert resp.status == 200, await resp.text()
    jar = CookieJar()
    jar.update(resp)
    return jar, await resp.json()
