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

Each finished run's record (summary.json, metrics.jsonl, frontier-run.json: a few tens of KB, none of
its checkpoints) is also kept in OUT/runs/ (--records), and read back into ROOT when a grid starts: with
OUT committed, a grid goes on in another session or on another machine where ROOT is gone, and
`python -m reports frontier OUT/runs` makes the report again from the record alone (the tuning plan,
ROOT/frontier-tuning.json, is kept beside the records).

A grid file's setting may name "prior_run" (the run directory its --predictor's snapshots came from)
and "predictor_report" (that predictor's report.json): their bytes and wall time are added to the
setting's cost, labelled. Its "flags" are a string or a list; "family" names its curve in the plot.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.grid import GridError, Setting, check_flags, command_line, plan, recorded_flags, run_one
from helpers import argtypes, npzio
from helpers.provenance import commit_label, portable
from reports import frontier as report
from runtime import cmdline

ROOT = Path(__file__).resolve().parent.parent

# The grids. Every row that has a rate is tuned alike: its rate at ×1 (the default, listed first), ×½ and
# ×2 on seed 0, chosen by validation accuracy at each budget, then the chosen candidate on every seed.
# DiLoCo's three runs tune its outer rate (momentum 0.9, its paper's) at the inner rate plain local SGD
# of the same H chose, so every row pays three tuning runs. A run of 30 epochs gives the 10-epoch budget
# too (its first 10 epochs: nothing in a run depends on --epochs before its end).
LR = {"--lr": ["0.003", "0.0015", "0.006"]}
OUTER = {"--outer-lr": ["0.7", "0.35", "1.0"]}
DILOCO = "localsgd + DiLoCo outer step"
LENET5 = {
    "common": "--model lenet5 --dataset fashion_mnist --epochs 30 --mixup 0",
    "budgets": [10, 30],
    "seeds": [0, 1, 2],
    "tune_seed": 0,
    "settings": [
        {"label": "baseline", "flags": "--method baseline", "tune": LR},
        {"label": "localsgd-H64", "flags": "--method localsgd --sync-every 64", "tune": LR},
        {"label": "diloco-H64", "family": DILOCO, "flags": "--method localsgd --sync-every 64 --outer-momentum 0.9",
         "tune": OUTER, "inherit": {"--lr": "localsgd-H64"}},
        # Optimizer or communication: DiLoCo's chosen outer step at every step (H=1, every byte), and one
        # worker with and without it, on the tuning seed.
        {"label": "diloco-H1", "family": report.CONTROLS, "flags": "--method localsgd --sync-every 1 --outer-momentum 0.9",
         "inherit": {"--lr": "localsgd-H64", "--outer-lr": "diloco-H64"}, "seeds": [0]},
        {"label": "baseline-1worker", "family": report.CONTROLS, "flags": "--method baseline", "inherit": {"--lr": "baseline"},
         "seeds": [0], "workers": 1},
        {"label": "diloco-H64-1worker", "family": report.CONTROLS, "flags": "--method localsgd --sync-every 64 --outer-momentum 0.9",
         "inherit": {"--lr": "localsgd-H64", "--outer-lr": "diloco-H64"}, "seeds": [0], "workers": 1},
        {"label": "sync", "flags": "--method sync", "tune": LR},
        {"label": "localsgd-H16", "flags": "--method localsgd --sync-every 16", "tune": LR},
        # SparseLoCo at its reference's setting (outer rate 1, error decay 0.95, 128 of each 64×64 chunk).
        {"label": "sparseloco-H16", "family": "sparseloco", "flags": "--method sparseloco --sync-every 16", "tune": LR},
        {"label": "sparseloco-H64", "family": "sparseloco", "flags": "--method sparseloco --sync-every 64", "tune": LR},
        {"label": "mp2-online-H16", "family": "mp2", "flags": "--method mp2 --push front+head --sync-every 16", "tune": LR},
        # MP² inside DiLoCo: the outer step on the model the PS assembles, tuned as DiLoCo's at MP²'s chosen rate.
        {"label": "mp2-diloco-H16", "family": "mp2", "flags": "--method mp2 --push front+head --sync-every 16 "
         "--outer-momentum 0.9", "tune": OUTER, "inherit": {"--lr": "mp2-online-H16"}},
        {"label": "powersgd-R2", "flags": "--method powersgd --rank 2", "tune": LR},
        # MP² online (the PS trains its predictor during the run) pushing the classifier too, alone and
        # composed with the sync interval.
        # Streaming DiLoCo: two fragments synced in turn at H=64, outer gradients in 4 bits; its outer rate tuned
        # as DiLoCo's, at the inner rate plain local SGD at H=64 chose.
        {"label": "streaming-H64", "family": "streaming DiLoCo", "flags": "--method streaming --sync-every 64 --fragments 2",
         "tune": OUTER, "inherit": {"--lr": "localsgd-H64"}},
        # What Streaming DiLoCo's two changes cost, on the tuning seed: float32 outer gradients, and one fragment
        # in float32 (DiLoCo itself, computed as Streaming DiLoCo's update).
        {"label": "streaming-H64-32bit", "family": report.CONTROLS, "flags": "--method streaming --sync-every 64 "
         "--fragments 2 --outer-bits 32", "inherit": {"--lr": "localsgd-H64", "--outer-lr": "streaming-H64"}, "seeds": [0]},
        {"label": "streaming-H64-F1-32bit", "family": report.CONTROLS, "flags": "--method streaming --sync-every 64 "
         "--fragments 1 --outer-bits 32", "inherit": {"--lr": "localsgd-H64", "--outer-lr": "streaming-H64"}, "seeds": [0]},
        {"label": "dgc", "flags": "--method dgc", "tune": {"--lr": ["0.05", "0.025", "0.1"]}},  # DGC's own SGD rate
        {"label": "topk-0.01", "flags": "--method topk --ratio 0.01", "tune": LR},
        {"label": "diloco-H16", "family": DILOCO, "flags": "--method localsgd --sync-every 16 --outer-momentum 0.9",
         "tune": OUTER, "inherit": {"--lr": "localsgd-H16"}},
        {"label": "mp2-online", "family": "mp2", "flags": "--method mp2 --push front+head", "tune": LR},
        # MP² inside SparseLoCo: the pushed group sent SparseLoCo's way at its H, the rest predicted by online MP².
        {"label": "mp2-sparseloco-H64", "family": "mp2", "flags": "--method mp2 --push front+head --sync-every 64 "
         "--push-codec sparseloco", "tune": LR},
    ],
}
# ResNet-18 on 30,000 Fashion-MNIST images fitted to 32×32×3 (the timeouts are mp2_pipeline.py's for
# ResNet-18 on 2 busy cores); VGG-15 the same rows on one seed.
_BIG_ROWS = [
    {"label": "baseline", "flags": "--method baseline", "tune": {"--lr": ["0.001", "0.0005", "0.002"]}},
    {"label": "sync", "flags": "--method sync", "tune": {"--lr": ["0.001", "0.0005", "0.002"]}},
    {"label": "localsgd-H16", "flags": "--method localsgd --sync-every 16", "tune": {"--lr": ["0.001", "0.0005", "0.002"]}},
    {"label": "diloco-H16", "family": DILOCO, "flags": "--method localsgd --sync-every 16 --outer-momentum 0.9",
     "tune": OUTER, "inherit": {"--lr": "localsgd-H16"}},
    {"label": "powersgd-R2", "flags": "--method powersgd --rank 2", "tune": {"--lr": ["0.001", "0.0005", "0.002"]}},
    {"label": "sparseloco-H16", "family": "sparseloco", "flags": "--method sparseloco --sync-every 16",
     "tune": {"--lr": ["0.001", "0.0005", "0.002"]}},
    {"label": "mp2-online-H16", "family": "mp2", "flags": "--method mp2 --push front+head --sync-every 16",
     "tune": {"--lr": ["0.001", "0.0005", "0.002"]}},
]
_BIG_COMMON = "--dataset fashion_mnist --fit-input --train-images 30000 --epochs 12 --mixup 0 --step-timeout 900 --connect-timeout 600"
RESNET18 = {"common": f"--model resnet18 {_BIG_COMMON}", "budgets": [12], "seeds": [0, 1, 2], "tune_seed": 0,
            "settings": _BIG_ROWS}
VGG15 = {"common": f"--model vgg15 {_BIG_COMMON}", "budgets": [12], "seeds": [0], "tune_seed": 0, "settings": _BIG_ROWS}
# Online MP²'s own study (results/online-rounds: online MP² a user can just run): its defaults against the baseline, four seeds.
ONLINE = {
    "common": "--model lenet5 --dataset fashion_mnist --epochs 10 --lr 0.003 --mixup 0",
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
GRIDS = {"lenet5": LENET5, "resnet18": RESNET18, "vgg15": VGG15, "online": ONLINE, "online-digits": ONLINE_DIGITS}


@dataclass(frozen=True)
class Grid:
    common: list[str]
    seeds: list[int]
    settings: list[Setting]
    budgets: list[int]   # epochs at which the report reads the frontier (the runs last the longest)
    tune_seed: int       # the seed every tuning candidate runs on


def load_grid(name: str) -> Grid:
    """A preset or a grid file."""
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
    return Grid(shlex.split(common) if isinstance(common, str) else list(common), list(grid.get("seeds", [0])), settings,
                [int(b) for b in grid.get("budgets", [])], int(grid.get("tune_seed", 0)))


def flag_value(flags: list[str], name: str) -> str | None:
    """The last value `flags` give `name` (--name V or --name=V)."""
    value = None
    for i, word in enumerate(flags):
        if word == name and i + 1 < len(flags):
            value = flags[i + 1]
        elif word.startswith(name + "="):
            value = word.split("=", 1)[1]
    return value


def resolve(setting: Setting, settings: list[Setting], runs: list[dict], grid: Grid) -> Setting | str:
    """`setting` with its inherited flags filled in from the rows it names (their candidate chosen at the
    longest budget), or why it must wait."""
    if not setting.inherit:
        return setting
    flags = list(setting.flags)
    for flag, row in setting.inherit.items():
        source = next((s for s in settings if s.label == row), None)
        if source is None:
            return f"it inherits {flag} from {row}, which the grid does not have"
        labels = [c.label for c in source.candidates()]
        chosen, _ = report.choose(labels, runs, grid.tune_seed, max(grid.budgets)) if len(labels) > 1 else (labels[0], [])
        run = next((r for r in runs if r["label"] == chosen), None) if chosen else None
        value = flag_value(run["meta"].get("flags", []), flag) if run else None
        if value is None:
            return f"it waits for {row}'s tuning (it inherits {flag})"
        flags += [flag, value]
    return dataclasses.replace(setting, flags=flags)


def seed_list(text: str) -> list[int]:
    try:
        seeds = [argtypes.nonnegative_int(s.strip()) for s in text.split(",") if s.strip()]
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"seeds: {e}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed, e.g. 0,1,2")
    return seeds


RECORD_FILES = ("summary.json", "metrics.jsonl", report.MARKER)  # what the report reads of a finished run


def copy_finished(source: Path, target: Path) -> int:
    """Every finished run under `source` (SOURCE/LABEL/seedS/summary.json) that has not finished under `target`,
    its record (RECORD_FILES) copied there; the number copied. From the run root to the kept records, and back."""
    count = 0
    for run_dir in sorted(source.glob("*/seed*")) if source.is_dir() else []:
        there = target / run_dir.parent.name / run_dir.name
        if (run_dir / "summary.json").exists() and not (there / "summary.json").exists():
            there.mkdir(parents=True, exist_ok=True)
            for name in RECORD_FILES:
                if (run_dir / name).exists():
                    npzio.write_bytes(there / name, (run_dir / name).read_bytes())
            count += 1
    return count


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
    p.add_argument("--carry", help="an earlier frontier.json: its rows are kept for the rows with no run under ROOT")
    p.add_argument("--records", help="where each finished run's record (summary.json, metrics.jsonl, frontier-run.json) "
                   "is copied, and read back into ROOT at the start (default: OUT/runs): committed, it lets a grid "
                   "resume on another machine and the report be made again from it alone")
    args = p.parse_args(own)

    def fail(message: str) -> int:
        print(f"frontier: error: {message}", file=sys.stderr)
        return 2

    # --- build the grid --------------------------------------------------------------------------
    root = Path(os.path.abspath(args.root))
    try:
        grid = load_grid(args.grid)
        settings = grid.settings
        for added in map(Setting.parse, args.setting):
            settings = [s for s in settings if s.label != added.label] + [added]
        for s in settings:
            s.check()
        check_flags(grid.common, f"--grid {args.grid}'s common flags")
        check_flags(extra, "the flags after --")
    except GridError as e:
        return fail(str(e))
    common = cmdline.merge(grid.common, extra)
    epochs = int(flag_value(common, "--epochs") or 0)
    # A smoke run (-- --epochs 1) reads every budget at its own length.
    budgets = sorted({min(b, epochs) if epochs else b for b in grid.budgets}) or ([epochs] if epochs else [])
    grid = dataclasses.replace(grid, settings=settings, budgets=budgets)
    chosen_settings = settings
    if args.only:
        wanted = [label.strip() for label in args.only.split(",") if label.strip()]
        unknown = [label for label in wanted if label not in {s.label for s in settings}]
        if unknown or not wanted:
            return fail(f"--only: no setting {', '.join(unknown) or '(none given)'}; "
                        f"the grid has {', '.join(s.label for s in settings)}")
        chosen_settings = [s for s in settings if s.label in wanted]
    seeds = args.seeds or grid.seeds

    def finished() -> list[dict]:
        return report.read_root(root)[0] if root.is_dir() else []

    records = Path(args.records or Path(args.out) / "runs")
    if not args.dry_run:
        restored = copy_finished(records, root)
        if restored:
            print(f"frontier: {restored} finished run(s) read back from {portable(str(records))}", flush=True)

    # --- loop --------------------------------------------------------------------------------------
    # Setting by setting: a tuned one's candidates on the tuning seed, then the candidate chosen at each
    # budget on the other seeds; a setting that inherits a rate waits for the row it names.
    interrupted, failed, waiting = False, 0, 0
    if not args.dry_run and not args.report_only:
        root.mkdir(parents=True, exist_ok=True)
        npzio.write_json(root / report.TUNING, {
            "tune_seed": grid.tune_seed, "budgets": grid.budgets,
            "rows": {s.label: {"candidates": [c.label for c in s.candidates()], "tuned": s.tune, "inherit": s.inherit}
                     for s in settings if s.tune}})

    def execute(runs: list) -> bool:
        """Run each of `runs` not done yet; True if the user interrupted."""
        nonlocal failed
        for run in runs:
            where = f"frontier: {run.name()}"
            if args.dry_run:
                print(("# done, skipped: " if run.done else "") + command_line(run))
                continue
            if run.done:
                made_with = recorded_flags(run)
                changed = made_with is not None and made_with != run.flags
                print(f"{where}: done already, skipped" + (
                    f" (WARNING: made with other flags: {' '.join(made_with)}; delete {portable(str(run.run_dir))} "
                    f"to rerun it)" if changed else ""), flush=True)
                continue
            if args.report_only:
                continue
            print(f"{where}: started -> {portable(str(run.run_dir))}", flush=True)
            # The code a run uses is the tree's when it starts (its processes import it then): named per run.
            outcome = run_one(run, commit_label(), sys.executable)
            if outcome.ok:
                copy_finished(root, records)
                selected = "" if outcome.selected is None else f", test acc at the best validation epoch {outcome.selected:.4f}"
                print(f"{where}: finished in {outcome.seconds:.0f} s, final test acc {outcome.final:.4f}{selected}", flush=True)
            else:
                failed += 1
                print(f"{where}: FAILED after {outcome.seconds:.0f} s: {outcome.reason} "
                      f"(log: {portable(str(run.run_dir / report.LOG))})", flush=True)
            if outcome.interrupted:
                print("frontier: interrupted; the runs so far are reported", flush=True)
                return True
        return False

    if not args.report_only:
        for setting in chosen_settings:
            resolved = resolve(setting, settings, finished(), grid)
            if isinstance(resolved, str):
                waiting += 1
                print(f"{'# ' if args.dry_run else 'frontier: '}{setting.label}: not run yet: {resolved}", flush=True)
                continue
            candidates, own_seeds = resolved.candidates(), setting.seeds or seeds
            if len(candidates) == 1:
                interrupted = execute(plan(candidates, own_seeds, common, root, args.workers))
            else:
                interrupted = execute(plan(candidates, [grid.tune_seed], common, root, args.workers))
                runs = finished()
                picks = {report.choose([c.label for c in candidates], runs, grid.tune_seed, b)[0] for b in grid.budgets}
                if None in picks or not grid.budgets:
                    if not interrupted:
                        waiting += 1
                        print(f"{'# ' if args.dry_run else 'frontier: '}{setting.label}: its other seeds wait for its "
                              f"tuning on seed {grid.tune_seed} (the candidate chosen by validation accuracy)", flush=True)
                elif not interrupted:
                    others = [seed for seed in own_seeds if seed != grid.tune_seed]
                    interrupted = execute(plan([c for c in candidates if c.label in picks], others, common, root, args.workers))
            if interrupted:
                break

    # --- report ----------------------------------------------------------------------------------
    if args.dry_run:
        return 0
    copy_finished(root, records)  # runs another grid process finished under ROOT too
    if (root / report.TUNING).exists():  # the tuning plan beside them: the records alone make the same report
        records.mkdir(parents=True, exist_ok=True)  # (no run may have finished yet)
        npzio.write_bytes(records / report.TUNING, (root / report.TUNING).read_bytes())
    try:
        result = report.report(root, Path(args.out), [sys.executable, *sys.argv[:1], *argv], args.baseline,
                               carried_record=args.carry)
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
