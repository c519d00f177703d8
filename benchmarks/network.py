"""Methods over emulated hosts: time to accuracy, bytes accounted and bytes on the PS's link.

    sudo .venv/bin/python benchmarks/network.py --methods baseline,localsgd,powersgd,mp2-online,dgc \\
        --rates 100mbit,1gbit --workers 4 --epochs 10 --method-flags 'dgc=--lr 0.05' -- --lr 0.003 --mixup 0

Every run gets its own emulated hosts: the PS and each worker in a network namespace of its own,
each joined to a switch (a bridge in one more namespace) by a veth pair, as a host's card is cabled
to a switch port. Both ends of every pair are shaped with tc tbf at --rates (and --delay), so each
host has its own budget in each direction, as a full-duplex card has; the PS's card carries every
worker's pushes in and every reply out. Bytes through the PS's card are read from its interface
counters before and after the run. Needs root (ip netns, tc); without it every run is unshaped on
127.0.0.1, the link counters are left empty (loopback carries the whole machine's traffic), and the
output and results say so.

For each (rate, workers) the target accuracy is the baseline's best validation accuracy there minus
--margin (or --target); a run's time to target is the PS's wall time (from the moment every worker
joined) at the end of the first epoch whose validation accuracy reaches it. Where a run has no
validation figures (a record made before the validation split), the target is the baseline's test
accuracy (reports/accuracy.py) minus --margin, reached on test accuracy, and the report marks it.
The PS evaluates once per epoch, so times to target are epoch-granular.

Results accumulate in --out: results.csv (one row per run; a rerun of a grid point replaces its
row), curves.csv (one row per run and epoch), results.md, a PNG per worker count (--report-only, or
`python -m reports network OUT`, re-derives them from the CSVs). Every command run (the benchmark's,
with its provenance, then each namespace set-up step and process) is appended to
--runs/commands.txt, beside the runs' own directories. Flags after the benchmark's own (or after
--) go to the PS and every worker.

The hosts are benchmarks/emulated_hosts.py's, one run is benchmarks/network_run.py's (the launcher's
LocalCluster supervises it), the report is reports/network.py's.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.emulated_hosts import UNSHAPED, SetupError, rate_bits
from benchmarks.network_run import RunError, RunSpec, run_one
from helpers import argtypes, provenance
from reports import accuracy
from reports import network as report
from runtime.launcher import ROOT, absolute_paths

# Name in the grid -> flags to the PS and workers. Where a method has a knob, the variant carries the
# setting the frontier (benchmarks/frontier.py) measured best for its bytes; --method-flags overrides it.
METHOD_VARIANTS = {
    "baseline": ["--method", "baseline"],
    "localsgd": ["--method", "localsgd", "--sync-every", "16"],
    "powersgd": ["--method", "powersgd", "--rank", "2"],
    # No --predictor: the PS trains one during the run (its rounds are in the wall time); the classifier
    # pushed, the setting online MP²'s defaults were measured with.
    "mp2-online": ["--method", "mp2", "--push", "front+head"],
    "mp2-online-subset": ["--method", "mp2", "--push", "front+head", "--broadcast", "subset", "--sync-every", "16"],
    "mp2": ["--method", "mp2"],  # needs --predictor: one trained on a prior run
    "mp2-subset": ["--method", "mp2", "--broadcast", "subset"],
    "topk": ["--method", "topk"],
    "dgc": ["--method", "dgc"],
    "wnn": ["--method", "wnn"],
}
PREDICTOR_METHODS = ("mp2", "mp2-subset")
PATH_FLAGS = ("--predictor", "--wnn", "--data-dir", "--snapshot-dir")


class BenchmarkError(Exception):
    """A grid that cannot run as asked, for a reason the user can fix."""


class Interrupted(Exception):
    """SIGTERM or SIGHUP: unwind through every finally, so the processes and namespaces go."""


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The benchmark's flags, and the rest (for the PS and every worker)."""
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=None,
                   help=f"comma-separated, of {', '.join(METHOD_VARIANTS)} (default: baseline, localsgd, powersgd, "
                        "mp2-online, mp2 and mp2-subset when --predictor is given, topk, dgc, wnn when --wnn is given)")
    p.add_argument("--rates", default=f"100mbit,1gbit,{UNSHAPED}", help=f"comma-separated tc rates, or {UNSHAPED}")
    p.add_argument("--workers", default="4,8", help="comma-separated worker counts")
    p.add_argument("--epochs", type=argtypes.positive_int, default=2)
    p.add_argument("--model", default="lenet5")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--predictor", help="MP² predictor checkpoint (needed by mp2 and mp2-subset)")
    p.add_argument("--wnn", help="WNN nowcaster checkpoint (needed by wnn)")
    p.add_argument("--delay", help="one-way delay added at each cable end with netem, e.g. 1ms (needs sch_netem)")
    p.add_argument("--margin", type=argtypes.fraction, default=0.01,
                   help="the target is the baseline's best validation accuracy at the grid point minus this")
    p.add_argument("--target", type=argtypes.fraction, default=None, help="a fixed target accuracy instead")
    p.add_argument("--method-flags", action="append", default=[], metavar="METHOD=FLAGS",
                   help="flags for one method only, after the shared ones, e.g. 'dgc=--lr 0.05' (repeatable)")
    p.add_argument("--out", default="results/network", help="where results.csv, curves.csv, results.md and PNGs go")
    p.add_argument("--runs", default="runs/network", help="where each run's directory and logs go")
    p.add_argument("--run-timeout", type=argtypes.positive_float, default=3600.0, help="seconds one run may take")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: rewrite results.csv, results.md and the plots in --out from its CSVs")
    p.add_argument("--unshaped-loopback", action="store_true",
                   help="run on 127.0.0.1 without namespaces even as root (what happens anyway without root)")
    args, passthrough = p.parse_known_args(argv)
    return args, [a for a in passthrough if a != "--"]


def ps_lists_subset_broadcast() -> bool:
    """Whether this tree's mp2_ps.py offers --broadcast subset (its --help says)."""
    done = subprocess.run([sys.executable, str(ROOT / "mp2_ps.py"), "--help"], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return "--broadcast" in done.stdout and "subset" in done.stdout


def parse_method_flags(values: list[str]) -> dict[str, list[str]]:
    """--method-flags 'dgc=--lr 0.05' (repeatable) as {method: flags}; ValueError on a bad one."""
    out: dict[str, list[str]] = {}
    for value in values:
        method, eq, flags = value.partition("=")
        if not eq or method not in METHOD_VARIANTS:
            raise ValueError(f"--method-flags {value!r}: write METHOD=FLAGS with METHOD one of {', '.join(METHOD_VARIANTS)}")
        out.setdefault(method, []).extend(flags.split())
    return out


def grid_axes(args: argparse.Namespace) -> tuple[list[str], list[int], list[str], dict[str, list[str]]]:
    """The rates, worker counts and methods to run (baseline first: it sets the target) and each
    method's own flags; BenchmarkError for any the grid cannot run."""
    try:
        rates = [r.strip() for r in args.rates.split(",") if r.strip()]
        for rate in rates:
            if rate != UNSHAPED:
                rate_bits(rate)
        workers = [argtypes.positive_int(w.strip()) for w in args.workers.split(",") if w.strip()]
        method_flags = parse_method_flags(args.method_flags)
    except (ValueError, argparse.ArgumentTypeError) as e:
        raise BenchmarkError(str(e)) from None
    if not rates or not workers:
        raise BenchmarkError("--rates and --workers need at least one value each")
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    else:
        subset = bool(args.predictor) and ps_lists_subset_broadcast()
        methods = ["baseline", "localsgd", "powersgd", "mp2-online", *(["mp2"] if args.predictor else []),
                   *(["mp2-subset"] if subset else []), "topk", "dgc", *(["wnn"] if args.wnn else [])]
    unknown = [m for m in methods if m not in METHOD_VARIANTS]
    if unknown or not methods:
        raise BenchmarkError(f"--methods: unknown {', '.join(unknown) or '(none given)'}; "
                             f"choose from {', '.join(METHOD_VARIANTS)}")
    if any(m in PREDICTOR_METHODS for m in methods) and not args.predictor:
        raise BenchmarkError("mp2 and mp2-subset need --predictor PATH (mp2_pipeline.py or mp2_train_stage.py makes "
                             "one); mp2-online trains its own")
    if "wnn" in methods and not args.wnn:
        raise BenchmarkError("wnn needs --wnn PATH (mp2_train_wnn.py makes one)")
    for flag, path in (("--predictor", args.predictor), ("--wnn", args.wnn)):
        if path and not Path(path).exists():
            raise BenchmarkError(f"{flag} {path}: no such file")
    if "mp2-subset" in methods and not ps_lists_subset_broadcast():
        raise BenchmarkError("--methods mp2-subset: this tree's mp2_ps.py has no --broadcast subset; "
                             "leave mp2-subset out")
    methods.sort(key=lambda m: m != "baseline")
    return rates, workers, methods, method_flags


def build_grid(args: argparse.Namespace, passthrough: list[str], rates: list[str], workers: list[int],
               methods: list[str], method_flags: dict[str, list[str]], runs: Path) -> list[RunSpec]:
    """Every (workers, rate, method) run, with its flags and directory, in the order they run."""
    base_flags = ["--model", args.model, "--dataset", args.dataset, "--epochs", str(args.epochs),
                  *absolute_paths(passthrough, PATH_FLAGS)]
    grid = []
    for n in workers:
        for rate in rates:
            for method in methods:
                flags = [*base_flags, *METHOD_VARIANTS[method]]
                if method in PREDICTOR_METHODS:
                    flags += ["--predictor", os.path.abspath(args.predictor)]
                if method == "wnn":
                    flags += ["--wnn", os.path.abspath(args.wnn)]
                flags += method_flags.get(method, [])
                grid.append(RunSpec(method, rate, n, flags, runs.resolve() / f"{rate}-w{n}-{method}"))
    return grid


def run_grid(grid: list[RunSpec], args: argparse.Namespace, shaped: bool, out: Path, runs: Path) -> int:
    """Every run in turn, the report rewritten after each; 1 if any failed, 128 + N on signal N."""

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    commands_log = [f"# {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join([sys.executable, *sys.argv])}",
                    f"# provenance: {json.dumps(provenance.record(runs))}"]
    rows, curves, failures = [], [], []
    echo = lambda line: print(line, flush=True)  # noqa: E731
    try:
        for i, spec in enumerate(grid, 1):
            echo(f"network: [{i}/{len(grid)}] {spec.method} at {spec.rate}, {spec.workers} workers, "
                 f"{args.epochs} epochs -> {spec.run_dir}")
            try:
                row, curve = run_one(spec, shaped, args.delay, args.run_timeout, commands_log)
            except (SetupError, RunError, OSError, subprocess.CalledProcessError, json.JSONDecodeError, KeyError) as e:
                failures.append(f"{spec.method} at {spec.rate}, {spec.workers} workers: {e}")
                echo(f"network: FAILED: {failures[-1]}")
                continue
            rows.append(row)
            curves += curve
            echo(f"network: {spec.method} at {spec.rate}: {accuracy.HEADER} {accuracy.cell(row)}, {row['wall_s']:.1f} s, "
                 f"up {row['bytes_up'] / 1e6:.1f} MB, down {row['bytes_down'] / 1e6:.1f} MB"
                 + (f"; PS link in {row['link_rx_bytes'] / 1e6:.1f} MB, out {row['link_tx_bytes'] / 1e6:.1f} MB"
                    if row["link_rx_bytes"] != "" else ""))
            report.write_results(out, rows, curves, args.margin, args.target)  # after every run: nothing lost
    except (KeyboardInterrupt, Interrupted) as e:
        name = str(e) if isinstance(e, Interrupted) else "SIGINT"
        echo(f"network: interrupted ({name}); every process stopped{', every namespace deleted' if shaped else ''}; "
             f"finished runs are in {out}")
        return 128 + signal.Signals[name].value  # as the shell reports a death by that signal
    finally:
        with open(runs / "commands.txt", "a") as f:
            f.write("\n".join(commands_log) + "\n\n")
    if rows:
        echo(f"network: wrote {out / 'results.csv'}, {out / 'curves.csv'}, {out / 'results.md'} and the plots")
        echo((out / "results.md").read_text())
    for failure in failures:
        print(f"network: failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    args, passthrough = parse_args(argv)

    def fail(message: str) -> int:
        print(f"network: error: {message}", file=sys.stderr)
        return 2

    out = Path(args.out)
    if args.report_only:
        try:
            report.rewrite(out, args.margin, args.target)
        except report.ReportError as e:
            return fail(f"--report-only: {e}")
        print(f"network: rewrote {out / 'results.csv'}, {out / 'results.md'} and the plots", flush=True)
        return 0

    try:
        rates, workers, methods, method_flags = grid_axes(args)
    except BenchmarkError as e:
        return fail(str(e))
    is_root = os.geteuid() == 0
    shaped = is_root and not args.unshaped_loopback
    if not shaped:
        why = "--unshaped-loopback" if is_root else "not root (ip netns and tc need root)"
        print(f"network: running UNSHAPED on 127.0.0.1 ({why}); link counters will be empty", flush=True)
        if args.delay:
            return fail("--delay needs the namespaces (root)")
    runs = Path(args.runs)
    try:
        out.mkdir(parents=True, exist_ok=True)
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return fail(f"cannot create {e.filename} ({e.strerror}); choose another --out/--runs")

    grid = build_grid(args, passthrough, rates, workers, methods, method_flags, runs)
    return run_grid(grid, args, shaped, out, runs)


if __name__ == "__main__":
    sys.exit(main())
