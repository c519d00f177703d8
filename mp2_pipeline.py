"""The whole MP² pipeline on a local cluster, ending in a side-by-side comparison with the baseline.

    1. baseline training, collecting the parameter dataset      (mp2_local.py --snapshot-every K)
    2. predictor training with the prediction-result loss       (mp2_train_stage.py)
    3. MP² training with that predictor                          (mp2_local.py --method mp2)
    4. comparison.md / comparison.json / comparison.png in --out

A predictor that already exists for the model and dataset (predictors/MODEL-DATASET/predictor.npz)
is reused unless --retrain; --predictor PATH uses a given one (e.g. trained on another dataset).
Training flags not listed here (--lr, --mixup, --worker-batch, --seed, --data-dir, ...) go to the
PS and workers; --data-dir and --seed also to the predictor training, whose own flags are given
with --stage-flags.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import argtypes
from runtime.launcher import ROOT, STARTUP_NOISE, LaunchError, absolute_paths, make_dir

# What a run directory of mp2_local.py holds: only such a directory (or an empty one) is emptied for a new run.
RUN_FILES = ("ps.log", "summary.json", "metrics.jsonl", "checkpoint.npz")


def _shared_with_stage(argv: list[str]) -> list[str]:
    """The pass-through flags the predictor training takes too (all of them carry a value)."""
    kept, i = [], 0
    while i < len(argv):
        name = argv[i].split("=", 1)[0]
        width = 1 if "=" in argv[i] else 2
        if name in ("--data-dir", "--seed"):
            kept += argv[i : i + width]
        i += width
    return kept


p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default="lenet5")
p.add_argument("--dataset", default="fashion_mnist")
p.add_argument("--workers", type=argtypes.positive_int, default=4)
p.add_argument("--epochs", type=argtypes.positive_int, default=10, help="epochs of baseline and of MP² training (the same for both)")
p.add_argument("--out", default="runs/pipeline", help="directory of the three stages' outputs and the comparison")
p.add_argument("--snapshot-every", type=argtypes.positive_int, default=10, metavar="K", help="collection: a snapshot per K steps")
p.add_argument("--stage-epochs", type=argtypes.positive_int, default=6, help="epochs of predictor training")
p.add_argument("--stage-flags", default="", help="extra flags for mp2_train_stage.py, e.g. --stage-flags='--image-batches 10'")
p.add_argument("--predictor", help="use this predictor checkpoint instead of training or reusing one")
p.add_argument("--retrain", action="store_true", help="train a new predictor even if one exists")
args, passthrough = p.parse_known_args()
try:
    out = make_dir(args.out, "--out")
except LaunchError as e:
    print(f"mp2_pipeline: error: {e}", file=sys.stderr)
    sys.exit(1)

# Imported only now: TensorFlow prints start-up lines on import, which would bury the error above.
from predictor import CheckpointError, read_meta  # noqa: E402
from reports import write_comparison  # noqa: E402
from runtime.flags import parser as training_parser  # noqa: E402

known = {s for a in training_parser("")._actions for s in a.option_strings}
for arg in passthrough:
    if arg.startswith("--") and arg.split("=", 1)[0] not in known:
        sys.exit(f"mp2_pipeline: error: unknown flag {arg}")
passthrough = absolute_paths(passthrough, ("--data-dir",))
common = ["--model", args.model, "--dataset", args.dataset]
# The training stage shares only where the data is and the seed; --lr, --mixup, ... are the workers'
# (the predictor's own settings go in --stage-flags).
stage_common = [*common, *_shared_with_stage(passthrough)]
common += passthrough


def empty_run_dir(path: Path) -> None:
    """Delete an earlier run of this pipeline in `path`; refuse to delete anything else."""
    if not path.exists():
        return
    if not path.is_dir() or (any(path.iterdir()) and not any((path / name).exists() for name in RUN_FILES)):
        sys.exit(f"mp2_pipeline: error: {path} exists and is not a run directory of this pipeline; "
                 f"move it away or choose another --out")
    shutil.rmtree(path)


def stage(title: str, script: str, *flags: str, fresh: Path | None = None) -> None:
    """Run one stage as its own process in the caller's cwd; `fresh`: its run directory, emptied first."""
    if fresh is not None:
        empty_run_dir(fresh)
    print(f"\n=== {title}\n$ python {script} {' '.join(flags)}", flush=True)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / script), *flags], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        for line in proc.stdout:
            if not STARTUP_NOISE.match(line):
                sys.stdout.write(line)
                sys.stdout.flush()
        code = proc.wait()
    except KeyboardInterrupt:  # the stage got the same Ctrl-C and stops its own processes
        proc.wait()
        sys.exit(f"mp2_pipeline: interrupted during {title}")
    if code != 0:
        sys.exit(f"mp2_pipeline: {title} failed (exit {code}); its output is above")
    print(f"=== {title}: done in {time.monotonic() - started:.0f} s", flush=True)


# --- which predictor ---------------------------------------------------------------------------
# Relative to the caller's cwd, like --out; made absolute for the stages.
default_predictor = Path("predictors") / f"{args.model}-{args.dataset}" / "predictor.npz"
predictor = Path(os.path.abspath(args.predictor or default_predictor))
train_predictor = not args.predictor and (args.retrain or not predictor.exists())
if not train_predictor:
    try:
        meta = read_meta(str(predictor))
    except CheckpointError as e:
        sys.exit(f"mp2_pipeline: error: {e}")
    # A retraining killed before its first epoch leaves an untrained predictor.npz behind.
    trained = meta.get("trained_epochs")
    if type(trained) is not int or trained < 1:
        sys.exit(f"mp2_pipeline: error: predictor at {predictor} was never trained (an interrupted retraining?): "
                 + ("train it with mp2_train_stage.py or pass a trained one" if args.predictor else "run with --retrain"))
    print(f"using the predictor {predictor} (trained on {meta.get('dataset', '?')}; --retrain for a new one)")

# --- 1. baseline, collecting snapshots when a predictor is to be trained -------------------------
collect = ["--snapshot-every", str(args.snapshot_every)] if train_predictor else []
stage("1. baseline training" + (" with snapshot collection" if collect else ""), "mp2_local.py",
      "--workers", str(args.workers), "--method", "baseline", "--epochs", str(args.epochs),
      "--out", str(out / "baseline"), *collect, *common, fresh=out / "baseline")

# --- 2. predictor ------------------------------------------------------------------------------
if train_predictor:
    stage("2. predictor training (prediction-result loss)", "mp2_train_stage.py",
          "--snapshots", str(out / "baseline" / "snapshots"), "--out", str(predictor.parent),
          "--epochs", str(args.stage_epochs), *stage_common, *args.stage_flags.split())

# --- 3. MP² --------------------------------------------------------------------------------------
stage("3. MP² training", "mp2_local.py", "--workers", str(args.workers), "--method", "mp2",
      "--predictor", str(predictor), "--epochs", str(args.epochs), "--out", str(out / "mp2"), *common,
      fresh=out / "mp2")

# --- 4. comparison -------------------------------------------------------------------------------
summaries = {name: json.loads((out / name / "summary.json").read_text()) for name in ("baseline", "mp2")}
meta = read_meta(str(predictor))
notes = [f"MP² predictor: {predictor} (model {meta['model']}, trained on {meta.get('dataset', '?')}"
         + (f", held-out assembled accuracy {meta['heldout_assembled_acc']:.4f}" if "heldout_assembled_acc" in meta else "")
         + ")"]
if meta.get("dataset") not in (None, args.dataset):
    notes.append(f"the predictor was trained on {meta['dataset']} and used on {args.dataset} (generalisation)")
try:
    write_comparison(out, summaries, notes)
    print("\n" + (out / "comparison.md").read_text())
except OSError as e:  # e.g. a full disk
    print(f"mp2_pipeline: error: cannot write the comparison in {out} ({e.strerror or e}); "
          f"the runs' own records are in {out / 'baseline'} and {out / 'mp2'}", file=sys.stderr)
    sys.exit(1)
print(f"wrote {out / 'comparison.md'}, {out / 'comparison.json'} and {out / 'comparison.png'}")
