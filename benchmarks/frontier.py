"""Accuracy for bytes: a grid of (method setting × seed), each a local cluster of 4 workers, then the report.

    python benchmarks/frontier.py                                   # the LeNet-5 / Fashion-MNIST grid, seeds 0,1,2
    python benchmarks/frontier.py --only baseline,localsgd-H16 --seeds 0
    python benchmarks/frontier.py --grid resnet18                   # the ResNet-18 preset, one seed
    python benchmarks/frontier.py --grid my-grid.json                # {"common": "...", "seeds": [...], "settings": [...]}
    python benchmarks/frontier.py --setting 'mp2-push-fh=--method mp2 --push front+head' --only mp2-push-fh
    python benchmarks/frontier.py --dry-run -- --epochs 1           # print the commands; after --: common flags

Each run is `mp2_local.py --workers N --out ROOT/LABEL/seedS FLAGS --seed S`, its output in
mp2_local.log there. FLAGS are the grid's common flags, then the flags after --, then the setting's
own (each replaces the same flag before it: a setting's --lr wins). A run whose summary.json exists is
skipped, so a grid resumes and grows across sessions; a run that fails is recorded
(frontier-failed.json), named, and the grid goes on. The report (reports/frontier.py, also
`python -m reports frontier ROOT`) covers every run under ROOT.

A grid file's setting may name "prior_run" (the run directory its --predictor's snapshots came from)
and "predictor_report" (that predictor's report.json): their bytes and wall time are added to the
setting's cost, labelled. Its "flags" are a string or a list; "family" names its curve in the plot.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import argtypes
from benchmarks.grid import GridError, Setting, check_flags, command_line, merge_flags, plan, recorded_flags, run_one
from provenance import commit_label, portable
from reports import frontier as report

ROOT = Path(__file__).resolve().parent.parent

# The issue's grids. MP² online is `--method mp2` with no --predictor (the PS trains its own during the
# run, with the method's defaults, the measured setting) pushing the classifier too (`--push front+head`,
# the setting those defaults were measured with); composed with a sync interval at H = 4 and 16, and
# with the subset broadcast (only the pushed group comes back) at H = 1 and 16.
LENET5 = {
    "common": "--model lenet5 --dataset fashion_mnist --epochs 10 --lr 0.003 --mixup 0",
    "seeds": [0, 1, 2],
    "settings": [
        "baseline=--method baseline",
        *(f"localsgd-H{h}=--method localsgd --sync-every {h}" for h in (4, 16, 64)),
        # DiLoCo's outer step at its paper's setting (outer lr 0.7, Nesterov momentum 0.9).
        *({"label": f"diloco-H{h}", "family": "localsgd + DiLoCo outer step",
           "flags": f"--method localsgd --sync-every {h} --outer-lr 0.7 --outer-momentum 0.9"} for h in (16, 64)),
        "mp2-online=--method mp2 --push front+head",
        *(f"mp2-online-H{h}=--method mp2 --push front+head --sync-every {h}" for h in (4, 16)),
        *({"label": f"mp2-online-subset{tag}", "family": "mp2 subset broadcast",
           "flags": f"--method mp2 --push front+head --broadcast subset{flag}"}
          for tag, flag in (("", ""), ("-H16", " --sync-every 16"))),
        *(f"topk-{r}=--method topk --ratio {r}" for r in ("0.1", "0.01")),
        "dgc=--method dgc --lr 0.05",  # DGC's own SGD learning rate
        *(f"powersgd-R{r}=--method powersgd --rank {r}" for r in (1, 2, 4)),
    ],
}
RESNET18 = {
    # The timeouts are mp2_pipeline.py's for ResNet-18: a step and the test-set evaluation on 2 busy cores.
    "common": "--model resnet18 --dataset fashion_mnist --fit-input --train-images 10000 --epochs 8 --lr 0.001 "
              "--step-timeout 900 --connect-timeout 600",
    "seeds": [0],
    "settings": ["baseline=--method baseline", *(f"localsgd-H{h}=--method localsgd --sync-every {h}" for h in (4, 16)),
                 "mp2-online=--method mp2 --push front+head", "powersgd-R2=--method powersgd --rank 2",
                 "dgc=--method dgc --lr 0.05"],
}
# Online MP²'s own study (issue: online MP² a user can just run): its defaults against the baseline, four seeds.
ONLINE = {
    "common": LENET5["common"],
    "seeds": [0, 1, 2, 3],
    "settings": ["baseline=--method baseline", "mp2-online=--method mp2 --push front+head"],
}
# The same on digits (1,442 training images: 14 steps per epoch at 4 workers of 25), eight seeds: one test image
# is 0.28 points, and over four seeds the mean difference's standard error was 0.2-0.35 points, too near the
# half point it is judged by.
ONLINE_DIGITS = {
    "common": "--model lenet5 --dataset digits --worker-batch 25 --epochs 30 --lr 0.003 --mixup 0",
    "seeds": list(range(8)),
    "settings": ONLINE["settings"],
}
GRIDS = {"lenet5": LENET5, "resnet18": RESNET18, "online": ONLINE, "online-digits": ONLINE_DIGITS}


def load_grid(name: str) -> tuple[list[str], list[int], list[Setting]]:
    """(common flags, seeds, settings) of a preset or a grid file."""
    if name in GRIDS:
        grid = GRIDS[name]
    else:
        try:
            grid = json.loads(Path(name).read_text())
        except OSError as e:
            raise GridError(f"--grid {name}: not a preset ({', '.join(GRIDS)}) and cannot be read ({e.strerror or e})") from None
        except json.JSONDecodeError as e:
            raise GridError(f"--grid {name}: not JSON ({e})") from None
        if not isinstance(grid, dict) or not isinstance(grid.get("settings"), list):
            raise GridError(f"--grid {name}: expected {{\"common\": \"FLAGS\", \"seeds\": [0], \"settings\": [...]}}")
    common = grid.get("common", "")
    settings = [Setting.parse(s) if isinstance(s, str) else Setting.from_dict(s) for s in grid["settings"]]
    return shlex.split(common) if isinstance(common, str) else list(common), list(grid.get("seeds", [0])), settings


def seed_list(text: str) -> list[int]:
    try:
        seeds = [argtypes.nonnegative_int(s.strip()) for s in text.split(",") if s.strip()]
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"seeds: {e}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed, e.g. 0,1,2")
    return seeds


def main(argv: list[str]) -> int:
    # --- flags -----------------------------------------------------------------------------------
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default="lenet5", help=f"a preset ({', '.join(GRIDS)}) or a grid file (JSON)")
    p.add_argument("--setting", action="append", default=[], metavar="LABEL=FLAGS",
                   help="a setting added to the grid (replacing one of the same label); repeatable")
    p.add_argument("--only", help="comma-separated labels: run these settings only")
    p.add_argument("--seeds", type=seed_list, help="comma-separated seeds (default: the grid's)")
    p.add_argument("--workers", type=argtypes.positive_int, default=4)
    p.add_argument("--root", default="runs/frontier", help="run root: ROOT/LABEL/seedS/ per run")
    p.add_argument("--out", default="results/frontier", help="where frontier.json, .csv, .md and .png go")
    p.add_argument("--baseline", default="baseline", help="the setting the bytes fractions are taken against")
    p.add_argument("--dry-run", action="store_true", help="print each run's command (marking those done) and run nothing")
    p.add_argument("--report-only", action="store_true", help="run nothing: write the report of what ROOT holds")
    args = p.parse_args(own)

    def fail(message: str) -> int:
        print(f"frontier: error: {message}", file=sys.stderr)
        return 2

    # --- build the grid --------------------------------------------------------------------------
    root = Path(os.path.abspath(args.root))
    try:
        common, seeds, settings = load_grid(args.grid)
        for added in map(Setting.parse, args.setting):
            settings = [s for s in settings if s.label != added.label] + [added]
        for s in settings:
            s.check()
        check_flags(common, f"--grid {args.grid}'s common flags")
        check_flags(extra, "the flags after --")
    except GridError as e:
        return fail(str(e))
    if args.only:
        wanted = [label.strip() for label in args.only.split(",") if label.strip()]
        unknown = [label for label in wanted if label not in {s.label for s in settings}]
        if unknown or not wanted:
            return fail(f"--only: no setting {', '.join(unknown) or '(none given)'}; "
                        f"the grid has {', '.join(s.label for s in settings)}")
        settings = [s for s in settings if s.label in wanted]
    runs = plan(settings, args.seeds or seeds, merge_flags(common, extra), root, args.workers)

    if args.dry_run:
        for run in runs:
            print(("# done, skipped: " if run.done else "") + command_line(run))
        return 0

    # --- loop --------------------------------------------------------------------------------------
    this_commit, interrupted, failed = commit_label(), False, 0
    if not args.report_only:
        for i, run in enumerate(runs, 1):
            where = f"frontier: [{i}/{len(runs)}] {run.name()}"
            if run.done:
                made_with = recorded_flags(run)
                changed = made_with is not None and made_with != run.flags
                print(f"{where}: done already, skipped" + (
                    f" (WARNING: made with other flags: {' '.join(made_with)}; delete {portable(str(run.run_dir))} "
                    f"to rerun it)" if changed else ""), flush=True)
                continue
            print(f"{where}: started -> {portable(str(run.run_dir))}", flush=True)
            outcome = run_one(run, this_commit, sys.executable)
            if outcome.ok:
                print(f"{where}: finished in {outcome.seconds:.0f} s, best test acc {outcome.best:.4f}", flush=True)
            else:
                failed += 1
                print(f"{where}: FAILED after {outcome.seconds:.0f} s: {outcome.reason} "
                      f"(log: {portable(str(run.run_dir / report.LOG))})", flush=True)
            if outcome.interrupted:
                interrupted = True
                print("frontier: interrupted; the runs so far are reported", flush=True)
                break

    # --- report ----------------------------------------------------------------------------------
    try:
        result = report.report(root, Path(args.out), [sys.executable, *sys.argv[:1], *argv], args.baseline)
    except (report.ReportError, OSError) as e:
        return fail(f"no report: {e}")
    print(f"frontier: wrote frontier.json, frontier.csv, frontier.md and frontier.png in {args.out}")
    print(result["summary_line"])
    for f in result["failed"]:
        print(f"frontier: failed: {f['label']} seed {f['seed']}: {f['reason']} (log: {f['log']})", file=sys.stderr)
    return 130 if interrupted else 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:  # outside a run (a run's own Ctrl-C is handled by its launcher)
        sys.exit("frontier: interrupted")
