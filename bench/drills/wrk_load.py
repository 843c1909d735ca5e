"""Load for the drills: wrk with a bearer token on a protected path, every answer tallied by
status, with wrk's socket errors and latencies (chaos and reload drills alike)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

STATUS_LUA: Final = """
counts = {}
threads = {}
setup = function(thread) table.insert(threads, thread) end
response = function(status, headers, body) counts[status] = (counts[status] or 0) + 1 end
done = function(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do total[k] = (total[k] or 0) + v end
  end
  for k, v in pairs(total) do io.write(string.format("STATUS %d %d\\n", k, v)) end
  local e = summary.errors
  io.write(string.format("ERRORS %d %d %d %d %d\\n", e.connect, e.read, e.write, e.status,
    e.timeout))
  io.write(string.format("LATENCY %d %d %d\\n", latency:percentile(50),
    latency:percentile(99), latency.max))
end
"""


@dataclass
class Tally:
    """What one wrk run saw: answers by status, socket errors by kind, latencies in ms."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: dict[str, int] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)


async def wrk_tally(
    wrk: str,
    url: str,
    token: str,
    seconds: float,
    workdir: Path,
    *,
    threads: int,
    connections: int,
) -> Tally:
    """Run wrk for `seconds` against `url` with the token; bounded by a minute more."""
    script = workdir / "status.lua"
    script.write_text(STATUS_LUA)
    process = await asyncio.create_subprocess_exec(
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        "-H",
        f"Authorization: Bearer {token}",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), seconds + 60)
    return parse_tally(out.decode())


def parse_tally(output: str) -> Tally:
    tally = Tally()
    for line in output.splitlines():
        if line.startswith("STATUS "):
            _, code, count = line.split()
            tally.statuses[int(code)] += int(count)
        elif line.startswith("ERRORS "):
            names = ("connect", "read", "write", "status", "timeout")
            tally.errors = dict(zip(names, map(int, line.split()[1:]), strict=True))
        elif line.startswith("LATENCY "):
            micros = map(int, line.split()[1:])
            tally.latency = {
                k: v / 1000 for k, v in zip(("p50", "p99", "max"), micros, strict=True)
            }
    tally.errors.pop("status", None)  # non-2xx answers: counted by status above
    return tally
