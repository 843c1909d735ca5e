"""Sign-in at an identity provider, piece by piece: the settings that stop the start, the
login cookies (names, sealing, what a tampered or foreign cookie opens to), at_hash, and the
upstream never seeing the sign-in cookies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.browser.login_attempts import LoginAttempt, ProviderHint, SignInCookies
from gateway.browser.seal import AesGcmSeal
from gateway.browser.upstream_cookies import is_gateway_set_cookie, without_gateway_cookies
from gateway.config import BrowserSettings, ProviderLoginSettings, Settings
from gateway.tokens.code_flow_tokens import access_token_hash

PROVIDER = {
    "name": "corp",
    "issuer": "https://login.example",
    "discovery": True,
    "audiences": ["gw"],
    "login": {"client_id": "gw"},
}


def settings_with(provider: dict[str, Any], **browser: Any) -> Settings:
    return Settings.model_validate(
        {
            "keys": {
                "active": "k",
                "items": [{"kid": "k", "secret_file": "/dev/null", "alg": "HS256"}],
            },
            "browser": {
                "enabled": True,
                "seal_keys": [{"id": "s", "secret_env": "X"}],
                "public_url": "https://app.example",
                **browser,
            },
            "federation": {"providers": [provider]},
        }
    )


@pytest.mark.parametrize(
    ("provider", "browser", "says"),
    [
        ({**PROVIDER, "discovery": False, "jwks_uri": "https://l.example/k"}, {}, "discovery"),
        ({**PROVIDER, "audiences": ["other"]}, {}, "client_id must be one of audiences"),
        (PROVIDER, {"public_url": None}, "needs browser.public_url"),
        (PROVIDER, {"public_url": "https://app.example/path"}, "public_url"),
        (PROVIDER, {"seal_cookies": False}, "needs browser.seal_cookies"),
        ({**PROVIDER, "login": {"client_id": "gw", "scopes": ["email"]}}, {}, "include openid"),
        ({**PROVIDER, "login": {"client_id": "gw", "extra_params": {"state": "x"}}}, {}, "state"),
        (
            {**PROVIDER, "login": {"client_id": "gw", "extra_params": {"max_age": "1h"}}},
            {},
            "max_age",
        ),
        (
            {
                **PROVIDER,
                "login": {"client_id": "gw", "client_secret_env": "A", "private_key_file": "k"},
            },
            {},
            "at most one",
        ),
        (
            {**PROVIDER, "login": {"client_id": "gw", "token_auth_method": "private_key_jwt"}},
            {},
            "needs private_key_file",
        ),
        ({**PROVIDER, "login": None}, {"password_login": False}, "needs a provider with a login"),
    ],
)
def test_bad_sign_in_settings_stop_the_start(
    provider: dict[str, Any], browser: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        settings_with(provider, **browser)


def test_the_token_endpoint_authentication_follows_the_credential() -> None:
    assert ProviderLoginSettings(client_id="a").auth_method == "none"
    assert ProviderLoginSettings(client_id="a", client_secret_env="S").auth_method == (
        "client_secret_basic"
    )
    assert ProviderLoginSettings(client_id="a", private_key_file=Path("k")).auth_method == (
        "private_key_jwt"
    )


def cookies(secure: bool = True) -> SignInCookies:
    settings = BrowserSettings(secure=secure)
    return SignInCookies(settings, AesGcmSeal([("s", b"k" * 32)]), hint_lifetime=86400)


def test_each_attempt_has_its_own_sealed_cookie() -> None:
    jar = cookies()
    one = LoginAttempt.new("corp", "/a", silent=False, now=1000.0)
    two = LoginAttempt.new("corp", "/b", silent=True, now=1000.0)
    set_one, set_two = jar.attempt_cookie(one), jar.attempt_cookie(two)
    assert (
        set_one.startswith("__Host-gw_login_")
        and "Path=/; HttpOnly; SameSite=Lax; Secure" in set_one
    )
    assert set_one.partition("=")[0] != set_two.partition("=")[0]
    assert one.state not in set_one and one.verifier not in set_one  # sealed
    header = "; ".join(c.partition(";")[0] for c in (set_one, set_two))
    assert jar.attempt([header], one.state) == one
    assert jar.attempt([header], two.state) == two
    assert jar.attempt([header], "another-state") is None
    name = set_one.partition("=")[0]
    assert jar.attempt([f"{name}=s.AAAA"], one.state) is None  # tampered
    assert jar.attempt([header, header], one.state) is None  # sent twice: never pick one
    assert one.code_challenge != one.verifier and len(one.code_challenge) == 43


def test_the_provider_cookie_keeps_the_provider_and_its_id_token() -> None:
    jar = cookies(secure=False)
    value = jar.provider_cookie(ProviderHint("corp", "a.b.c"))
    assert value.startswith("gw_idp=") and "Secure" not in value
    assert jar.provider_hint([value.partition(";")[0]]) == ProviderHint("corp", "a.b.c")
    huge = jar.provider_cookie(ProviderHint("corp", "x" * 5000))
    assert len(huge) < 4096
    assert jar.provider_hint([huge.partition(";")[0]]) == ProviderHint("corp", None)


def test_at_hash_is_the_left_half_of_the_access_tokens_hash() -> None:
    # as another implementation (authlib, in oidc-provider-mock) computed it for an RS256 token
    token = "c0GIY2HxA1jaFufaSGTsVgB0NqEpn5ZnzQEdYMo7qE"
    assert access_token_hash(token, "RS256") == "bGmZxfrZf2U42S7M7ElOIA"


def test_the_upstream_never_sees_the_sign_in_cookies() -> None:
    names = frozenset({b"gw_at", b"gw_rt", b"gw_idp"})
    sent = [b"a=1; gw_login_abc=x; gw_idp=y; gw_login=z; b=2"]
    assert without_gateway_cookies(sent, names, (b"gw_login_",)) == b"a=1; gw_login=z; b=2"
    assert is_gateway_set_cookie("GW_LOGIN_x=1; Path=/", frozenset(), ("gw_login_",))
