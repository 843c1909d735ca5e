"""Failover drill: two gateways under steady login/refresh/revoke traffic while Redis loses the
primary holding the traffic's keys (SIGKILL), on Sentinel or on Cluster.

    python -m bench.drills.failover sentinel           # primary, 2 replicas, 3 sentinels
    python -m bench.drills.failover cluster            # 3 masters with 2 replicas each
    python -m bench.drills.failover sentinel --acks 0  # without replica acknowledgement
    python -m bench.drills.failover sentinel --lag 1   # replicas 1 s behind when it dies

Everything runs on free loopback ports and is stopped on exit. Afterwards the drill checks:
sessions lost (a session whose last refresh the client saw succeed no longer refreshes),
revocations lost (an acknowledged revocation not enforced on A, B and on a fresh instance C
that loads its view from the new primary), answers other than 503 among the 5xx, 503s without
Retry-After, and requests left unanswered past the client's deadline. Exit status 0 when all
of them are 0. Clients retry 0.1 s after a 503 (not after Retry-After's 1 s) to load the
switch with retries.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench.drills.stage import VICTIMS, Gateways, Watch, gateway_config, upstream
from bench.drills.traffic import Chain, Instance, Tally, Traffic
from gateway.store.keyspace import KeySpace
from tests.support.redis_topology import (
    ClusterSet,
    RedisNode,
    SentinelSet,
    start_cluster,
    start_sentinel_set,
)
from tests.support.waiting import eventually

TOPOLOGIES: Final = ("sentinel", "cluster")
BURST_MIB: Final = 64  # more than loopback TCP buffers hold (tcp_rmem max 32 MiB + send side)
VERSION_KEY: Final = KeySpace().revocation_version


@dataclass
class Report:
    """What one drill saw; `ok` when nothing was lost and every 5xx was a proper 503."""

    topology: str
    acks: int
    log: list[str] = field(default_factory=list)
    sessions: int = 0
    sessions_lost: int = 0
    revocations: int = 0
    revocations_during_switch: int = 0
    revocations_lost: int = 0
    other_5xx: int = 0
    missing_retry_after: int = 0
    past_deadline: int = 0
    unreachable: int = 0
    unavailable: int = 0
    window: float | None = None  # from the kill to the last 503, seconds
    reloads: dict[str, int] = field(default_factory=dict)  # full reloads since the kill

    @property
    def ok(self) -> bool:
        return not (
            self.sessions_lost
            or self.revocations_lost
            or self.other_5xx
            or self.missing_retry_after
            or self.past_deadline
            or self.unreachable
        )


class Timeline:
    """Events by monotonic time, written to the log in order."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self._events: list[tuple[float, str]] = []

    def at(self, moment: float, text: str) -> None:
        self._events.append((moment, text))

    def lines(self) -> list[str]:
        return [f"  t={t - self.start:+7.2f}s  {text}" for t, text in sorted(self._events)]


def start_topology(kind: str, directory: Path) -> SentinelSet | ClusterSet:
    """The drill's Redis: a primary, 2 replicas and 3 sentinels, or 3 masters × 2 replicas."""
    if kind == "sentinel":
        return start_sentinel_set(directory, replicas=2)
    return start_cluster(directory, masters=3, replicas=2)


def describe(redis: SentinelSet | ClusterSet) -> str:
    if isinstance(redis, SentinelSet):
        return f"sentinel: a primary, {len(redis.replicas)} replicas, 3 sentinels"
    return f"cluster: {len(redis.nodes)} nodes, 3 masters with their replicas"


async def drill(
    redis: SentinelSet | ClusterSet,
    *,
    acks: int = 1,
    workdir: Path,
    sessions: int = 12,
    warmup: float = 3.0,
    after: float = 3.0,
    deadline: float = 10.0,
    lag: float = 0.0,
) -> Report:
    """Run one drill on a running topology (see the module docstring); what it saw. The
    topology loses its primary and stays the caller's to stop. With `lag`, the replicas are
    paused that long before the kill (they fall behind, as under load or a slow link)."""
    report = Report(describe(redis), acks)
    lagging = f", replicas {lag:g} s behind at the kill" if lag else ""
    report.log.append(
        f"failover drill, {report.topology}{lagging}; 2 gateways, redis.min_replicas_ack={acks}"
    )
    gateways: Gateways | None = None
    try:
        async with upstream() as backend:
            gateways = Gateways(
                workdir, gateway_config(workdir, redis.url, backend, acks, sessions)
            )
            await _run(redis, gateways, report, sessions, warmup, after, deadline, lag)
    finally:
        if gateways is not None:
            gateways.stop()
    report.log.append(
        f"sessions lost {report.sessions_lost}, revocations lost {report.revocations_lost}, "
        f"5xx other than 503 {report.other_5xx}"
    )
    return report


async def _run(
    redis: SentinelSet | ClusterSet,
    gateways: Gateways,
    report: Report,
    sessions: int,
    warmup: float,
    after: float,
    deadline: float,
    lag: float,
) -> None:
    a, b = await asyncio.gather(gateways.start("A"), gateways.start("B"))
    timeline = Timeline()
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=sessions + 16)
    async with aiohttp.ClientSession(connector=connector) as http:
        traffic = Traffic(http, [a, b], deadline=deadline, pause=0.1, tally=tally)
        watch = Watch(http, [a, b])
        stop = asyncio.Event()
        chains = [Chain(f"user-{i}") for i in range(sessions)]
        tasks = [asyncio.create_task(traffic.run_chain(c, stop)) for c in chains]
        tasks.append(asyncio.create_task(traffic.run_logins("login-user", stop)))
        victims = [f"victim-{j}" for j in range(VICTIMS)]
        tasks.append(asyncio.create_task(traffic.run_revocations(victims, stop)))
        tasks.append(asyncio.create_task(watch.run(stop)))
        timeline.at(
            time.monotonic(),
            f"traffic on A and B: {sessions} sessions refreshing, logins, revocations "
            "(admin: session, token, user; logout)",
        )
        try:
            await asyncio.sleep(warmup)
            victim, killed_at = await _kill(redis, timeline, sessions, lag)
            promoted = await asyncio.to_thread(_promoted, redis, victim)
            timeline.at(promoted[1], f"new primary: 127.0.0.1:{promoted[0]}")
            await eventually(
                _reloaded(watch, [a, b], killed_at), 60, what="A and B reloaded their views"
            )
            reloaded = time.monotonic()
            await asyncio.sleep(after)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        timeline.at(time.monotonic(), "traffic stopped")
        for name in ("A", "B"):
            when = watch.reloaded_after(name, killed_at)
            if when is not None:
                timeline.at(when, f"{name}: revocation view reloaded from the new primary")
            stretch = watch.unready(name, killed_at)
            if stretch is not None:
                timeline.at(stretch[0], f"{name}: /readyz 503 (Redis unreachable)")
                timeline.at(stretch[1], f"{name}: /readyz 200 again")
        after_kill = [t for t in tally.unavailable if t >= killed_at]
        if after_kill:
            report.window = after_kill[-1] - killed_at
            timeline.at(after_kill[0], "first 503 after the kill")
            timeline.at(after_kill[-1], "last 503")
        report.reloads = {
            g.name: watch.count_at(g.name, time.monotonic()) - watch.count_at(g.name, killed_at)
            for g in (a, b)
        }
        c = await gateways.start("C")
        timeline.at(time.monotonic(), "instance C started: its view loaded from the new primary")
        await _check(traffic, chains, [a, b, c], report, killed_at, reloaded)
    report.log.extend(timeline.lines())
    _summarize(report, tally)


def _reloaded(
    watch: Watch, instances: list[Instance], moment: float
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all(watch.reloaded_after(i.name, moment) is not None for i in instances)

    return check


async def _kill(
    redis: SentinelSet | ClusterSet, timeline: Timeline, sessions: int, lag: float
) -> tuple[int, float]:
    """SIGKILL the primary (on Cluster: the master holding the revocation version and some
    sessions' slots), its replicas first left `lag` seconds behind; (its port, when)."""
    held = ""
    if isinstance(redis, SentinelSet):
        port = await asyncio.to_thread(redis.master_port)
        assert port is not None
        replicas = [n for n in redis.nodes if n.port != port and n.alive]
    else:
        port = await asyncio.to_thread(redis.master_of_key, VERSION_KEY)
        owners = [
            await asyncio.to_thread(redis.master_of_key, _session_key(f"user-{i}"))
            for i in range(sessions)
        ]
        held = f", holding the revocation version and {owners.count(port)} sessions' slots"
        replicas = await asyncio.to_thread(redis.replicas_of, port)
    node = redis.node(port)
    if lag:
        for replica in replicas:
            replica.pause()
        # A paused replica's kernel still buffers what the primary streams to it (tens of MiB
        # on loopback): a burst of unrelated writes fills that, so the traffic's writes from
        # here on wait in the primary's memory and die with it, as writes do on a lagging link.
        await asyncio.to_thread(_burst, node)
        timeline.at(
            time.monotonic(),
            f"replicas paused (SIGSTOP) for {lag:g} s behind a {BURST_MIB} MiB burst of other "
            "writes: the primary alone holds the writes from here",
        )
        await asyncio.sleep(lag)
    node.kill()
    killed = time.monotonic()
    timeline.at(killed, f"SIGKILL primary 127.0.0.1:{port} (pid {node.process.pid}){held}")
    for replica in replicas if lag else []:
        replica.resume()
    return port, killed


def _burst(primary: RedisNode) -> None:
    """BURST_MIB one-MiB values, with a TTL, on the primary's own slots (hash tag of the
    revocation version key, which that primary holds on Cluster)."""
    block = b"x" * (1 << 20)
    with primary.client(timeout=10) as conn:
        pipe = conn.pipeline(transaction=False)
        for index in range(BURST_MIB):
            pipe.set(f"drill:{{{VERSION_KEY}}}:burst:{index}", block, ex=60)
        pipe.execute()


def _session_key(user: str) -> str:
    return KeySpace().session_prefix(user) + "session:probe"


def _promoted(redis: SentinelSet | ClusterSet, victim: int, limit: float = 60) -> tuple[int, float]:
    """(port, when) of the node that took over from `victim`."""
    key = VERSION_KEY
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if isinstance(redis, SentinelSet):
                port = redis.master_port()
            else:
                port = redis.master_of_key(key)
        except Exception:  # the topology is mid-switch: ask again
            port = None
        if port is not None and port != victim:
            return port, time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"no new primary after {limit:.0f} s")


async def _check(
    traffic: Traffic,
    chains: list[Chain],
    instances: list[Instance],
    report: Report,
    killed_at: float,
    recovered_at: float,
) -> None:
    """Every session refreshes; every acknowledged revocation holds on every instance."""
    report.sessions = len(chains)
    first = instances[0]
    for chain in chains:
        if not chain.lost:
            await _settled(functools.partial(traffic.refresh, chain, first), (200, 400))
        report.sessions_lost += chain.lost or not chain.token
    report.revocations = len(traffic.revoked)
    report.revocations_during_switch = sum(
        killed_at <= r.at <= recovered_at for r in traffic.revoked
    )
    for revoked in traffic.revoked:
        held = True
        for instance in instances:
            headers = {"Authorization": f"Bearer {revoked.access}"}
            url = f"{instance.base}/api/drill"
            check = functools.partial(_status, traffic, "api", url, headers)
            status = await _settled(check, (200, 401))
            held = held and status == 401
        if revoked.refresh is not None:
            payload = {"refresh_token": revoked.refresh}
            url = f"{first.base}/auth/refresh"
            check = functools.partial(_status, traffic, "refresh", url, None, payload)
            status = await _settled(check, (200, 400))
            held = held and status == 400
        report.revocations_lost += not held


async def _status(
    traffic: Traffic, what: str, url: str, headers: dict[str, str] | None, payload: Any = None
) -> int:
    method = "GET" if payload is None else "POST"
    status, _ = await traffic.call(f"check {what}", method, url, headers=headers, json=payload)
    return status


async def _settled(
    attempt: Callable[[], Awaitable[int]], final: tuple[int, ...], limit: float = 30
) -> int:
    """Repeat `attempt` while it answers anything but a `final` status (503, no answer)."""
    deadline = time.monotonic() + limit
    while True:
        status = await attempt()
        if status in final or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.1)


def _summarize(report: Report, tally: Tally) -> None:
    report.other_5xx = tally.other_5xx
    report.missing_retry_after = tally.missing_retry_after
    report.past_deadline = tally.past_deadline
    report.unreachable = tally.unreachable
    report.unavailable = tally.count(lambda _, status: status == 503)

    def of(what: str) -> str:
        done = tally.count(lambda w, s: w == what and s < 300)
        busy = tally.count(lambda w, s: w == what and s == 503)
        return f"{what} {done} ok/{busy} 503"

    total = sum(tally.statuses.values())
    report.log.append(
        f"  requests {total}: {of('refresh')}, {of('login')}, {of('revoke')}, {of('api')}; "
        f"503 with Retry-After {report.unavailable - report.missing_retry_after}"
        f"/{report.unavailable}; unanswered within the clients' deadline "
        f"{report.past_deadline}; slowest answer {tally.slowest:.2f} s"
    )
    report.log.extend(f"  answered {fault}" for fault in tally.faults)
    window = "no 503 at all" if report.window is None else f"{report.window:.2f} s"
    report.log.append(f"  failover window as clients saw it (kill to the last 503): {window}")
    report.log.append(
        f"  sessions: {report.sessions} refreshed after the switch, lost {report.sessions_lost}; "
        f"revocations acknowledged {report.revocations} ({report.revocations_during_switch} "
        f"between the kill and both views reloaded), enforced on A, B and C: "
        f"{report.revocations - report.revocations_lost}; full view reloads since the kill: "
        + ", ".join(f"{name} {count}" for name, count in report.reloads.items())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("topology", choices=TOPOLOGIES)
    parser.add_argument("--acks", type=int, default=1, help="redis.min_replicas_ack (default 1)")
    parser.add_argument("--sessions", type=int, default=12, help="refreshing clients (12)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the kill (3)")
    parser.add_argument("--after", type=float, default=3.0, help="seconds after recovery (3)")
    parser.add_argument(
        "--lag", type=float, default=0.0, help="pause the replicas this long before the kill"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        print("redis-server and redis-cli are required (apt-get install redis-server)")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="gateway-drill-"))
    redis = start_topology(args.topology, workdir / "redis")
    try:
        report = asyncio.run(
            drill(
                redis,
                acks=args.acks,
                workdir=workdir,
                sessions=args.sessions,
                warmup=args.warmup,
                after=args.after,
                lag=args.lag,
            )
        )
    finally:
        redis.stop()
        if args.keep:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(report.log))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
