"""CPU per forward-auth decision on the decision listener (`forward_auth.listen`), in process.

    python -m bench.measure_decisions [--decisions N] [--depth D] [--scenario S] [--profile]

A gateway runs in this process as `gateway serve` runs it (uvloop, JSON access lines through
the batching handler, written to /dev/null, the garbage collector settled), with a decision
listener on a free loopback port. A client process sends nginx's form of a decision
(`X-Original-URI`, `X-Original-Method`, `X-Forwarded-*`, a bearer token of a cached
principal) over one real loopback connection, D requests pipelined at a time, and reads the
answers. The figure is the event loop thread's own CPU time (`time.thread_time`: the
receive, parse, decision, access line and send; the client is a process of its own) per
decision. `--profile` runs cProfile in that thread and prints the top functions. Scenarios:
`admitted` (200 with identity headers), `no-token` (401), `revoked` (401, a revoked session).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import os
import pstats
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httptools

from gateway.config import load_settings
from gateway.observability.logs import access_log, configure_logging
from gateway.runtime.serve import gateway_running
from tests.support.credential_files import write_key_files, write_users_file
from tests.support.jwt_tokens import mint
from tests.support.reloading import reload_config

WARM_UP = 2_000


def request_bytes(token: str | None, index: int) -> bytes:
    """One decision request as nginx's `auth_request` location sends it."""
    lines = [
        "GET /auth/verify HTTP/1.1",
        "Host: gateway_decisions",
        f"X-Original-URI: /api/items/{index % 8}?page=2",
        "X-Original-Method: GET",
        "X-Forwarded-Host: app.example",
        "X-Forwarded-Proto: https",
        "X-Forwarded-For: 203.0.113.9",
        "User-Agent: wrk",
        "Accept: */*",
    ]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Answers:
    """Counts the responses on the client's side (httptools' response parser)."""

    def __init__(self) -> None:
        self.done = 0
        self.statuses: dict[int, int] = {}
        self.parser = httptools.HttpResponseParser(self)

    def on_message_complete(self) -> None:
        self.done += 1
        status = self.parser.get_status_code()
        self.statuses[status] = self.statuses.get(status, 0) + 1


def drive(port: int, requests: list[bytes], depth: int, answers: Answers) -> None:
    """Send the requests, `depth` at a time, each batch once the previous one is answered."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(requests), depth):
            batch = requests[start : start + depth]
            sock.sendall(b"".join(batch))
            expected = answers.done + len(batch)
            while answers.done < expected:
                data = sock.recv(262_144)
                if not data:
                    raise RuntimeError("the decision listener closed the connection")
                answers.parser.feed_data(data)


def client_main(port: int) -> int:
    """The client process: the plan on stdin (JSON: tokens, decisions, depth), the statuses
    it got on stdout."""
    plan = json.load(sys.stdin)
    tokens: list[str | None] = plan["tokens"] or [None]
    requests = [request_bytes(tokens[i % len(tokens)], i) for i in range(plan["decisions"])]
    answers = Answers()
    began = time.perf_counter()
    drive(port, requests, plan["depth"], answers)
    seconds = time.perf_counter() - began
    print(json.dumps({"done": answers.done, "statuses": answers.statuses, "seconds": seconds}))
    return 0


async def run_client(
    port: int, tokens: list[str] | None, decisions: int, depth: int
) -> dict[str, Any]:
    """Decisions asked by a client process of its own (its CPU is not the gateway's)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.measure_decisions",
        "--client",
        str(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    plan = {"tokens": tokens, "decisions": decisions, "depth": depth}
    out, _ = await process.communicate(json.dumps(plan).encode())
    if process.returncode != 0:
        raise RuntimeError(f"the client exited with {process.returncode}")
    answers: dict[str, Any] = json.loads(out)
    return answers


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    keys = write_key_files(workdir)
    users = write_users_file(workdir / "users.yaml")
    config = reload_config(
        keys,
        "http://127.0.0.1:9",  # never reached: a decision does not forward
        users,
        forward_auth={"enabled": True, "listen": {"host": "127.0.0.1", "port": 0}},
        logging={"format": "json", "access_log": True},
        environment="production",
    )
    path = workdir / "gateway.yaml"
    path.write_text(json.dumps(config))
    settings = load_settings(path)
    configure_logging(level="INFO", json_format=True, access=True)
    sink = open(os.devnull, "w")  # noqa: SIM115 - the access log's until the process exits
    for handler in access_log.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sink)
    tokens = [mint(keys, sub=f"user-{i}", sid=f"s-{i}", roles=["user"]) for i in range(8)]
    sent = None if args.scenario == "no-token" else tokens
    async with gateway_running(settings, config=path, settle_garbage=True) as gateway:
        assert gateway.decisions is not None
        port = gateway.decisions.port
        if args.scenario == "revoked":
            store = gateway.reloader.current.services.resources.store
            for i in range(8):
                await store.revocations.revoke_session(f"s-{i}", until=time.time() + 3600)
        await run_client(port, sent, WARM_UP, args.depth)
        # the client process starts before the figure does: it asks once it has built its
        # requests, and the loop thread spends nothing while it waits
        profiler = cProfile.Profile() if args.profile else None
        began_cpu = time.thread_time()
        if profiler is not None:
            profiler.enable()
        answers = await run_client(port, sent, args.decisions, args.depth)
        if profiler is not None:
            profiler.disable()
        cpu = time.thread_time() - began_cpu
    result = {
        "scenario": args.scenario,
        "decisions": answers["done"],
        "depth": args.depth,
        "statuses": answers["statuses"],
        "cpu_us_per_decision": round(cpu / answers["done"] * 1e6, 1),
        "decisions_per_s": round(answers["done"] / answers["seconds"]),
    }
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
        result["profile"] = out.getvalue()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=20_000, help="measured decisions")
    parser.add_argument("--depth", type=int, default=1, help="requests pipelined at a time")
    parser.add_argument(
        "--scenario", choices=("admitted", "no-token", "revoked"), default="admitted"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs (the median is reported)")
    parser.add_argument("--profile", action="store_true", help="cProfile the loop's thread")
    parser.add_argument("--sort", default="tottime", help="profile order (tottime, cumulative)")
    parser.add_argument("--top", type=int, default=40, help="profile lines")
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        return client_main(args.client)
    import uvloop

    runs = []
    for _ in range(1 if args.profile else args.repeat):
        with tempfile.TemporaryDirectory(prefix="gateway-decisions-") as workdir:
            runs.append(uvloop.run(measure(args, Path(workdir))))
    runs.sort(key=lambda r: r["cpu_us_per_decision"])
    result = runs[len(runs) // 2]
    profile = result.pop("profile", None)
    result["runs_cpu_us"] = [r["cpu_us_per_decision"] for r in runs]
    print(json.dumps(result))
    if profile:
        print(profile, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
