"""The whole MP² pipeline on a local cluster, ending in a side-by-side comparison with the baseline.

    1. baseline training, collecting the parameter dataset      (mp2_local.py --snapshot-every K)
    2. predictor training with the prediction-result loss       (mp2_train_stage.py)
    3. MP² training with that predictor                          (mp2_local.py --method mp2)
    4. local SGD with the baseline's flags, when this tree has it (mp2_local.py --method localsgd --sync-every 16)
    5. comparison.md / comparison.json / comparison.png in --out, with each route's whole cost: MP²'s is
       the collection run + the predictor training + the MP² run, beside the baseline alone and local SGD

A predictor that already exists for the model, dataset and pushed group (predictors/MODEL-DATASET/
predictor.npz; -push-GROUP appended for a --push other than front, -rankR for --stage-flags='--head-rank R'
with R > 1) is reused unless --retrain; --predictor PATH uses a given one (e.g. trained on another dataset).

Training flags not listed here (--lr, --mixup, --worker-batch, --seed, --data-dir, --fit-input,
--train-images, --push, ...) go to the PS and workers; the data flags (--data-dir, --fit-input,
--train-images), --push and --seed also to the predictor training, whose own flags are given with
--stage-flags. --step-timeout and --connect-timeout default per model (LeNet-5: the runtime's 120 s;
ResNet-18: 900 s / 600 s; AlexNet, VGG-15, ResNet-50: 1800 s / 600-900 s), enough for a step and
the PS's evaluation of the whole test set at each epoch's end on 2 busy cores.

For a 32x32x3 model on Fashion-MNIST, add --fit-input (28x28 grey images zero-padded and repeated
to 32x32x3); --train-images N trains on a fixed, stratified subset (the same for every stage). A
ResNet-18 run that fits about an hour on 2 cores:

    python mp2_pipeline.py --model resnet18 --fit-input --train-images 10000 --epochs 8 \
        --snapshot-every 3 --stage-epochs 4 --stage-flags='--image-batches 5 --eval-images 2000'

Every line of the stages' output is prefixed with the pipeline's elapsed time [h:mm:ss].
"""
from helpers import tfstart  # noqa: F401  (first: TensorFlow starts without Keras)
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from helpers import argtypes, provenance
from runtime.launcher import ROOT, LaunchError, absolute_paths, make_dir, terminal_worthy

# What a run directory of mp2_local.py holds: only such a directory (or an empty one) is emptied for a new run.
RUN_FILES = ("ps.log", "summary.json", "metrics.jsonl", "checkpoint.npz")


# The pass-through flags the predictor training takes too: the data the snapshots were collected on,
# the pushed group and the seed. --lr, --mixup, ... are the workers' (the predictor's own go in --stage-flags).
STAGE_SHARED = ("--data-dir", "--seed", "--fit-input", "--train-images", "--push")

# Per-model defaults for what the runtime's defaults (sized for LeNet-5) do not cover: a step of 4 workers
# on 2 cores and the PS's evaluation of the whole test set at each epoch's end take minutes for the large
# models, and 5 processes building a large graph at once take a while to connect. Seconds; a flag given wins.
STEP_TIMEOUT = {"lenet5": 120, "resnet18": 900, "resnet34": 1200, "resnet50": 1800, "alexnet": 1800, "vgg15": 1800}
CONNECT_TIMEOUT = {"lenet5": 120, "resnet18": 600, "resnet34": 600, "resnet50": 900, "alexnet": 600, "vgg15": 600}


p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default="lenet5")
p.add_argument("--dataset", default="fashion_mnist")
p.add_argument("--workers", type=argtypes.positive_int, default=4)
p.add_argument("--epochs", type=argtypes.positive_int, default=10, help="epochs of baseline and of MP² training (the same for both); 10, the main job's recorded budget "
                    "(results/main-job), where a run of mp2_local.py alone trains the measured preset's 30")
p.add_argument("--out", default="runs/pipeline", help="directory of the three stages' outputs and the comparison")
p.add_argument("--snapshot-every", type=argtypes.positive_int, default=10, metavar="K", help="collection: a snapshot per K steps")
p.add_argument("--stage-epochs", type=argtypes.positive_int, default=6, help="epochs of predictor training")
p.add_argument("--stage-flags", default="", help="extra flags for mp2_train_stage.py, e.g. --stage-flags='--image-batches 10'")
p.add_argument("--predictor", help="use this predictor checkpoint instead of training or reusing one")
p.add_argument("--retrain", action="store_true", help="train a new predictor even if one exists")
p.add_argument("--localsgd-sync-every", type=argtypes.nonnegative_int, default=16, metavar="H",
               help="the local SGD run's --sync-every (0: no local SGD run)")
args, passthrough = p.parse_known_args()
try:
    out = make_dir(args.out, "--out")
except LaunchError as e:
    print(f"mp2_pipeline: error: {e}", file=sys.stderr)
    sys.exit(1)
origin = provenance.record(out)

# Imported only now: TensorFlow prints start-up lines on import, which would bury the error above.
from predictor import CheckpointError, read_meta  # noqa: E402
from reports import write_comparison  # noqa: E402
from runtime.flags import parser as training_parser  # noqa: E402
from runtime import cmdline  # noqa: E402
from runtime.methods import METHODS  # noqa: E402
from reports.cost import pipeline_routes, predictor_training_seconds  # noqa: E402
from predictor.stage.flags import mismatches as stage_mismatches  # noqa: E402
from predictor.stage.flags import parse as stage_parse  # noqa: E402

# The PS's flags (the shared ones and the PS's own, e.g. --snapshot-eval-images) pass through, but for
# those where the pipeline decides: the run directories and the snapshots' place.
PIPELINE_DECIDES = ("--resume", "--snapshot-dir", "--snapshot-regular")
takes_value, _ = cmdline.training_flags()
for arg in passthrough:
    name = arg.split("=", 1)[0]
    if name in PIPELINE_DECIDES:
        sys.exit(f"mp2_pipeline: error: {name} is the pipeline's to decide; run mp2_local.py for a run of your own")
    if arg.startswith("--") and name not in takes_value:
        sys.exit(f"mp2_pipeline: error: unknown flag {arg}")
passthrough = absolute_paths(passthrough, ("--data-dir",))
model_key = args.model.lower().replace("-", "").replace("_", "")
for flag, defaults in (("--step-timeout", STEP_TIMEOUT), ("--connect-timeout", CONNECT_TIMEOUT)):
    if not cmdline.given(passthrough, flag) and model_key in defaults:
        passthrough += [flag, str(defaults[model_key])]
common = ["--model", args.model, "--dataset", args.dataset]
stage_common = [*common, *cmdline.keep(passthrough, STAGE_SHARED, takes_value)]
common += passthrough
# Every stage pushes what MP²'s run will (the preset's for MP² unless --push is given), so the collection,
# the predictor and the MP² run share one layout.
push = training_parser("").parse_known_args([*passthrough, "--method", "mp2"])[0].push
if not cmdline.given(passthrough, "--push"):
    common += ["--push", push]
    stage_common += ["--push", push]


def empty_run_dir(path: Path) -> None:
    """Delete an earlier run of this pipeline in `path`; refuse to delete anything else."""
    if not path.exists():
        return
    if not path.is_dir() or (any(path.iterdir()) and not any((path / name).exists() for name in RUN_FILES)):
        sys.exit(f"mp2_pipeline: error: {path} exists and is not a run directory of this pipeline; "
                 f"move it away or choose another --out")
    shutil.rmtree(path)


pipeline_started = time.monotonic()
stage_seconds: dict[str, float] = {}


def _elapsed() -> str:
    seconds = int(time.monotonic() - pipeline_started)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def stage(title: str, script: str, *flags: str, fresh: Path | None = None, required: bool = True) -> bool:
    """Run one stage as its own process in the caller's cwd; `fresh`: its run directory, emptied first.
    A required stage that fails ends the pipeline; another returns False."""
    if fresh is not None:
        empty_run_dir(fresh)
    print(f"\n=== {title}\n$ python {script} {' '.join(flags)}", flush=True)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / script), *flags], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        for line in proc.stdout:
            if terminal_worthy(line):
                sys.stdout.write(f"[{_elapsed()}] {line}")
                sys.stdout.flush()
        code = proc.wait()
    except KeyboardInterrupt:  # the stage got the same Ctrl-C and stops its own processes
        proc.wait()
        sys.exit(f"mp2_pipeline: interrupted during {title}")
    if code != 0 and required:
        sys.exit(f"mp2_pipeline: {title} failed (exit {code}); its output is above")
    if code != 0:
        print(f"=== {title}: failed (exit {code}); its output is above; the pipeline goes on without it", flush=True)
        return False
    stage_seconds[title] = time.monotonic() - started
    print(f"=== {title}: done in {stage_seconds[title]:.0f} s (pipeline so far {time.monotonic() - pipeline_started:.0f} s)",
          flush=True)
    return True


# --- which predictor ---------------------------------------------------------------------------
# Relative to the caller's cwd, like --out; made absolute for the stages.
# A predictor fits one pushed group: another --push gets a directory of its own.
push_suffix = "" if push == "front" else "-push-" + push.replace(",", "_").replace("/", "_").replace("+", "_")
# A predictor of another head rank is another structure: it gets a directory of its own too.
rank_parser = argparse.ArgumentParser(allow_abbrev=False, prog="mp2_pipeline --stage-flags", add_help=False)
rank_parser.add_argument("--head-rank", type=argtypes.positive_int, default=1)
head_rank = rank_parser.parse_known_args(args.stage_flags.split())[0].head_rank
rank_suffix = f"-rank{head_rank}" if head_rank > 1 else ""
default_predictor = Path("predictors") / f"{args.model}-{args.dataset}{push_suffix}{rank_suffix}" / "predictor.npz"
predictor = Path(os.path.abspath(args.predictor or default_predictor))
train_predictor = not args.predictor and (args.retrain or not predictor.exists())
# How stage 2 would train the predictor: checked now (a typo in --stage-flags stops the pipeline before
# stage 1, not after it), and what a reused predictor is compared with.
stage_argv = ["--snapshots", str(out / "baseline" / "snapshots"), "--out", str(predictor.parent),
              "--epochs", str(args.stage_epochs), *stage_common, *args.stage_flags.split()]
try:
    stage_parse(stage_argv)
except ValueError as e:
    sys.exit(f"mp2_pipeline: error: --stage-flags (or a flag the pipeline hands the predictor training): {e}")
# This pipeline's flag for each setting of the stage, for the message.
PIPELINE_FLAG = {"--epochs": "--stage-epochs", "--dataset": "--dataset", **{flag: flag for flag in STAGE_SHARED}}


def _shown(value) -> str:
    return {True: "on", False: "off", None: "unset"}[value] if isinstance(value, (bool, type(None))) else str(value)


def settings_differ(path: Path, meta: dict) -> str:
    """Why the predictor at `path` may not be reused by this run ('' when it may): the report.json beside
    it records other settings than stage 2 of this run would use, or cannot tell."""
    report_path = path.parent / "report.json"
    ways_out = (f"run with --retrain to train one for this run (the old one is kept in {path.parent}/replaced-<time>/), "
                f"or pass --predictor {path} to use it as it is")
    try:
        report = json.loads(report_path.read_text())
        saved = report["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{path} has no readable report.json beside it to tell how it was trained: {ways_out}"
    if report.get("best_epoch") != meta.get("trained_epochs"):
        return (f"{report_path} describes another training (best epoch {report.get('best_epoch')}) than "
                f"{path.name} (epoch {meta.get('trained_epochs')}): {ways_out}")
    named = [f"{PIPELINE_FLAG.get(flag, flag + ' (in --stage-flags)')} {_shown(was)} (this run: {_shown(now)})"
             for flag, was, now in stage_mismatches(saved, stage_argv)]
    if not named:
        return ""
    return (f"{path} was trained with other settings than this run's: {'; '.join(named)}. Give the flags it "
            f"was trained with, {ways_out}")


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
    if not args.predictor:  # the default one: reused only if trained as this run would train it
        reuse_problem = settings_differ(predictor, meta)
        if reuse_problem:
            sys.exit(f"mp2_pipeline: error: {reuse_problem}")
    print(f"using the predictor {predictor} (trained on {meta.get('dataset', '?')}; --retrain for a new one)")

# --- 1. baseline, collecting snapshots when a predictor is to be trained -------------------------
collect = ["--snapshot-every", str(args.snapshot_every)] if train_predictor else []
stage("1. baseline training" + (" with snapshot collection" if collect else ""), "mp2_local.py",
      "--workers", str(args.workers), "--method", "baseline", "--epochs", str(args.epochs),
      "--out", str(out / "baseline"), *collect, *common, fresh=out / "baseline")

# --- 2. predictor ------------------------------------------------------------------------------
PREDICTOR_STAGE = "2. predictor training (prediction-result loss)"
if train_predictor:
    # --retrain over an existing predictor: the stage keeps the old one in its replaced-<time>/ folder.
    stage(PREDICTOR_STAGE, "mp2_train_stage.py", *stage_argv, *(["--fresh"] if predictor.exists() else []))

# --- 3. MP² --------------------------------------------------------------------------------------
stage("3. MP² training", "mp2_local.py", "--workers", str(args.workers), "--method", "mp2",
      "--predictor", str(predictor), "--epochs", str(args.epochs), "--out", str(out / "mp2"), *common,
      fresh=out / "mp2")

# --- 4. local SGD, the route that saves bytes with no predictor at all ------------------------------
# Guarded: a tree without the method still runs the pipeline, and says what the table lacks.
runs = ["baseline", "mp2"]
sync_every = args.localsgd_sync_every
localsgd_note = None
if sync_every and ("localsgd" not in METHODS or "--sync-every" not in takes_value):
    localsgd_note = ("no local SGD row: this tree's mp2_ps.py has no --method localsgd --sync-every "
                     f"(its methods: {', '.join(METHODS)})")
    print(f"\nmp2_pipeline: note: {localsgd_note}", flush=True)
elif sync_every:
    if stage(f"4. local SGD training (--sync-every {sync_every})", "mp2_local.py", "--workers", str(args.workers),
             "--method", "localsgd", "--sync-every", str(sync_every), "--epochs", str(args.epochs), "--out", str(out / "localsgd"),
             *common, fresh=out / "localsgd", required=False):
        runs.append("localsgd")
    else:
        localsgd_note = f"no local SGD row: its run failed (see {out / 'localsgd'})"

# --- 5. comparison -------------------------------------------------------------------------------
summaries = {name: json.loads((out / name / "summary.json").read_text()) for name in runs}
meta = read_meta(str(predictor))
notes = [f"MP² predictor: {predictor} (model {meta['model']}, trained on {meta.get('dataset', '?')}"
         + (f", {meta['trained_epochs']} epochs" if "trained_epochs" in meta else "")
         + (f", conv heads of rank {meta['head_rank']}" if meta.get("head_rank", 1) > 1 else "")
         + (f"; its held-out snapshots' assembled networks reached {meta['test_assembled_acc']:.4f} test accuracy "
            f"against {meta['test_own_acc']:.4f} for their own parameters (epoch chosen on validation images)"
            if "test_assembled_acc" in meta and "test_own_acc" in meta else "")
         + ")"]
notes.append("stage wall times: " + ", ".join(f"{title.split(' (')[0]} {seconds:.0f} s" for title, seconds in stage_seconds.items()))
if meta.get("dataset") not in (None, args.dataset):
    notes.append(f"the predictor was trained on {meta['dataset']} and used on {args.dataset} (generalisation)")
if localsgd_note:
    notes.append(localsgd_note)
# The predictor's training time: measured here, or what the reused predictor's report.json recorded.
if train_predictor:
    predictor_seconds = stage_seconds[PREDICTOR_STAGE]
else:
    try:
        predictor_seconds = predictor_training_seconds(json.loads((predictor.parent / "report.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        predictor_seconds = None
routes = pipeline_routes(summaries, predictor_seconds, train_predictor, f"local SGD (H={sync_every})")
if not train_predictor:
    notes.append("whole cost: the predictor was reused, so its collection run is not counted (it was paid for by an "
                 "earlier run); --retrain measures the whole pipeline")
try:
    write_comparison(out, summaries, notes, routes, origin=origin)
    print("\n" + (out / "comparison.md").read_text())
except OSError as e:  # e.g. a full disk
    print(f"mp2_pipeline: error: cannot write the comparison in {out} ({e.strerror or e}); "
          f"the runs' own records are in {', '.join(str(out / name) for name in runs)}", file=sys.stderr)
    sys.exit(1)
print(f"wrote {out / 'comparison.md'}, {out / 'comparison.json'} and {out / 'comparison.png'}")
