"""Re-draw the network benchmark's figures from its curves.csv (and results.csv, for the targets).

    python benchmarks/plot_network.py results/network

One PNG per worker count, network-wN.png: test accuracy against the PS's wall time (top row) and
against cumulative accounted bytes, both directions (bottom row, log scale); one column per rate,
one line per method; the dashed line is the grid point's target accuracy.
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

UNSHAPED = "unshaped"
METHOD_ORDER = ["baseline", "mp2", "mp2-subset", "mp2-online", "topk", "dgc", "wnn"]


def _rate_order(rate: str) -> tuple:
    # Slowest first; the unshaped column last.
    scale = {"gbit": 1e9, "mbit": 1e6, "kbit": 1e3, "bit": 1.0}
    for unit, factor in scale.items():
        if rate.endswith(unit):
            try:
                return (0, float(rate.removesuffix(unit)) * factor)
            except ValueError:
                break
    return (1, 0.0)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def targets_from_results(path: Path) -> dict[tuple[str, int], float]:
    """(rate, workers) -> target accuracy, as results.csv recorded it."""
    if not path.exists():
        return {}
    return {(r["rate"], int(r["workers"])): float(r["target_acc"]) for r in read_rows(path) if r.get("target_acc")}


def plot(curves_csv: Path, out_dir: Path, targets: dict[tuple[str, int], float] | None = None) -> list[Path]:
    """Write network-wN.png for every worker count in `curves_csv`; the paths written."""
    curves: dict[tuple[int, str, str], list[tuple[float, float, float]]] = defaultdict(list)
    for r in read_rows(curves_csv):
        curves[(int(r["workers"]), r["rate"], r["method"])].append(
            (float(r["wall_s"]), float(r["test_acc"]), float(r["bytes_cum"])))
    written = []
    for workers in sorted({w for w, _, _ in curves}):
        rates = sorted({rate for w, rate, _ in curves if w == workers}, key=_rate_order)
        fig, axes = plt.subplots(2, len(rates), figsize=(4.6 * len(rates), 7.5), squeeze=False)
        for column, rate in enumerate(rates):
            by_time, by_bytes = axes[0][column], axes[1][column]
            methods = sorted({m for w, r, m in curves if (w, r) == (workers, rate)},
                             key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m))
            for method in methods:
                points = sorted(curves[(workers, rate, method)])
                # Every curve starts at its first evaluation: there is no accuracy before epoch 1.
                by_time.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
                by_bytes.plot([p[2] for p in points], [p[1] for p in points], marker="o", label=method)
            target = (targets or {}).get((rate, workers))
            for ax in (by_time, by_bytes):
                if target is not None:
                    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label="target")
                ax.grid(True, alpha=0.3)
            by_time.set_title(f"{rate}, {workers} workers")
            by_time.set_xlabel("PS wall time (s)")
            by_bytes.set_xlabel("bytes accounted, up + down (cumulative)")
            by_bytes.set_xscale("log")
            if column == 0:
                by_time.set_ylabel("test accuracy")
                by_bytes.set_ylabel("test accuracy")
            by_time.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"network-w{workers}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="the benchmark's --out (holding curves.csv and results.csv)")
    args = p.parse_args(argv)
    directory = Path(args.dir)
    if not (directory / "curves.csv").exists():
        print(f"plot_network: error: no curves.csv in {directory}; run benchmarks/network.py with --out {directory}",
              file=sys.stderr)
        return 2
    for path in plot(directory / "curves.csv", directory, targets_from_results(directory / "results.csv")):
        print(f"plot_network: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
