"""The benchmark harness starts, refuses bad setups clearly and tears everything down.

Only the harness is checked here: no figure it measures is asserted (timing belongs to
`make bench`, never to the test suite).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import clean_env, free_port
from tests.support.programs import require
from tests.support.repository import ROOT

pytestmark = pytest.mark.slow  # runs the benchmark harness and its processes


def bench(
    *args: str, tmp: Path, path: str | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """`python -m bench.run` with its work folder under `tmp` (TMPDIR), so that only this run's
    processes are looked for afterwards, never another benchmark's on the same machine."""
    env = clean_env()
    env["TMPDIR"] = str(tmp)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "bench.run", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def bench_processes(tmp: Path) -> list[str]:
    """Command lines of processes still running from this test's benchmark work folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if f"{tmp}/gateway-bench-" in cmdline and state != "Z":
            found.append(cmdline)
    return found


def test_missing_wrk_without_install_is_a_clear_refusal(tmp_path: Path) -> None:
    only_python = tmp_path / "bin"
    only_python.mkdir()
    (only_python / "python").symlink_to(sys.executable)
    result = bench(
        "--smoke",
        "--no-install",
        "--out",
        str(tmp_path / "out"),
        tmp=tmp_path,
        path=str(only_python),
    )
    assert result.returncode == 2
    assert "wrk is not installed" in result.stderr
    assert "apt-get install -y wrk" in result.stderr
    assert not (tmp_path / "out").exists()


def test_upstream_not_running_is_a_clear_refusal_and_nothing_is_left(tmp_path: Path) -> None:
    require("redis-server", install="apt-get install redis-server")
    # The load generator is never started on this path: a stand-in lets the check run
    # on machines without wrk.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake_wrk = fake_bin / "wrk"
    fake_wrk.write_text("#!/bin/sh\nexit 1\n")
    fake_wrk.chmod(0o755)
    closed = free_port()
    result = bench(
        "--smoke",
        "--no-install",
        "--upstream-port",
        str(closed),
        "--out",
        str(tmp_path / "out"),
        tmp=tmp_path,
        path=f"{fake_bin}:{os.environ['PATH']}",
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert f"http://127.0.0.1:{closed}/small is not answering" in result.stderr
    assert "Traceback" not in result.stderr
    assert bench_processes(tmp_path) == []


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)
@pytest.mark.timeout(300)  # the run itself is given 240 s (`bench`): a busy machine needs them
def test_smoke_run_writes_results_and_tears_down(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = bench("--smoke", "--no-install", "--out", str(out), tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    latest = json.loads((out / "latest.json").read_text())
    warm = latest["throughput"]["small JSON, same 8 tokens (cache-warm)"]
    assert {"direct", "reference", "naive proxy", "gateway", "gateway 5 rules + 1 limit"} <= set(
        warm
    )
    assert latest["policy"]["vs_plain_rps"] > 0
    assert warm["gateway"]["rps"] > 0
    assert latest["ratios"]["warm_vs_reference"] is not None
    table = (out / "latest.md").read_text()
    assert "| scenario | target | req/s | p50 ms | p99 ms | CPU µs/req | × reference |" in table
    assert "cache-warm ≥ 1.5× the reference" in table
    assert bench_processes(tmp_path) == []
    chart = tmp_path / "bench.png"
    drawn = plot("--results", str(out / "latest.json"), "--out", str(chart))
    assert drawn.returncode == 0, drawn.stderr
    assert chart.read_bytes().startswith(b"\x89PNG")


def plot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.plot", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_plot_draws_every_target_of_a_run(tmp_path: Path) -> None:
    def medians(rps: float, p99: float) -> dict[str, float]:
        return {"rps": rps, "p50_ms": p99 / 3, "p99_ms": p99, "cpu_us": 50.0}

    run = {
        "date": "2026-12-02 08:00 UTC",
        "machine": {"cores": 2, "cpu": "test CPU"},
        "wrk": "-t1 -c64",
        "throughput": {
            "warm": {
                "direct": medians(60000, 1),
                "reference": medians(10000, 9),
                "naive proxy": medians(8000, 17),
                "gateway": medians(14000, 7),
                "nginx": medians(60000, 2),
            },
            "cold": {"gateway cold": medians(8000, 15)},
        },
        "two_cores": {"gateway ×2": medians(20000, 6), "nginx ×2": medians(62000, 3)},
    }
    results = tmp_path / "run.json"
    results.write_text(json.dumps(run))
    for name in ("bench.png", "bench.svg"):
        result = plot("--results", str(results), "--out", str(tmp_path / "docs" / name))
        assert result.returncode == 0, result.stderr
    svg = (tmp_path / "docs" / "bench.svg").read_text()
    for label in ("reference", "naive proxy", "nginx ×2", "gateway cold", "14,000", "60,000"):
        assert label in svg, label
    missing = plot("--results", str(tmp_path / "none.json"), "--out", str(tmp_path / "x.png"))
    assert missing.returncode == 2
    assert "run `make bench` first" in missing.stderr


def test_unknown_targets_are_refused_before_anything_starts(tmp_path: Path) -> None:
    result = bench("--smoke", "--targets", "nginx,bogus", tmp=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "unknown targets bogus" in result.stderr
    assert bench_processes(tmp_path) == []


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)
@pytest.mark.timeout(300)
def test_a_run_of_chosen_targets_never_replaces_the_latest_whole_run(tmp_path: Path) -> None:
    require("redis-server", install="apt-get install redis-server")
    out = tmp_path / "out"
    result = bench(
        "--smoke", "--no-install", "--targets", "gateway", "--out", str(out), tmp=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (out / "latest.json").exists()
    (written,) = out.glob("*-targets.json")
    run = json.loads(written.read_text())
    assert run["targets"] == ["gateway"]
    assert set(run["throughput"]["small JSON, same 8 tokens (cache-warm)"]) == {"gateway"}
    assert "| small JSON, same 8 tokens (cache-warm) | gateway |" in result.stdout
    assert bench_processes(tmp_path) == []


def test_the_decision_harness_measures_answered_decisions() -> None:
    for scenario, status in (("admitted", "200"), ("no-token", "401")):
        result = subprocess.run(
            [
                *(sys.executable, "-m", "bench.measure_decisions", "--decisions", "50"),
                *("--repeat", "1", "--scenario", scenario),
            ],
            cwd=ROOT,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        figures = json.loads(result.stdout.splitlines()[-1])
        assert figures["statuses"] == {status: 50}
        assert figures["cpu_us_per_decision"] > 0
