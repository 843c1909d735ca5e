"""Tables of the client registry's rules: what a registration may say, which redirect URIs
match, which credentials a request presents (one method at a time), and the clients file."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.authserver.client_auth import presented_client
from gateway.authserver.client_registry import (
    client_from_settings,
    load_clients_file,
    remove_client,
    save_client,
)
from gateway.authserver.scopes import narrowed
from gateway.config import ClientSettings, Settings
from gateway.errors import BasicClientRejected, ConfigError, InvalidRequest, InvalidScope
from gateway.outbound.http_client import SharedClientSession
from tests.support.oauth_clients import app_client, sha256_hash

HASH = sha256_hash("a-secret-of-some-length")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "public", "secret_hash": HASH}, "public client has no secret"),
        ({"type": "public", "grants": ["client_credentials"]}, "confidential clients only"),
        ({"grants": ["client_credentials"]}, "exactly one of secret_hash, secret_file"),
        (
            {
                "grants": ["client_credentials"],
                "auth_method": "private_key_jwt",
                "secret_hash": HASH,
            },
            "exactly one of jwks_file, jwks_uri",
        ),
        ({"grants": ["client_credentials"], "auth_method": "none"}, "authenticates"),
        ({"secret_hash": HASH}, "authorization_code needs at least one redirect_uri"),
        ({"secret_hash": "md5:abc", "grants": ["client_credentials"]}, "sha256:"),
        ({"redirect_uris": ["http://app.example/cb"], "secret_hash": HASH}, "loopback"),
        ({"redirect_uris": ["https://app.example/cb#x"], "secret_hash": HASH}, "fragment"),
        ({"redirect_uris": ["javascript:alert(1)"], "secret_hash": HASH}, "private-use"),
        ({"redirect_uris": ["myapp:/cb"], "secret_hash": HASH}, "private-use"),
        (
            {
                "jwks_uri": "http://keys.example/jwks",
                "auth_method": "private_key_jwt",
                "grants": ["client_credentials"],
            },
            "loopback",
        ),
        (
            {"scopes": ["has space"], "grants": ["client_credentials"], "secret_hash": HASH},
            "scope token",
        ),
        ({"id": "bad id", "grants": ["client_credentials"], "secret_hash": HASH}, "pattern"),
    ],
)
def test_registrations_that_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ClientSettings(**{"id": "c", **fields})


def test_registrations_that_are_accepted() -> None:
    native = ClientSettings(
        id="native", type="public", redirect_uris=["com.example.app:/oauth", "http://[::1]/cb"]
    )
    assert native.method == "none"
    web = ClientSettings(id="web", redirect_uris=["https://app.example/cb"], secret_hash=HASH)
    assert web.method == "client_secret_basic"


def test_clients_need_browser_sign_in_and_a_key(key_files: dict[str, Path]) -> None:
    keys: Any = {
        "active": "k",
        "items": [{"kid": "k", "private_key_file": str(key_files["EdDSA"])}],
    }
    with pytest.raises(ValidationError, match=r"browser\.enabled"):
        Settings(
            keys=keys,
            clients=[app_client()],
        )
    with pytest.raises(ValidationError, match="signing key"):
        Settings(clients=[ClientSettings(id="m", grants=["client_credentials"], secret_hash=HASH)])
    two = ClientSettings(id="m", grants=["client_credentials"], secret_hash=HASH)
    with pytest.raises(ValidationError, match="share an id"):
        Settings(
            keys=keys,
            clients=[two, two],
        )


def _client(settings: ClientSettings) -> Any:
    return client_from_settings(
        settings, Settings(), SharedClientSession(Settings().proxy), clock=lambda: 0.0
    )


@pytest.mark.parametrize(
    ("uri", "public", "confidential"),
    [
        ("http://127.0.0.1/callback", True, True),
        ("http://127.0.0.1:8123/callback", True, False),  # any port, for public clients only
        ("http://127.0.0.1:65536/callback", False, False),
        ("http://127.0.0.1:0/callback", False, False),
        ("http://127.0.0.1:8123/callback/", False, False),
        ("http://127.0.0.1:8123/callback?x=1", False, False),
        ("http://127.0.0.1:8123/Callback", False, False),
        ("http://localhost:8123/callback", False, False),
        ("https://127.0.0.1:8123/callback", False, False),
        ("http://127.0.0.1.evil.example/callback", False, False),
        ("http://127.0.0.1@evil.example/callback", False, False),
    ],
)
def test_redirect_uri_matching(uri: str, public: bool, confidential: bool) -> None:
    app = _client(app_client(redirect_uris=["http://127.0.0.1/callback"]))
    web = _client(
        app_client(
            type="confidential", secret_hash=HASH, redirect_uris=["http://127.0.0.1/callback"]
        )
    )
    assert app.redirect_matches(uri) is public
    assert web.redirect_matches(uri) is confidential


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_presented_credentials() -> None:
    basic = [_basic("c", "s")]
    assert presented_client(basic, {}, realm="r") == presented_client(
        basic, {"client_id": "c"}, realm="r"
    )
    assert presented_client([], {"client_id": "c"}, realm="r").method == "none"  # type: ignore[union-attr]
    assert presented_client([], {}, realm="r") is None
    assert presented_client(["Bearer x"], {}, realm="r") is None
    post = presented_client([], {"client_id": "c", "client_secret": "s"}, realm="r")
    assert post is not None and post.method == "client_secret_post"
    for authorization, params in (
        (basic, {"client_secret": "s"}),
        (basic, {"client_id": "other"}),
        (basic, {"client_assertion": "x", "client_assertion_type": "t"}),
        ([], {"client_secret": "s"}),
        ([], {"client_assertion": "x.y.z", "client_assertion_type": "urn:other"}),
        ([], {"client_id": "c" * 65}),
    ):
        with pytest.raises(InvalidRequest):
            presented_client(authorization, params, realm="r")
    with pytest.raises(BasicClientRejected):
        presented_client(["Basic !!!"], {}, realm="r")


@pytest.mark.parametrize(
    ("requested", "allowed", "granted"),
    [
        (None, ["a", "b"], "a b"),
        ("a", ["a", "b"], "a"),
        ("b a a", ["a", "b"], "b a"),
        (None, [], None),
    ],
)
def test_scopes_are_narrowed(
    requested: str | None, allowed: list[str], granted: str | None
) -> None:
    assert narrowed(requested, allowed) == granted


@pytest.mark.parametrize("requested", ["a c", "c", "a\tb", " ", "x" * 2000])
def test_scopes_are_never_widened(requested: str) -> None:
    with pytest.raises(InvalidScope):
        narrowed(requested, ["a", "b"])


def test_the_clients_file(tmp_path: Path) -> None:
    path = tmp_path / "clients.yaml"
    save_client(path, ClientSettings(id="m", grants=["client_credentials"], secret_hash=HASH))
    save_client(
        path, ClientSettings(id="m", grants=["client_credentials"], secret_hash=HASH, roles=["r"])
    )
    save_client(path, ClientSettings(id="p", type="public", grants=["password"]))
    loaded = load_clients_file(path)
    assert [(c.id, c.roles) for c in loaded] == [("m", ["r"]), ("p", [])]
    assert remove_client(path, "m") and not remove_client(path, "m")
    path.write_text("clients:\n  - id: x\n    type: public\n    secret_hash: " + HASH + "\n")
    with pytest.raises(ConfigError, match=r"clients\.yaml"):
        load_clients_file(path)
    path.write_text("clients: {}\n")
    with pytest.raises(ConfigError, match="'clients' list"):
        load_clients_file(path)
