"""/.well-known/jwks.json is cacheable: an ETag, 304 on If-None-Match, a max-age shorter than
the wait docs/endpoints.md asks for between publishing a key and signing with it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.authserver.wellknown import JWKS_MAX_AGE
from gateway.config import Settings
from tests.support.gateway_client import GatewayClient, GatewayFactory
from tests.support.repository import DOCS

ENDPOINTS_PAGE = DOCS / "endpoints.md"


async def test_jwks_has_an_etag_and_a_max_age(gateway: GatewayClient) -> None:
    resp = await gateway.get("/.well-known/jwks.json")
    assert resp.status == 200
    assert re.fullmatch(r'"[0-9a-f]{32}"', resp.headers["ETag"])
    assert resp.headers["Cache-Control"] == f"public, max-age={JWKS_MAX_AGE}"
    assert {k["kid"] for k in (await resp.json())["keys"]} == {"ed1", "es1"}
    again = await gateway.get("/.well-known/jwks.json")
    assert again.headers["ETag"] == resp.headers["ETag"]  # the same keys, the same tag


@pytest.mark.parametrize(
    "header",
    ["{etag}", "W/{etag}", '"other", {etag}', "*", 'W/"other",W/{etag}'],
)
async def test_if_none_match_with_the_current_tag_is_304(
    gateway: GatewayClient, header: str
) -> None:
    etag = (await gateway.get("/.well-known/jwks.json")).headers["ETag"]
    resp = await gateway.get(
        "/.well-known/jwks.json", headers={"If-None-Match": header.format(etag=etag)}
    )
    assert resp.status == 304
    assert await resp.read() == b""
    assert resp.headers["ETag"] == etag
    assert resp.headers["Cache-Control"] == f"public, max-age={JWKS_MAX_AGE}"


@pytest.mark.parametrize("header", ['"0123"', 'W/"stale"', "not-a-tag", ""])
async def test_if_none_match_with_another_tag_gets_the_keys(
    gateway: GatewayClient, header: str
) -> None:
    resp = await gateway.get("/.well-known/jwks.json", headers={"If-None-Match": header})
    assert resp.status == 200
    assert (await resp.json())["keys"]


async def test_another_key_set_has_another_tag(
    gateway_factory: GatewayFactory,
    settings_factory: Callable[..., Settings],
    key_files: dict[str, Path],
    gateway: GatewayClient,
) -> None:
    only_ed = settings_factory(
        keys={
            "active": "ed1",
            "algorithms": ["EdDSA"],
            "items": [{"kid": "ed1", "alg": "EdDSA", "private_key_file": str(key_files["EdDSA"])}],
        }
    )
    other = await gateway_factory(only_ed)
    first = (await gateway.get("/.well-known/jwks.json")).headers["ETag"]
    second = await other.get("/.well-known/jwks.json", headers={"If-None-Match": first})
    assert second.status == 200
    assert second.headers["ETag"] != first


def test_max_age_is_shorter_than_the_documented_key_publication_wait() -> None:
    text = " ".join(ENDPOINTS_PAGE.read_text().split())
    found = re.search(r"wait at least (\d+) minutes", text)
    assert found, "docs/endpoints.md must say how long to wait between publishing and signing"
    assert int(found.group(1)) * 60 > JWKS_MAX_AGE
