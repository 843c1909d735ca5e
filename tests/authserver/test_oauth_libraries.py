"""Unmodified OAuth client libraries against the running gateway, without a browser: authlib
(httpx) and requests-oauth2client (requests, metadata discovery) fetch client credentials
tokens with a client secret and with a private_key_jwt assertion, and call the API with
them. The code flow with PKCE, through the login page in Chromium, is in
tests/browser/test_oauth_apps_chromium.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import jwt
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from cryptography.hazmat.primitives import serialization

from gateway.config import Settings
from tests.support.oauth_clients import (
    MACHINE_SECRET,
    client_key,
    gateway_at,
    jwt_client,
    machine_client,
    write_jwks,
)
from tests.support.recording_upstream import Upstream


@pytest.fixture
def machine_settings(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> Callable[[str], Settings]:
    jwks = write_jwks(tmp_path / "jwks.json", "client-key")

    def make(base: str) -> Settings:
        return settings_factory(
            tokens={"issuer": base},
            clients=[machine_client("batch"), jwt_client("signer", jwks)],
        )

    return make


def private_jwk(name: str) -> Any:
    """The test key `name` as authlib takes a private key (joserfc's ECKey)."""
    from joserfc.jwk import ECKey

    pem = client_key(name).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ECKey.import_key(pem)


async def test_authlib_client_credentials_and_private_key_jwt(
    machine_settings: Callable[[str], Settings], upstream: Upstream
) -> None:
    async with gateway_at(machine_settings, redis=fakeredis.FakeAsyncRedis()) as base:
        token_url = f"{base}/auth/token"
        async with AsyncOAuth2Client(
            client_id="batch", client_secret=MACHINE_SECRET, scope="read:scoped"
        ) as oauth:
            token = await oauth.fetch_token(token_url, grant_type="client_credentials")
            assert token["scope"] == "read:scoped" and "refresh_token" not in token
            resp = await oauth.get(f"{base}/scoped/report")
            assert resp.status_code == 200
        assert upstream.headers_of()["x-user-id"] == ["client:batch"]

        async with AsyncOAuth2Client(
            client_id="signer",
            client_secret=private_jwk("client-key"),
            token_endpoint_auth_method=PrivateKeyJWT(token_url, alg="ES256"),
        ) as oauth:
            token = await oauth.fetch_token(token_url, grant_type="client_credentials")
            claims = jwt.decode(token["access_token"], options={"verify_signature": False})
            assert claims["sub"] == "client:signer"
            assert (await oauth.get(f"{base}/api/x")).status_code == 200

        async with AsyncOAuth2Client(
            client_id="signer",
            client_secret=private_jwk("attacker"),
            token_endpoint_auth_method=PrivateKeyJWT(token_url, alg="ES256"),
        ) as oauth:
            with pytest.raises(Exception, match="invalid_client"):
                await oauth.fetch_token(token_url, grant_type="client_credentials")


def requests_oauth2client_flows(base: str) -> dict[str, Any]:
    """requests-oauth2client (sync: run in a thread while the gateway serves on the loop)."""
    from jwskate import Jwk
    from requests_oauth2client import ClientSecretBasic, OAuth2Client, PrivateKeyJwt

    discovered = OAuth2Client.from_discovery_endpoint(
        f"{base}/.well-known/oauth-authorization-server",
        issuer=base,
        auth=ClientSecretBasic("batch", MACHINE_SECRET),
        testing=True,  # plain http on loopback
    )
    secret_token = discovered.client_credentials(scope="read:scoped write:scoped")
    key = Jwk.from_cryptography_key(client_key("client-key")).with_kid_thumbprint()
    signer = OAuth2Client(
        token_endpoint=discovered.token_endpoint,
        auth=PrivateKeyJwt("signer", key.with_usage_parameters(alg="ES256").to_dict()),
        testing=True,
    )
    key_token = signer.client_credentials()
    with httpx.Client() as http:
        api = http.get(f"{base}/api/x", headers={"Authorization": f"Bearer {key_token}"})
    return {
        "metadata": discovered.authorization_server_metadata
        if hasattr(discovered, "authorization_server_metadata")
        else None,
        "secret_scope": secret_token.scope,
        "secret_access": str(secret_token),
        "key_access": str(key_token),
        "api_status": api.status_code,
    }


async def test_requests_oauth2client_discovery_client_credentials_and_private_key_jwt(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    # the library names keys by their thumbprint: the JWKS file says the same kid
    from jwskate import Jwk

    jwk = Jwk.from_cryptography_key(client_key("client-key").public_key()).with_kid_thumbprint()
    jwks = tmp_path / "thumbprint-jwks.json"
    jwks.write_text('{"keys": [' + jwk.with_usage_parameters(alg="ES256").to_json() + "]}")

    def make(base: str) -> Settings:
        return settings_factory(
            tokens={"issuer": base},
            clients=[machine_client("batch"), jwt_client("signer", jwks)],
        )

    async with gateway_at(make, redis=fakeredis.FakeAsyncRedis()) as base:
        result = await asyncio.to_thread(requests_oauth2client_flows, base)
    assert result["secret_scope"] == "read:scoped write:scoped"
    secret_claims = jwt.decode(result["secret_access"], options={"verify_signature": False})
    assert secret_claims["sub"] == "client:batch"
    key_claims = jwt.decode(result["key_access"], options={"verify_signature": False})
    assert key_claims["sub"] == "client:signer"
    assert result["api_status"] == 200
