"""Reports of finished runs from the command line.

    python -m reports frontier ROOT --out results/frontier [--baseline LABEL]
"""
import argparse
import sys

from reports import frontier

p = argparse.ArgumentParser(prog="python -m reports", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
commands = p.add_subparsers(dest="command", required=True)
f = commands.add_parser("frontier", help="accuracy for bytes over a grid of runs (benchmarks/frontier.py)")
f.add_argument("root", help="the grid's run root (ROOT/LABEL/seedN/)")
f.add_argument("--out", default="results/frontier", help="where frontier.json, .csv, .md and .png go")
f.add_argument("--baseline", default="baseline", help="the setting the bytes fractions are taken against")
args = p.parse_args()

try:
    result = frontier.report(args.root, args.out, [sys.executable, "-m", "reports", *sys.argv[1:]], args.baseline)
except (frontier.ReportError, OSError) as e:
    sys.exit(f"reports: error: {e}")
print(frontier.markdown(result))
print(f"reports: wrote frontier.json, frontier.csv, frontier.md and frontier.png in {args.out}")
