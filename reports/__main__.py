"""Reports of finished runs from the command line, one command per study.

    python -m reports frontier ROOT --out results/frontier [--baseline LABEL] [--readme README.md ...]
    python -m reports network results/network [--margin 0.01 | --target 0.86]
    python -m reports methods results/methods/summaries --readme results/methods/README.md
    python -m reports models results/models
    python -m reports unseen results/unseen/records --readme results/unseen/README.md
    python -m reports soak results/soak/soak.json --readme results/soak/README.md
    python -m reports scale results/scale

A study's README holds its tables between marker lines (reports/readme.py); the command rewrites them.
"""
import argparse
import sys
from pathlib import Path

from helpers import argtypes
from reports import frontier, methods, models, network, scale, soak, unseen
from reports.errors import ReportError

p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m reports", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
commands = p.add_subparsers(dest="command", required=True)
f = commands.add_parser("frontier", help="accuracy for bytes over a grid of runs (benchmarks/frontier.py)")
f.add_argument("root", help="the grid's run root (ROOT/LABEL/seedN/)")
f.add_argument("--out", default="results/frontier", help="where frontier.json, .csv, .md and .png go")
f.add_argument("--baseline", default="baseline", help="the setting the bytes fractions are taken against")
f.add_argument("--readme", action="append", default=[], help="a README whose block 'frontier summary' gets the summary "
               "table (repeatable; e.g. README.md and results/frontier/README.md)")
f.add_argument("--carry", default=None, help="an earlier frontier.json whose rows are kept for the rows with no run "
               "under ROOT (marked as carried, with that record's commit)")
n = commands.add_parser("network", help="time to target over emulated hosts, re-derived from the CSVs of "
                                        "benchmarks/network.py")
n.add_argument("dir", help="the benchmark's --out: its results.csv and curves.csv are read, and every file rewritten")
n.add_argument("--margin", type=argtypes.fraction, default=0.01,
               help="the target is the baseline's best validation accuracy at the grid point minus this")
n.add_argument("--target", type=argtypes.fraction, default=None, help="a fixed target accuracy instead")
m = commands.add_parser("methods", help="the five methods' table (results/methods) from their summaries")
m.add_argument("summaries", help="a directory of NAME.json, each a run's summary.json")
m.add_argument("--readme", default="results/methods/README.md", help="the README whose table is rewritten")
o = commands.add_parser("models", help="results.json and the tables of results/models from its attempts' records")
o.add_argument("study", nargs="?", default="results/models", help="the study's folder (attempt folders, README.md)")
u = commands.add_parser("unseen", help="the four tables of results/unseen from its runs' records")
u.add_argument("records", help="a directory of NAME/summary.json (or NAME/transcribed.json)")
u.add_argument("--readme", default="results/unseen/README.md", help="the README whose tables are rewritten")
s = commands.add_parser("soak", help="the table of results/soak from benchmarks/soak.py's soak.json")
s.add_argument("soak_json", help="soak.json")
s.add_argument("--readme", default="results/soak/README.md", help="the README whose table is rewritten")
s.add_argument("--block", default="table", help="the name of the README's block that holds the table")
c = commands.add_parser("scale", help="the PS's time per step against the worker count (results/scale)")
c.add_argument("study", nargs="?", default="results/scale", help="the study's folder (ps_step/results.json, README.md)")
args = p.parse_args()

try:
    if args.command == "frontier":
        result = frontier.report(args.root, args.out, [sys.executable, "-m", "reports", *sys.argv[1:]], args.baseline,
                                 tuple(Path(r) for r in args.readme), args.carry)
        print(frontier.markdown(result))
        print(f"reports: wrote frontier.json, frontier.csv, frontier.md and frontier.png in {args.out}")
    elif args.command == "network":
        network.rewrite(Path(args.dir), args.margin, args.target)
        print((Path(args.dir) / "results.md").read_text())
        print(f"reports: wrote results.csv, results.md and the plots in {args.dir}")
    elif args.command == "scale":
        print(scale.report(Path(args.study)))
        print(f"reports: wrote the table of {args.study}/README.md and {args.study}/ps_step.png")
    elif args.command == "methods":
        print(methods.report(Path(args.summaries), Path(args.readme)))
        print(f"reports: wrote the table of {args.readme}")
    elif args.command == "models":
        rows = models.report(Path(args.study))
        print(models.attempts_table(rows))
        print(f"reports: wrote results.json and the tables of README.md in {args.study}")
    elif args.command == "unseen":
        print("\n".join(unseen.report(Path(args.records), Path(args.readme)).values()))
        print(f"reports: wrote the tables of {args.readme}")
    elif args.command == "soak":
        print(soak.report(Path(args.soak_json), Path(args.readme), args.block))
        print(f"reports: wrote the table of {args.readme}")
except (ReportError, OSError) as e:
    sys.exit(f"reports: error: {e}")
