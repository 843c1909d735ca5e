"""Demo OpenID provider for `make demo` and the sign-in tests: oidc-provider-mock (a third-party
OpenID Connect provider from PyPI: login form, discovery, JWKS, the code grant, end_session)
on 127.0.0.1:9200, with what it lacks to try silent re-login and back-channel logout:

* a browser session at the provider (cookie `demo_op_session`): signing in at its form
  starts one; a `prompt=none` request with a live session is answered with a code and no
  form, as real providers do (without one, the mock answers `login_required` itself); its
  end-session page ends it;
* logout tokens (Back-Channel Logout 1.0) signed with the mock's own key: `POST
  /demo/logout-token` (form `sub`, `aud`) answers one, and ending a session at the provider
  posts one to each `--backchannel-logout CLIENT_ID=URI`.

DEMO ONLY: it signs in whoever types a name. The mock keeps its signing key in its Flask
app's per-request globals (0.3.x): the version is checked at start. Its ID tokens carry no
`sid`, so its logout tokens name the user (`sub`).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import secrets
import sys
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterable
from importlib.metadata import version
from typing import Any

PORT = 9200
SESSION_COOKIE = "demo_op_session"
SESSION_TTL = 8 * 3600
TESTED = "0.3."  # the mock's releases whose internals (the signing key's place) this reads
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# Demo users offered as buttons on the provider's form; any other name signs in too.
USERS = {
    "ada": {
        "email": "ada@example.com",
        "email_verified": True,
        "name": "Ada Lovelace",
        "groups": ["staff"],
    },
    "grace": {"email": "grace@example.com", "email_verified": True, "name": "Grace Hopper"},
}
StartResponse = Callable[..., Any]
log = logging.getLogger("demo-op")


class ProviderSessions:
    """WSGI layer in front of the mock: its browser sessions and back-channel logouts."""

    def __init__(self, app: Any, backchannel: dict[str, str]):
        self._app = app
        self._backchannel = backchannel  # client id → back-channel logout URI
        self._sessions: dict[str, tuple[str, float]] = {}  # cookie → (sub, until)
        self.storage: Any = None  # the mock's storage (its signing key), seen at first request

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/oauth2/authorize" and method == "GET":
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            sub = self._session_sub(environ)
            if query.get("prompt") == ["none"] and sub is not None:
                return self._app(_as_form_post(environ, query, sub), start_response)
        if path == "/oauth2/authorize" and method == "POST":
            sub = _form(environ).get("sub")
            return self._app(environ, self._starting_session(start_response, sub))
        if path == "/oauth2/end_session/confirm" and method == "POST":
            ended = self._end_session(environ)
            return self._app(environ, _with_cookie(start_response, ended))
        return self._app(environ, start_response)

    def logout_token(self, sub: str, audience: str) -> str:
        """A logout token for `sub`, signed with the mock's own key (as in its JWKS)."""
        import jwt  # PyJWT, as the gateway verifies it

        key = self.storage.jwk
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": audience,
            "iat": now,
            "exp": now + 120,
            "jti": secrets.token_urlsafe(16),
            "sub": sub,
            "events": {BACKCHANNEL_EVENT: {}},
        }
        headers = {"kid": key.as_dict()["kid"], "typ": "logout+jwt"}
        return jwt.encode(claims, key.as_pem(is_private=True), algorithm="RS256", headers=headers)

    issuer = ""

    def _session_sub(self, environ: dict[str, Any]) -> str | None:
        cookie = _cookie(environ, SESSION_COOKIE)
        found = self._sessions.get(cookie or "")
        if found is None or found[1] < time.time():
            return None
        return found[0]

    def _starting_session(self, start_response: StartResponse, sub: str | None) -> StartResponse:
        def start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            location = dict((k.lower(), v) for k, v in headers).get("location", "")
            if status.startswith("302") and "code=" in location and sub:
                handle = secrets.token_urlsafe(24)
                self._sessions[handle] = (sub, time.time() + SESSION_TTL)
                headers = [*headers, ("Set-Cookie", _session_cookie(handle, SESSION_TTL))]
            return start_response(status, headers, *rest)

        return start

    def _end_session(self, environ: dict[str, Any]) -> str:
        handle = _cookie(environ, SESSION_COOKIE) or ""
        ended = self._sessions.pop(handle, None)
        if ended is not None:
            for client_id, uri in self._backchannel.items():
                self._send_logout(ended[0], client_id, uri)
        return _session_cookie("", 0)

    def _send_logout(self, sub: str, client_id: str, uri: str) -> None:
        body = urllib.parse.urlencode({"logout_token": self.logout_token(sub, client_id)})
        request = urllib.request.Request(  # noqa: S310 (a configured http(s) URI)
            uri, data=body.encode(), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
                log.info("back-channel logout sub=%s to %s: %s", sub, uri, answer.status)
        except OSError as exc:
            log.warning("back-channel logout sub=%s to %s failed: %s", sub, uri, exc)


def _as_form_post(environ: dict[str, Any], query: dict[str, list[str]], sub: str) -> dict[str, Any]:
    """The GET as the form's POST for the signed-in user (what the mock answers with a code)."""
    kept = {k: v for k, v in query.items() if k != "prompt"}
    body = urllib.parse.urlencode({"sub": sub}).encode()
    return {
        **environ,
        "REQUEST_METHOD": "POST",
        "QUERY_STRING": urllib.parse.urlencode(kept, doseq=True),
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }


def _form(environ: dict[str, Any]) -> dict[str, str]:
    """The urlencoded body, read and put back for the app."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))


def _cookie(environ: dict[str, Any], name: str) -> str | None:
    for pair in environ.get("HTTP_COOKIE", "").split(";"):
        key, _, value = pair.strip().partition("=")
        if key == name:
            return value
    return None


def _session_cookie(value: str, max_age: int) -> str:
    return f"{SESSION_COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax"


def _with_cookie(start_response: StartResponse, cookie: str) -> StartResponse:
    def start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
        return start_response(status, [*headers, ("Set-Cookie", cookie)], *rest)

    return start


def make_app(issuer: str, backchannel: dict[str, str]) -> Any:
    """The mock's Flask app (a WSGI app) behind the session layer, with /demo/logout-token."""
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http on loopback
    warnings.simplefilter("ignore", DeprecationWarning)
    import flask
    import oidc_provider_mock

    if not version("oidc-provider-mock").startswith(TESTED):
        raise SystemExit(f"demo_op: tested with oidc-provider-mock {TESTED}x only")
    users = [oidc_provider_mock.User(sub=sub, claims=claims) for sub, claims in USERS.items()]
    app = oidc_provider_mock.app(user_claims=users, require_nonce=True)
    app.debug = False
    layer = ProviderSessions(app.wsgi_app, backchannel)
    layer.issuer = issuer

    @app.before_request
    def keep_storage() -> None:
        layer.storage = flask.g.oidc_provider_mock_storage

    @app.post("/demo/logout-token")
    def logout_token() -> Any:
        """DEMO: a logout token for form `sub`, for client `aud` (a stand-in for the
        back-channel message a provider sends when a user's session ends)."""
        sub, audience = flask.request.form.get("sub"), flask.request.form.get("aud")
        if not sub or not audience:
            return flask.jsonify({"error": "invalid_request"}), 400
        return flask.jsonify({"logout_token": layer.logout_token(sub, audience)})

    app.wsgi_app = layer
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="demo OpenID provider (oidc-provider-mock)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument(
        "--backchannel-logout",
        action="append",
        default=[],
        metavar="CLIENT_ID=URI",
        help="post a logout token to URI when a session ends here (repeatable)",
    )
    args = parser.parse_args()
    backchannel = dict(item.split("=", 1) for item in args.backchannel_logout)
    logging.basicConfig(level=logging.INFO, format="demo-op %(levelname)s %(message)s")
    import werkzeug.serving

    issuer = f"http://{args.host}:{args.port}"
    app = make_app(issuer, backchannel)
    server = werkzeug.serving.make_server(args.host, args.port, app, threaded=True)
    print(f"demo-op: OpenID provider on {issuer}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
