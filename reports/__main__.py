"""Reports of finished runs from the command line.

    python -m reports frontier ROOT --out results/frontier [--baseline LABEL]
    python -m reports network results/network [--margin 0.01 | --target 0.86]
"""
import argparse
import sys
from pathlib import Path

import argtypes
from reports import frontier, network

p = argparse.ArgumentParser(prog="python -m reports", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
commands = p.add_subparsers(dest="command", required=True)
f = commands.add_parser("frontier", help="accuracy for bytes over a grid of runs (benchmarks/frontier.py)")
f.add_argument("root", help="the grid's run root (ROOT/LABEL/seedN/)")
f.add_argument("--out", default="results/frontier", help="where frontier.json, .csv, .md and .png go")
f.add_argument("--baseline", default="baseline", help="the setting the bytes fractions are taken against")
n = commands.add_parser("network", help="time to target over emulated hosts, re-derived from the CSVs of "
                                        "benchmarks/network.py")
n.add_argument("dir", help="the benchmark's --out: its results.csv and curves.csv are read, and every file rewritten")
n.add_argument("--margin", type=argtypes.fraction, default=0.01,
               help="the target is the baseline's best accuracy at the grid point minus this")
n.add_argument("--target", type=argtypes.fraction, default=None, help="a fixed target accuracy instead")
args = p.parse_args()

if args.command == "frontier":
    try:
        result = frontier.report(args.root, args.out, [sys.executable, "-m", "reports", *sys.argv[1:]], args.baseline)
    except (frontier.ReportError, OSError) as e:
        sys.exit(f"reports: error: {e}")
    print(frontier.markdown(result))
    print(f"reports: wrote frontier.json, frontier.csv, frontier.md and frontier.png in {args.out}")
elif args.command == "network":
    try:
        network.rewrite(Path(args.dir), args.margin, args.target)
    except (network.ReportError, OSError) as e:
        sys.exit(f"reports: error: {e}")
    print((Path(args.dir) / "results.md").read_text())
    print(f"reports: wrote results.csv, results.md and the plots in {args.dir}")
