"""Draw a benchmark run: requests/s and p99 latency per scenario and target, with nginx and
the reference proxy in the same chart. matplotlib is a bench-only extra (`.[bench]`).

    python -m bench.plot                                  # make bench-plot
    python -m bench.plot --results bench/results/latest.json --out docs/bench.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "results" / "latest.json"
DEFAULT_OUT = HERE.parent / "docs" / "bench.png"
REFERENCE = "reference"
# One colour per kind of target, across scenarios.
COLOURS = {
    "direct": "#9aa0a6",
    "reference": "#1f5fbf",
    "naive proxy": "#8fb3e8",
    "gateway": "#e8710a",
    "gateway cold": "#b55400",
    "gateway ×2": "#e8710a",
    "nginx": "#188038",
    "nginx ×2": "#188038",
}


def groups(results: dict[str, Any]) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    """(scenario, {target: medians}) in the table's order, both-cores scenario last."""
    found = list(results["throughput"].items())
    if results.get("two_cores"):
        found.append(("both cores (--workers 2, nginx 2 workers)", results["two_cores"]))
    return found


def draw(results: dict[str, Any], out: Path) -> Path:
    """Two horizontal bar charts side by side (req/s, p99 ms), one group per scenario. The
    upstream measured directly is left out of the bars (it would flatten every proxy's) and
    named in its group's heading instead."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    scenarios = [
        (title, {n: m for n, m in targets.items() if n != "direct"}, targets.get("direct"))
        for title, targets in groups(results)
    ]
    rows = sum(len(targets) + 1.6 for _, targets, _ in scenarios)
    height = 0.3 * rows + 1.2
    fig, (rps_ax, p99_ax) = plt.subplots(
        1, 2, figsize=(13, height), sharey=True, gridspec_kw={"wspace": 0.05}
    )
    fig.subplots_adjust(top=1 - 0.4 / height)
    ticks: list[float] = []
    labels: list[str] = []
    y = 0.0
    for title, targets, direct in scenarios:
        heading = title + (f"  (upstream direct: {direct['rps']:,.0f})" if direct else "")
        rps_ax.text(0, y - 0.1, heading, fontsize=9, fontweight="bold", va="bottom")
        y += 0.7
        for name, medians in targets.items():
            colour = COLOURS.get(name, "#5f6368")
            rps_ax.barh(y, medians["rps"], color=colour, height=0.78)
            p99_ax.barh(y, medians["p99_ms"], color=colour, height=0.78)
            rps_ax.text(medians["rps"], y, f" {medians['rps']:,.0f}", va="center", fontsize=8)
            p99_ax.text(medians["p99_ms"], y, f" {medians['p99_ms']:.2f}", va="center", fontsize=8)
            ticks.append(y)
            labels.append(name)
            y += 1
        y += 0.9
    warm = next(iter(results["throughput"].values()))
    if REFERENCE in warm:
        rps_ax.axvline(warm[REFERENCE]["rps"], color=COLOURS[REFERENCE], ls="--", lw=1)
        p99_ax.axvline(warm[REFERENCE]["p99_ms"], color=COLOURS[REFERENCE], ls="--", lw=1)
    for ax in (rps_ax, p99_ax):
        ax.grid(axis="x", color="#eeeeee")
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_ylim(y - 0.5, -0.9)
    rps_ax.set_yticks(ticks, labels, fontsize=9)
    rps_ax.set_xlabel("requests/s, median of rounds (dashed: the reference, cache-warm)")
    p99_ax.set_xlabel("p99 latency, ms, lower is better (dashed: the reference, cache-warm)")
    bars = [m for _, t, _ in scenarios for m in t.values()]
    rps_ax.set_xlim(0, max(m["rps"] for m in bars) * 1.15)
    p99_ax.set_xlim(0, max(m["p99_ms"] for m in bars) * 1.2)
    host = results.get("machine", {})
    fig.suptitle(
        f"token-gateway benchmark {results.get('date', '')}: {host.get('cores', '?')} cores "
        f"({host.get('cpu', 'unknown CPU')}), wrk {results.get('wrk', '')}",
        fontsize=10,
        y=1 - 0.1 / height,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="a run's JSON")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG or SVG to write")
    args = parser.parse_args(argv)
    if not args.results.is_file():
        print(f"plot: no results at {args.results}: run `make bench` first", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot: matplotlib is missing: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    print(f"written to {draw(json.loads(args.results.read_text()), args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
