"""redis.min_replicas_ack: token-service, revocation and audit writes are answered only once a
replica holds them (WAIT); without the acknowledgement the answer is 503, and retrying is safe."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.config import RedisSettings, Settings
from gateway.errors import ReplicaAckMissing
from gateway.store import SessionStore, connect_redis
from gateway.store.cookie_sessions import CookieSessionStore
from gateway.store.keyspace import KeySpace, new_sid, sub_key
from gateway.store.writes import Durability
from tests.support.admin_access import ADMIN, ADMIN_KEYS
from tests.support.gateway_client import GatewayPair, GatewayPairFactory, login
from tests.support.jwt_tokens import bearer
from tests.support.processes import clean_env
from tests.support.programs import require
from tests.support.redis_topology import RedisNode, Replicated
from tests.support.repository import ROOT
from tests.support.waiting import eventually


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url": "memory://", "min_replicas_ack": 1}, "not memory://"),
        (
            {"url": "redis://r:6379/0", "min_replicas_ack": 1, "replica_ack_timeout": 1.0},
            "below socket_timeout",
        ),
        ({"url": "redis://r:6379/0", "min_replicas_ack": -1}, "greater than or equal to 0"),
    ],
)
def test_acknowledgement_settings_are_checked(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RedisSettings(**values)


def test_acknowledgement_off_by_default_and_fits_the_default_deadlines() -> None:
    settings = RedisSettings(url="redis://r:6379/0", min_replicas_ack=1)
    assert RedisSettings().min_replicas_ack == 0
    assert settings.replica_ack_timeout < settings.socket_timeout


@contextmanager
def frozen(node: RedisNode) -> Iterator[None]:
    """The replica stops (SIGSTOP): it neither copies nor acknowledges until thawed."""
    os.kill(node.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(node.process.pid, signal.SIGCONT)


async def caught_up(primary: RedisNode) -> None:
    """Until the thawed replica acknowledges the primary's writes again (a loaded machine
    can take more than one acknowledgement deadline to resume replication)."""

    def acknowledged() -> bool:
        with primary.client() as conn:
            return int(conn.wait(1, 200)) >= 1

    await eventually(acknowledged, 20, what="the replica acknowledges the primary's writes")


@pytest.fixture
async def acked(
    gateway_pair_factory: GatewayPairFactory,
    settings_factory: Callable[..., Settings],
    users_file: Path,
    redis_replicated: Replicated,
) -> GatewayPair:
    settings = settings_factory(
        redis={
            "url": redis_replicated.url,
            "min_replicas_ack": 1,
            # generous: a loaded machine must not turn a healthy replica's ack into a 503
            "replica_ack_timeout": 1.0,
            "socket_timeout": 2.0,
        },
        auth={"users_file": str(users_file)},
        admin=ADMIN_KEYS,
    )
    await caught_up(redis_replicated.primary)  # replication is running before the first write
    return await gateway_pair_factory(settings)


def session_on(node: RedisNode, sid: str) -> dict[Any, Any]:
    """The session hash as `node` holds it, read on that node alone."""
    with node.client() as conn:
        return dict(conn.hgetall(KeySpace().session(sid)))


@pytest.mark.redis
@pytest.mark.slow
async def test_every_answered_write_is_already_on_the_replica(
    acked: GatewayPair, redis_replicated: Replicated
) -> None:
    client, admin = acked
    replica = redis_replicated.replicas[0]
    body = await login(client)
    sid = body["session_id"]
    # No waiting here: the answer came after the replica acknowledged the write.
    assert session_on(replica, sid)[b"sub"] == b"alice"
    resp = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 200
    token = (await resp.json())["refresh_token"]
    assert session_on(replica, sid)[b"rt"] == hashlib.sha256(token.encode()).hexdigest().encode()

    resp = await admin.post("/admin/users/carol/revoke", headers=ADMIN)
    assert resp.status == 200
    keys = KeySpace()
    with replica.client() as conn:
        assert conn.get(keys.revocation("sub", sub_key("carol")))
        assert conn.xlen(keys.audit) == 1
    resp = await admin.delete(f"/admin/sessions/{sid}", headers=ADMIN)
    assert resp.status == 200
    assert session_on(replica, sid) == {}
    with replica.client() as conn:
        assert conn.get(keys.revocation("sid", sid))


@pytest.mark.redis
@pytest.mark.slow
async def test_without_the_acknowledgement_writes_are_503_and_safe_to_retry(
    acked: GatewayPair, redis_replicated: Replicated
) -> None:
    client, admin = acked
    primary, replica = redis_replicated.primary, redis_replicated.replicas[0]
    body = await login(client)
    sid = body["session_id"]
    other = await login(client, user="bob", password="builder")
    with frozen(replica):
        resp = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert await resp.json() == {
            "error": "temporarily_unavailable",
            "error_description": "the token store did not confirm the write in time; retry",
        }
        # the rotation stands on the primary, its successor pending
        assert session_on(primary, sid)[b"gen"] == b"1"
        for path, payload in [
            ("/auth/login", {"username": "bob", "password": "builder"}),
            ("/auth/logout", {"refresh_token": other["refresh_token"]}),
        ]:
            resp = await client.post(path, json=payload)
            assert resp.status == 503, path
        resp = await admin.post("/admin/users/carol/revoke", headers=ADMIN)
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        # nothing to write, nothing to wait for: a bad token is still a plain 400
        forged = "gwrt_" + sid + "." + "A" * 43
        resp = await client.post("/auth/refresh", json={"refresh_token": forged})
        assert resp.status == 400

    await caught_up(primary)
    # Retrying the same refresh token gets the successor the first attempt recorded.
    resp = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 200, await resp.text()
    retried = await resp.json()
    assert session_on(replica, sid)[b"gen"] == b"1"  # no second rotation, and replicated
    resp = await client.post("/auth/refresh", json={"refresh_token": retried["refresh_token"]})
    assert resp.status == 200
    assert (await client.get("/api", headers=bearer(retried["access_token"]))).status == 200
    resp = await admin.post("/admin/users/carol/revoke", headers=ADMIN)
    assert resp.status == 200
    # The logout that was not confirmed stood on the primary (its retry finds nothing left to
    # end), and the acknowledged writes since have carried it to the replica.
    resp = await client.post("/auth/logout", json={"refresh_token": other["refresh_token"]})
    assert resp.status == 204
    assert session_on(replica, other["session_id"]) == {}


@pytest.mark.redis
@pytest.mark.slow
async def test_a_browser_refresh_cookie_is_staged_only_once_the_replica_holds_it(
    redis_replicated: Replicated,
) -> None:
    """Browser sessions stage rotated refresh cookies with the same acknowledgement."""
    durability = Durability(replicas=1, timeout=1.0)
    await caught_up(redis_replicated.primary)
    client = connect_redis(
        redis_replicated.url, connect_timeout=1, socket_timeout=2, max_connections=4
    )
    try:
        sessions = SessionStore(client, clock=time.time, durability=durability)
        cookies = CookieSessionStore(client, clock=time.time, durability=durability)
        sid = new_sid("alice")
        await sessions.create(sub="alice", sid=sid, refresh_hash="h0", lifetime=600)
        with frozen(redis_replicated.replicas[0]), pytest.raises(ReplicaAckMissing):
            await cookies.stage(sid, "h0", "h1", b"box", grace=60)
        await caught_up(redis_replicated.primary)
        staged = await cookies.stage(sid, "h0", "h2", b"box2", grace=60)
        assert staged.status == "restaged"  # the first attempt stood on the primary
        assert session_on(redis_replicated.replicas[0], sid)[b"nrt"] == b"h1"
    finally:
        await client.aclose()


@pytest.mark.redis
@pytest.mark.slow
def test_the_cost_measurement_runs_both_settings() -> None:
    """`python -m bench.measure_replica_ack` works end to end (its figures are not asserted)."""
    require("redis-server", install="apt-get install redis-server")
    done = subprocess.run(
        [sys.executable, "-m", "bench.measure_replica_ack", "--rounds", "1", "--seconds", "0.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if re.match(r"^\| [01] \|", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["0", "1"]
    assert all(row.split("|")[-2].strip() == "0" for row in rows)  # no failed rotation
