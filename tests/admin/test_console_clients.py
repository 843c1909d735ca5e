"""The console's clients page: the registered clients, and revoking a client's own tokens
through a confirmation page and a CSRF-checked POST, audited as on the admin API."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import fakeredis

from gateway.config import Settings
from tests.support.admin_access import ADMIN, ADMIN_KEYS, CONSOLE, HTML, console_sign_in
from tests.support.clock import FakeClock
from tests.support.gateway_client import GatewayPairFactory
from tests.support.jwt_tokens import bearer
from tests.support.oauth_clients import MACHINE_SECRET, machine_client, password_client


async def test_revoke_a_client_from_the_console(
    gateway_pair_factory: GatewayPairFactory,
    settings_factory: Callable[..., Settings],
    clock: FakeClock,
) -> None:
    settings = settings_factory(
        admin=ADMIN_KEYS,
        clients=[machine_client("batch", name="Nightly batch"), password_client("cli")],
    )
    public, admin = await gateway_pair_factory(
        settings, redis=fakeredis.FakeAsyncRedis(), clock=clock
    )
    auth = {"Authorization": aiohttp.encode_basic_auth("batch", MACHINE_SECRET)}
    resp = await public.post("/auth/token", data={"grant_type": "client_credentials"}, headers=auth)
    access = (await resp.json())["access_token"]
    csrf = await console_sign_in(admin)
    page = await (await admin.get(f"{CONSOLE}clients", headers=HTML)).text()
    assert 'data-client="batch"' in page and "Nightly batch" in page
    assert 'data-client="cli"' in page and "client_secret_basic" in page
    confirm = await admin.get(f"{CONSOLE}clients/revoke?id=batch", headers=HTML)
    assert confirm.status == 200 and "client:batch" in await confirm.text()
    assert (await admin.get(f"{CONSOLE}clients/revoke?id=nobody", headers=HTML)).status == 404
    forged = await admin.post(
        f"{CONSOLE}clients/revoke",
        data={"csrf": "forged", "client_id": "batch"},
        allow_redirects=False,
    )
    assert forged.status == 403
    assert (await public.get("/api/x", headers=bearer(access))).status == 200
    done = await admin.post(
        f"{CONSOLE}clients/revoke",
        data={"csrf": csrf, "client_id": "batch"},
        allow_redirects=False,
    )
    assert done.status == 303 and "notice=client-revoked" in done.headers["Location"]
    assert (await public.get("/api/x", headers=bearer(access))).status == 401
    entries = (await (await admin.get("/admin/audit", headers=ADMIN)).json())["entries"]
    assert (entries[0]["action"], entries[0]["actor"]) == ("revoke_client", "admin-key:ops")
