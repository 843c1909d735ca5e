"""Redis topologies on loopback for failover drills and tests: a primary with replicas (optionally
watched by three sentinels) and a cluster whose masters have replicas.

Every process listens on a free 127.0.0.1 port and writes its log into its own folder; every
wait is bounded. Nothing here touches a Redis it did not start.
"""

from __future__ import annotations

import functools
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.support.processes import free_port, wait_for_port
from tests.support.redis_servers import redis_server_argv

SERVICE = "gw-primary"
# Replicas start copying at once (no 5 s diskless-sync batching delay) and report their
# offsets every second; WAIT asks them for an acknowledgement immediately anyway.
FAST_REPLICATION = ["--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"]


class TopologyError(RuntimeError):
    """A topology did not come up (or settle) within its bound."""


@dataclass
class RedisNode:
    """One redis-server (or sentinel) process this module started."""

    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def ask(self, *command: Any, timeout: float = 2.0) -> Any:
        """One command on a fresh connection (closed after)."""
        with self.client(timeout) as conn:
            return conn.execute_command(*command)

    def info(self, section: str) -> dict[str, Any]:
        with self.client() as conn:
            found: dict[str, Any] = conn.info(section)
            return found

    def kill(self) -> None:
        """SIGKILL: the process dies without a word to anyone (no shutdown save, no goodbye)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: a replica that falls behind (copies and acknowledges nothing) until resumed."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def _spawn(argv: list[str], port: int, directory: Path) -> RedisNode:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "redis.log").open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
    except RuntimeError:
        process.kill()
        process.wait()
        raise
    return RedisNode(port, process, directory)


def spawn_node(directory: Path, *extra: str) -> RedisNode:
    """A redis-server on a free port (no snapshots, noeviction, no AOF) with `extra` options."""
    port = free_port()
    argv = [*redis_server_argv(port, directory), *FAST_REPLICATION, *extra]
    return _spawn(argv, port, directory)


def wait_until(check: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Poll `check` (errors count as "not yet") until it holds; TopologyError after `limit`."""
    deadline = time.monotonic() + limit
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TopologyError(f"{what}: not after {limit:.0f} s")
        time.sleep(0.05)


def link_up(replica: RedisNode, primary_port: int | None = None) -> bool:
    info = replica.info("replication")
    if info.get("role") != "slave" or info.get("master_link_status") != "up":
        return False
    return primary_port is None or int(info.get("master_port", 0)) == primary_port


@dataclass
class Replicated:
    """A primary and its replicas (asynchronous replication, as Redis does it)."""

    primary: RedisNode
    replicas: list[RedisNode]
    nodes: list[RedisNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.primary.port}/0"

    def node(self, port: int) -> RedisNode:
        return next(n for n in self.nodes if n.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_replicated(directory: Path, *, replicas: int = 1) -> Replicated:
    """A primary and `replicas` replicas, each replica's link up before this returns."""
    primary = spawn_node(directory / "primary")
    topology = Replicated(primary, [], [primary])
    try:
        for index in range(replicas):
            replica = spawn_node(
                directory / f"replica-{index}", "--replicaof", "127.0.0.1", str(primary.port)
            )
            topology.replicas.append(replica)
            topology.nodes.append(replica)
        for replica in topology.replicas:
            wait_until(functools.partial(link_up, replica), f"replica {replica.port} in sync")
    except BaseException:
        topology.stop()
        raise
    return topology


@dataclass
class SentinelSet(Replicated):
    """A primary, replicas and three sentinels that fail the primary over when it dies."""

    sentinels: list[RedisNode] = field(default_factory=list)
    service: str = SERVICE

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def master_port(self) -> int | None:
        """The primary's port as the sentinels' majority sees it (None without a majority)."""
        ports: list[int] = []
        for sentinel in self.sentinels:
            if not sentinel.alive:
                continue
            try:
                answer = sentinel.ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
            except (redis.RedisError, OSError):
                continue
            if answer:
                ports.append(int(answer[1]))
        for port in set(ports):
            if ports.count(port) >= 2:
                return port
        return None

    def settled(self, master: int, replicas: int) -> bool:
        """The sentinels agree on `master`, which is a primary with `replicas` linked replicas."""
        if self.master_port() != master:
            return False
        info = self.node(master).info("replication")
        if info.get("role") != "master":
            return False
        linked = [n for n in self.nodes if n.port != master and n.alive and link_up(n, master)]
        return len(linked) >= replicas and int(info.get("connected_slaves", 0)) >= replicas

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        super().stop()


def start_sentinel_set(
    directory: Path,
    *,
    replicas: int = 2,
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 4000,
) -> SentinelSet:
    """A primary, `replicas` replicas and three sentinels (quorum 2) that know all of them."""
    base = start_replicated(directory, replicas=replicas)
    topology = SentinelSet(base.primary, base.replicas, base.nodes)
    try:
        binary = shutil.which("redis-server")
        assert binary is not None  # redis_server_argv checked it
        for index in range(3):
            folder = directory / f"sentinel-{index}"
            folder.mkdir(parents=True)
            port = free_port()
            conf = folder / "sentinel.conf"  # sentinels rewrite their config: one file each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {base.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} {failover_timeout_ms}\n"
                f"sentinel parallel-syncs {SERVICE} {max(1, replicas)}\n"
            )
            topology.sentinels.append(_spawn([binary, str(conf), "--sentinel"], port, folder))

        def known() -> bool:
            for sentinel in topology.sentinels:
                with sentinel.client() as conn:
                    state = conn.sentinel_master(SERVICE)
                if int(state["num-slaves"]) < replicas or int(state["num-other-sentinels"]) < 2:
                    return False
            return topology.settled(base.primary.port, replicas)

        wait_until(known, "sentinels know the primary, its replicas and each other")
    except BaseException:
        topology.stop()
        raise
    return topology


@dataclass
class ClusterSet:
    """Cluster masters, each with replicas that take over its slots when it dies."""

    nodes: list[RedisNode]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def node(self, port: int) -> RedisNode:
        return next(n for n in self.nodes if n.port == port)

    def any_alive(self) -> RedisNode:
        return next(n for n in self.nodes if n.alive)

    def slot_owner(self, slot: int) -> int | None:
        """Port of the master serving `slot`, as a live node sees the cluster."""
        for start, end, master, *_ in self.any_alive().ask("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return int(master[1])
        return None

    def replicas_of(self, master: int) -> list[RedisNode]:
        """The nodes replicating the master on port `master`."""
        for _start, _end, owner, *copies in self.any_alive().ask("CLUSTER", "SLOTS"):
            if int(owner[1]) == master:
                return [self.node(int(copy[1])) for copy in copies]
        return []

    def master_of_key(self, key: str) -> int:
        slot = int(self.any_alive().ask("CLUSTER", "KEYSLOT", key))
        port = self.slot_owner(slot)
        if port is None:
            raise TopologyError(f"no master serves slot {slot}")
        return port

    def healthy(self, replicas_per_master: int) -> bool:
        """Every live node says cluster_state:ok and every master has its live replicas."""
        for node in self.nodes:
            if not node.alive:
                continue
            if b"cluster_state:ok" not in node.ask("CLUSTER", "INFO"):
                return False
        for _start, _end, master, *copies in self.any_alive().ask("CLUSTER", "SLOTS"):
            linked = [c for c in copies if link_up(self.node(int(c[1])), int(master[1]))]
            if len(linked) < replicas_per_master:
                return False
        return True

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(
    directory: Path, *, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000
) -> ClusterSet:
    """`masters` masters with `replicas` replicas each, slots spread by redis-cli."""
    cli = shutil.which("redis-cli")
    if cli is None:
        raise TopologyError("redis-cli is not installed (apt-get install redis-tools)")
    cluster = ClusterSet([])
    try:
        for index in range(masters * (1 + replicas)):
            cluster.nodes.append(
                spawn_node(
                    directory / f"node-{index}",
                    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                    *("--cluster-node-timeout", str(node_timeout_ms)),
                    # replicas with any lag may take over: the drill measures what they hold
                    *("--cluster-replica-validity-factor", "0"),
                    # the bus port defaults to port + 10000, which may be taken or past 65535
                    *("--cluster-port", str(free_port())),
                )
            )
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in cluster.nodes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_until(lambda: cluster.healthy(replicas), "cluster up with every replica linked", 60)
    except BaseException:
        cluster.stop()
        raise
    return cluster
