"""Demo native app for `make demo`: signs a user in with the authorization code flow and PKCE
(RFC 8252: the system browser, a loopback redirect on a port of its own), then calls the API
with the access token, refreshes it and revokes the session. Standard library only, so every
step of the protocol is in sight:

    .venv/bin/python deploy/demo_app.py            # opens the gateway's sign-in page

The gateway (config.yaml) registers it as the public client `demo-app` with the redirect
URI http://127.0.0.1/callback, which matches any loopback port.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import threading
import urllib.parse
import urllib.request
import webbrowser
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

CLIENT_ID = "demo-app"


def post_form(url: str, form: dict[str, str]) -> dict[str, Any]:
    data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, method="POST")  # noqa: S310 (http URLs)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    return json.loads(body) if body else {}


def main() -> int:
    parser = argparse.ArgumentParser(description="demo OAuth app (code flow with PKCE)")
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--no-browser", action="store_true", help="print the URL only")
    args = parser.parse_args()
    gateway = args.gateway.rstrip("/")
    received: dict[str, str] = {}
    done = threading.Event()

    class Callback(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = urllib.parse.urlsplit(self.path).query
            received.update(dict(urllib.parse.parse_qsl(query)))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"Signed in: you can close this tab and go back to the terminal.")
            done.set()

        def log_message(self, *_: Any) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Callback)  # a port of its own (RFC 8252 §7.3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    redirect_uri = f"http://127.0.0.1:{server.server_port}/callback"
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    state = secrets.token_urlsafe(16)
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": redirect_uri,
            "scope": "openid reports",
            "state": state,
            "nonce": secrets.token_urlsafe(16),
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
    )
    url = f"{gateway}/auth/authorize?{query}"
    print(f"sign in (alice / wonderland) at:\n  {url}\n")
    if not args.no_browser:
        webbrowser.open(url)
    if not done.wait(300):
        print("no sign-in within 5 minutes")
        return 1
    server.shutdown()
    if received.get("state") != state or "code" not in received:
        print(f"the sign-in did not succeed: {received}")
        return 1
    token = post_form(
        f"{gateway}/auth/token",
        {
            "grant_type": "authorization_code",
            "code": received["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": CLIENT_ID,
        },
    )
    if "access_token" not in token:
        print(f"token request refused: {token}")
        return 1
    print(f"tokens received: scope {token.get('scope')!r}, session {token['session_id']}")
    request = urllib.request.Request(  # noqa: S310
        f"{gateway}/api/demo-app", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        seen = json.loads(response.read())
    headers = {name.lower(): value for name, value in seen["headers"]}
    print(f"the API saw X-User-Id {headers.get('x-user-id')!r}")
    refreshed = post_form(
        f"{gateway}/auth/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": CLIENT_ID,
        },
    )
    print(f"refreshed: new access token until {refreshed.get('access_token_expires_at')}")
    post_form(
        f"{gateway}/auth/revoke", {"token": refreshed["refresh_token"], "client_id": CLIENT_ID}
    )
    print("signed out: the session is revoked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
