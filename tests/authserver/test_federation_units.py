"""Pure pieces of federation: provider configuration rules, the fetch boundary's error mapping,
Cache-Control, JWKS parsing, roles and copied claims."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from gateway.config import ProviderRolesSettings, Settings
from gateway.outbound.json_fetch import FetchFailed, cache_max_age, fetch_json
from gateway.tokens.provider_keys import parse_jwks
from gateway.tokens.providers import copy_claims, provider_roles
from tests.support.identity_provider import public_jwk

PROVIDER = {"name": "idp", "issuer": "https://idp.example", "discovery": True, "audiences": ["a"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"issuer": "http://idp.example"}, "http:// is accepted on loopback only"),
        ({"issuer": "https://idp.example/?x=1"}, "without query"),
        ({"name": "Google"}, "String should match pattern"),
        ({"audiences": []}, "at least 1 item"),
        ({"algorithms": ["HS256"]}, "Input should be"),
        ({"algorithms": ["none"]}, "Input should be"),
        ({"discovery": False}, "give jwks_uri or discovery: true"),
        ({"jwks_uri": "https://idp.example/jwks"}, "give jwks_uri or discovery: true"),
        ({"copy_claims": ["email", "sub"]}, "set by the gateway itself"),
    ],
)
def test_provider_configuration_rules(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(federation={"providers": [{**PROVIDER, **change}]})  # type: ignore[arg-type]


def test_loopback_http_issuers_are_allowed_for_development() -> None:
    for issuer in ("http://127.0.0.1:9100", "http://localhost:9100/realm", "http://[::1]:9"):
        Settings(federation={"providers": [{**PROVIDER, "issuer": issuer}]})  # type: ignore[arg-type]


def test_providers_are_unique_and_never_the_gateway_itself() -> None:
    twice = [PROVIDER, {**PROVIDER, "name": "other"}]
    with pytest.raises(ValidationError, match="two providers share a issuer"):
        Settings(federation={"providers": twice})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="the gateway's own issuer"):
        Settings(
            tokens={"issuer": "https://idp.example/"},  # type: ignore[arg-type]
            federation={"providers": [PROVIDER]},  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("public, max-age=3600", 3600.0),
        ("max-age=60, must-revalidate", 60.0),
        ('max-age="120"', 120.0),
        ("no-cache", 0.0),
        ("private, no-store, max-age=3600", 0.0),
        ("s-maxage=600", None),
        ("max-age=soon", None),
    ],
)
def test_cache_control(header: str | None, seconds: float | None) -> None:
    assert cache_max_age(header) == seconds


class _Raising:
    """A client session whose requests fail with `error` (the fetch boundary's input)."""

    def __init__(self, error: BaseException):
        self._error = error

    def get(self, *_args: Any, **_kwargs: Any) -> Any:
        error = self._error

        class Context:
            async def __aenter__(self) -> Any:
                raise error

            async def __aexit__(self, *_: Any) -> None:
                return None

        return Context()


def _subclasses(cls: type[BaseException]) -> list[type[BaseException]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


def _instance(kind: type[BaseException]) -> BaseException:
    try:
        return kind()
    except TypeError:
        return kind.__new__(kind)


@pytest.mark.parametrize(
    "kind",
    [*_subclasses(aiohttp.ClientError), asyncio.TimeoutError, ConnectionResetError, OSError],
    ids=lambda k: k.__name__,
)
async def test_every_client_error_is_a_failed_fetch(kind: type[BaseException]) -> None:
    session: Any = _Raising(_instance(kind))
    with pytest.raises(FetchFailed) as failed:
        await fetch_json(session, "https://idp.example/jwks", timeout=1, max_size=1024)
    expected = "timeout" if issubclass(kind, TimeoutError) else "unreachable"
    assert failed.value.reason == expected


def test_jwks_parsing_keeps_usable_signature_keys_only() -> None:
    rsa_key, ec_key = public_jwk("rsa1", "RS256"), public_jwk("ec1", "ES256")
    document = {
        "keys": [
            rsa_key,
            ec_key,
            {**public_jwk("rsa2", "RS256"), "use": "enc"},  # an encryption key
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},  # a shared secret: never
            {"kty": "RSA", "kid": "broken", "n": "AQAB"},  # unparsable
            "not a key",
        ]
    }
    keys = parse_jwks(document, frozenset({"RS256", "ES256"}))
    assert set(keys) == {"rsa1", "ec1"}
    assert keys["rsa1"][0].algorithms == {"RS256"}  # the JWK's own alg narrows the type's
    only_rsa = parse_jwks(document, frozenset({"RS256"}))
    assert set(only_rsa) == {"rsa1"}
    with pytest.raises(FetchFailed, match="no_usable_keys"):
        parse_jwks({"keys": [ec_key]}, frozenset({"RS256"}))
    with pytest.raises(FetchFailed, match="invalid_jwks"):
        parse_jwks({"keys": "nope"}, frozenset({"RS256"}))


def test_roles_and_copied_claims() -> None:
    mapped = ProviderRolesSettings(default=["user"], from_claim="groups", map={"staff": ["ops"]})
    assert provider_roles(mapped, {"groups": ["staff", "other"]}) == ("user", "ops")
    assert provider_roles(mapped, {"groups": "staff other"}) == ("user", "ops")
    assert provider_roles(mapped, {"groups": 5}) == ("user",)
    plain = ProviderRolesSettings(from_claim="cognito:groups")
    assert provider_roles(plain, {"cognito:groups": ["a", "a", "b"]}) == ("a", "b")
    claims = {"email": "x@y", "nested": {"a": 1}, "tags": ["a", 1], "sub": "s", "none": None}
    assert copy_claims(["email", "nested", "tags", "sub", "none", "absent"], claims) == {
        "email": "x@y",
        "tags": ["a", 1],
    }
