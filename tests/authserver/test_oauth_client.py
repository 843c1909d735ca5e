"""An unmodified OAuth 2.0 client library (authlib + httpx) drives the token endpoints."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client

from gateway.config import Settings
from tests.support.gateway_client import GatewayClient
from tests.support.gateway_settings import auth_section
from tests.support.oauth_clients import password_client
from tests.support.recording_upstream import Upstream


@pytest.fixture
def auth_settings(settings_factory: Callable[..., Settings], users_file: Path) -> Settings:
    """The demo users, and `demo-cli`: a public client registered for the password grant."""
    return settings_factory(
        auth=auth_section(users_file),
        tokens={"refresh_reuse_grace": 10},
        clients=[password_client("demo-cli")],
    )


async def test_password_grant_auto_refresh_and_revoke(
    client: GatewayClient, upstream: Upstream
) -> None:
    base = str(client.make_url("")).rstrip("/")
    updates: list[dict[str, Any]] = []

    async def remember(token: dict[str, Any], refresh_token: str | None = None, **_: Any) -> None:
        updates.append(token)

    async with AsyncOAuth2Client(
        client_id="demo-cli",
        token_endpoint=f"{base}/auth/token",
        token_endpoint_auth_method="none",
        update_token=remember,
    ) as oauth:
        token = await oauth.fetch_token(
            f"{base}/auth/token", grant_type="password", username="alice", password="wonderland"
        )
        assert token["token_type"] == "Bearer"
        resp = await oauth.get(f"{base}/api/profile")
        assert resp.status_code == 200
        assert upstream.headers_of()["x-user-id"] == ["alice"]

        # the client believes its access token expired: it refreshes by itself
        oauth.token["expires_at"] = int(time.time()) - 60
        resp = await oauth.get(f"{base}/api/profile")
        assert resp.status_code == 200
        assert len(updates) == 1
        assert updates[0]["refresh_token"] != token["refresh_token"]

        sessions = await oauth.get(f"{base}/auth/sessions")
        assert sessions.json()["sessions"][0]["client_id"] == "demo-cli"

        resp = await oauth.revoke_token(
            f"{base}/auth/revoke",
            token=oauth.token["refresh_token"],
            token_type_hint="refresh_token",
        )
        assert resp.status_code == 200
        resp = await oauth.get(f"{base}/api/profile")
        assert resp.status_code == 401  # the session ended with its refresh token
